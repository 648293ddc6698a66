"""Peak memory of long inputs: a 10M-token language-model split, a 100,000-token tagged document.

``language model``: ``MarkovCorpusDataModule`` with train and validation splits of ``--lm-tokens`` each, a few
training windows, then one validation over the whole split. Memory grows with the corpus (its lines as Python
strings and arrow text, int64 inputs and targets), never with activations: those are bounded by batch x bptt.
Bound: ``LM_BYTES_PER_TOKEN`` over both splits.

``tagger``: one ``--tag-tokens``-token document, the recipes' network (100-d embeddings, BiLSTM 2 x 100, CRF).
Training cuts it into ``max_length=1000`` pieces, so its peak is the same whatever the document's length (bound:
``TRAIN_GROWTH_MB``); evaluation reads it whole, linear in its length (embeddings, both directions' projections and
outputs, packing copies, CRF back-pointers; bound: ``EVAL_BYTES_PER_TOKEN``).

Each measurement runs in a fresh process, so that its peak resident memory is that job's alone. The bounds hold
at the full sizes; ``--quick`` sizes check that the script runs and its results make sense (fixed costs then
dominate the per-token figures). Exits non-zero if a result is wrong or a bound is exceeded at full size.

Usage:
    python benchmarks/long_inputs.py [--out DIR] [--quick] [--lm-tokens N] [--tag-tokens N]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/long_inputs.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_json  # noqa: E402

NAME = "long_inputs"
LM_TOKENS, TAG_TOKENS = 10_000_000, 100_000
QUICK_LM_TOKENS, QUICK_TAG_TOKENS = 50_000, 5_000
LM_BYTES_PER_TOKEN = 64
TRAIN_GROWTH_MB = 400
EVAL_BYTES_PER_TOKEN = 8 * 1024
LM_VOCAB = 200  # the corpus' words; a model a few steps from its start predicts about as well as a uniform guess


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def quiet_trainer(**kwargs: Any):
    import lightning as L

    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def language_model(tokens: int) -> dict[str, Any]:
    """Train 5 windows on, then validate over the whole of, ``tokens``-token splits; peak memory in MB."""
    from rnn_lightning import LanguageModel, MarkovCorpusDataModule

    base = peak_mb()  # libraries imported
    data = MarkovCorpusDataModule(num_words=LM_VOCAB, train_tokens=tokens, validation_tokens=tokens,
                                  test_tokens=1000, batch_size=32, eval_batch_size=32, bptt=35)
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=16, hidden_size=16, num_layers=1,
                          dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0)
    quiet_trainer(max_steps=5, limit_val_batches=0).fit(model, data)
    (metrics,) = quiet_trainer().validate(model, data, verbose=False)
    return {"tokens": tokens, "val_ppl": metrics["val/ppl"], "source_ppl": data.source.perplexity(),
            "vocab_size": data.vocab_size, "base_mb": base, "peak_mb": peak_mb()}


def tagger(tokens: int) -> dict[str, Any]:
    """Train 3 steps on ``max_length`` pieces of one ``tokens``-token document, then validate it whole."""
    from datasets import Dataset, DatasetDict

    from rnn_lightning import SequenceTagger, TaggingDataModule

    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(tokens)]
    tags = ["B-X" if w.endswith("7") else "O" for w in words]
    doc = Dataset.from_dict({"tokens": [words], "tags": [tags]})
    data = TaggingDataModule(dataset=DatasetDict(train=doc, validation=doc), tag_scheme="IOB2", max_length=1000,
                             batch_size=8)
    data.setup("fit")
    base = peak_mb()  # libraries imported, corpus built
    model = SequenceTagger(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                           span_scheme=data.scheme, crf=True)
    quiet_trainer(max_steps=3, limit_val_batches=0).fit(model, data)
    after_train = peak_mb()
    (metrics,) = quiet_trainer().validate(model, data, verbose=False)
    return {"tokens": tokens, "pieces": len(data.sequences("train")), "val_acc": metrics["val/acc"],
            "base_mb": base, "train_peak_mb": after_train, "peak_mb": peak_mb()}


def in_fresh_process(job: str, tokens: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--job", job, str(tokens)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{NAME}: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def lm_row(r: dict[str, Any], full: bool) -> dict[str, Any]:
    per_token = (r["peak_mb"] - r["base_mb"]) * 2**20 / (2 * r["tokens"])  # train + validation splits
    # cross-entropy is never below the source's entropy; a few steps leave the model near the uniform guess
    sane = math.isfinite(r["val_ppl"]) and 0.95 * r["source_ppl"] < r["val_ppl"] < 1.25 * r["vocab_size"]
    return {"job": "language model", "tokens": r["tokens"], "result": f"val ppl {r['val_ppl']:.1f}",
            "result_ok": sane, "measure": "bytes/token (train + validation)", "value": per_token,
            "bound": LM_BYTES_PER_TOKEN, "met": per_token < LM_BYTES_PER_TOKEN if full else "-"}


def tagger_rows(r: dict[str, Any], full: bool) -> list[dict[str, Any]]:
    train_mb = r["train_peak_mb"] - r["base_mb"]
    eval_per_token = (r["peak_mb"] - r["train_peak_mb"]) * 2**20 / r["tokens"]
    sane = r["pieces"] == math.ceil(r["tokens"] / 1000) and 0 < r["val_acc"] <= 1
    common = {"job": "tagger", "tokens": r["tokens"], "result": f"{r['pieces']} pieces, val acc {r['val_acc']:.3f}",
              "result_ok": sane}
    return [{**common, "measure": "training growth MB", "value": train_mb, "bound": TRAIN_GROWTH_MB,
             "met": train_mb < TRAIN_GROWTH_MB if full else "-"},
            {**common, "measure": "evaluation bytes/token", "value": eval_per_token, "bound": EVAL_BYTES_PER_TOKEN,
             "met": eval_per_token < EVAL_BYTES_PER_TOKEN if full else "-"}]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LM_TOKENS:,} and {QUICK_TAG_TOKENS:,} tokens")
    parser.add_argument("--lm-tokens", type=int, default=None, help=f"each LM split (default {LM_TOKENS:,})")
    parser.add_argument("--tag-tokens", type=int, default=None, help=f"the document (default {TAG_TOKENS:,})")
    parser.add_argument("--job", nargs=2, metavar=("JOB", "TOKENS"), help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    if args.job:
        job, tokens = args.job
        print(json.dumps({"language_model": language_model, "tagger": tagger}[job](int(tokens))))
        return []
    lm_tokens = args.lm_tokens or (QUICK_LM_TOKENS if args.quick else LM_TOKENS)
    tag_tokens = args.tag_tokens or (QUICK_TAG_TOKENS if args.quick else TAG_TOKENS)
    lm, tag = in_fresh_process("language_model", lm_tokens), in_fresh_process("tagger", tag_tokens)
    rows = [lm_row(lm, lm_tokens >= LM_TOKENS), *tagger_rows(tag, tag_tokens >= TAG_TOKENS)]
    print_table(f"Peak memory of long inputs (bounds checked at {LM_TOKENS:,} and {TAG_TOKENS:,} tokens)", rows)
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, runs={"language_model": lm, "tagger": tag},
               quick=args.quick)
    failed = [row for row in rows if not row["result_ok"] or row["met"] is False]
    if failed:
        sys.exit(f"{NAME}: wrong result or bound exceeded: {failed}")
    return rows


if __name__ == "__main__":
    main()
