"""The extra cost per training step of contextual string embeddings in a tagger (``lm_checkpoints``).

Contenders train the recipe's word + character BiLSTM-CRF (``recipes/tagging/conll2003_ner_char_bilstm_crf.yaml``:
word 100, character BiLSTM 25 + 25, BiLSTM 100, CRF, batch 32) in ``lightning.Trainer`` on the same synthetic
CoNLL-2003-like sentences: without string embeddings, with a frozen forward + backward character LM (``--lm-layers``
x ``--lm-hidden``, default 1 x 256, random weights: the cost does not depend on what they learned), the same with
``string_embeddings_cache`` (timed in the second epoch, when every sentence's features are cached), and with the two
LMs fine-tuned. Contenders are interleaved ``repeats`` times; the table shows medians and the ratio to the tagger
without. The string embeddings run each LM once over the batch's sentences (about 100 characters each).

Usage: ``python benchmarks/bench_string_embeddings.py [--out DIR] [--quick] [--repeats N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from datasets import DatasetDict

if __package__ in (None, ""):  # run as `python benchmarks/bench_string_embeddings.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_tagging import sentences  # noqa: E402
from benchmarks.bench_training import StepTimer  # noqa: E402
from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning import LanguageModel, SequenceTagger, TaggingDataModule  # noqa: E402
from rnn_lightning.data.tokenization import train_char_tokenizer  # noqa: E402

NAME = "bench_string_embeddings"
CONTENDERS = ("no string embeddings", "string embeddings, frozen LMs", "string embeddings, frozen LMs, cached",
              "string embeddings, fine-tuned LMs")


class SecondEpochTimer(StepTimer):
    """:class:`StepTimer` over the second epoch's steps (the first fills the string-embedding cache)."""

    def on_train_batch_start(self, trainer, *args) -> None:  # noqa: ANN001
        if trainer.current_epoch == 1:
            super().on_train_batch_start(trainer, *args)

    def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001
        if trainer.current_epoch == 1:
            super().on_train_batch_end(trainer, *args)


def language_models(folder: Path, texts: list[str], layers: int, hidden: int) -> list[str]:
    """A forward and a backward character LanguageModel checkpoint (random weights, the texts' characters)."""
    tokenizer, paths = train_char_tokenizer(texts), []
    for direction in ("forward", "backward"):
        model = LanguageModel(tokenizer.get_vocab_size(), embedding_dim=100, hidden_size=hidden, num_layers=layers,
                              direction=direction)
        path = folder / f"{direction}.ckpt"
        torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict(),
                    "tokenizer": tokenizer.to_str(), "pytorch-lightning_version": L.__version__}, path)
        paths.append(str(path))
    return paths


def run(contender: str, data: DatasetDict, lms: list[str], device: str, warmup: int, steps: int,
        seed: int) -> float:
    strings, cached = contender != CONTENDERS[0], contender == CONTENDERS[2]
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", char_features=True, serve_words=strings, batch_size=32)
    torch.manual_seed(seed)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=100, hidden_size=100, dropout=0.5, crf=True, char_vocab=dm.char_vocab,
                           lm_checkpoints=lms if strings else None, string_embeddings_cache=cached,
                           string_embeddings_trainable=contender == CONTENDERS[3])
    timer = (SecondEpochTimer if cached else StepTimer)(warmup, warmup + steps - 1, seed, device)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator=device, devices=1, max_epochs=2 if cached else 1, gradient_clip_val=5.0,
            callbacks=[timer], enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root,
        )
        trainer.fit(model, dm)
    assert timer.start is not None and timer.end is not None, "the timed steps did not run"
    return timer.end - timer.start


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help=f"folder for {NAME}.json")
    parser.add_argument("--quick", action="store_true", help="few steps: a smoke test")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lm-layers", type=int, default=1)
    parser.add_argument("--lm-hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*validation_step.*no `val_dataloader`.*")
    warmup, steps = (1, 3) if args.quick else (3, 20)
    data = DatasetDict(train=sentences(32 * (warmup + steps), args.seed), validation=sentences(32, args.seed + 1))
    characters = sum(len(" ".join(row)) for row in data["train"]["tokens"]) / len(data["train"])

    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as folder:
        lms = language_models(Path(folder), [" ".join(row) for row in data["train"]["tokens"]], args.lm_layers,
                              args.lm_hidden)
        for r in range(args.repeats):
            for name in CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]:
                times[name].append(run(name, data, lms, args.device, warmup, steps, args.seed))
                print(f"  repeat {r + 1}/{args.repeats} {name}: {times[name][-1]:.3f} s", flush=True)
    base = statistics.median(times[CONTENDERS[0]])
    rows = [{"contender": name, "ms_per_step": 1000 * statistics.median(times[name]) / steps,
             "ratio": statistics.median(times[name]) / base, "all_s": [round(t, 4) for t in times[name]]}
            for name in CONTENDERS]
    print_table(f"Tagger training step with string embeddings ({args.device}, batch 32, char LMs {args.lm_layers}x"
                f"{args.lm_hidden}, {characters:.0f} characters per sentence{', quick' if args.quick else ''})",
                [{k: v for k, v in row.items() if k != "all_s"} for row in rows])
    out = Path(args.out) / f"{NAME}.json"
    write_json(out, NAME, rows, device=args.device, quick=args.quick, repeats=args.repeats, steps=steps,
               warmup=warmup, lm_layers=args.lm_layers, lm_hidden=args.lm_hidden,
               characters_per_sentence=characters, lightning=L.__version__)
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
