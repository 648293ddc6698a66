"""Tagger training throughput on a GPU: lengths kept on the host (this library) vs lengths moved to the GPU.

cuDNN runs a packed batch by its lengths on the host. Lengths moved to the GPU with the rest of the batch are copied
back by packing at every step, and a CRF that checks its mask and tags reads them on the host too: each read waits
for all the GPU's queued work, so the GPU runs dry while Python prepares the next step. The DataModules here keep
``lengths`` / ``char_lengths`` on the CPU and the tagger trusts their padding, so a step never waits.

Both contenders train the same tagger (same init, dropout stream and batches) in ``lightning.Trainer`` for the same
steps; the per-step losses are compared, so the script checks it times the same computation. Models: the recipes'
word BiLSTM 100 + softmax (UD EWT UPOS) and word + character BiLSTM-CRF (Lample et al., CoNLL-2003 NER), batch 32,
on synthetic CoNLL-2003-like sentences (1-40 tokens, mean ~14; 9 IOB2 tags). Contenders are interleaved ``repeats``
times; the table shows medians. On a CPU both are the same computation (a check of the script, not a benchmark).

Usage: ``python benchmarks/bench_tagging.py [--out DIR] [--quick] [--repeats N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from datasets import Dataset, DatasetDict

if __package__ in (None, ""):  # run as `python benchmarks/bench_tagging.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_training import StepTimer  # noqa: E402
from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning import SequenceTagger, TaggingDataModule  # noqa: E402
from rnn_lightning.data.batching import RIGHT_PADDED  # noqa: E402

NAME = "bench_tagging"
TYPES = ("PER", "LOC", "ORG", "MISC")
MODELS = {
    "word BiLSTM + softmax": dict(crf=False, chars=False),
    "word + char BiLSTM-CRF": dict(crf=True, chars=True),
}


def sentences(n: int, seed: int, max_len: int = 40) -> Dataset:
    """CoNLL-2003-like sentences: made-up words, 1-40 tokens (mean ~14), valid IOB2 tags over four types."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    rows, tags = [], []
    for _ in range(n):
        length = min(max_len, max(1, int(rng.expovariate(1 / 14))))
        row_tags, previous = [], "O"
        for _ in range(length):
            kind = rng.choice(TYPES)
            choices = ["O"] * 6 + [f"B-{kind}"] + ([f"I-{previous[2:]}"] * 2 if previous != "O" else [])
            previous = rng.choice(choices)
            row_tags.append(previous)
        rows.append([rng.choice(words).capitalize() if t != "O" else rng.choice(words) for t in row_tags])
        tags.append(row_tags)
    return Dataset.from_dict({"tokens": rows, "tags": tags})


class LengthsOnDevice(TaggingDataModule):
    """Moves the whole batch, lengths too, as Lightning's default transfer does (packing then copies them back)."""

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return L.LightningDataModule.transfer_batch_to_device(self, batch, device, dataloader_idx)


class CheckedTagger(SequenceTagger):
    """Reads the CRF's mask and tags on the host at every step, as for batches of unknown origin."""

    def _loss(self, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return super()._loss(scores, {key: value for key, value in batch.items() if key != RIGHT_PADDED})


def run(model_name: str, host_lengths: bool, data: DatasetDict, device: str, warmup: int, steps: int,
        size: int, seed: int) -> tuple[float, list[float]]:
    spec = MODELS[model_name]
    module = TaggingDataModule if host_lengths else LengthsOnDevice
    dm = module(dataset=data, tag_scheme="IOB2", char_features=spec["chars"], batch_size=32)
    torch.manual_seed(seed)
    cls = SequenceTagger if host_lengths else CheckedTagger
    model = cls(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                embedding_dim=size, hidden_size=size,
                dropout=0.5, crf=spec["crf"], char_vocab=dm.char_vocab)
    timer = StepTimer(warmup, warmup + steps - 1, seed, device)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator=device, devices=1, max_epochs=1, max_steps=warmup + steps, gradient_clip_val=5.0,
            callbacks=[timer], enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root,
        )
        trainer.fit(model, dm)
    assert timer.start is not None and timer.end is not None, "the timed steps did not run"
    return timer.end - timer.start, [float(x) for x in timer.losses]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for bench_tagging.json")
    parser.add_argument("--quick", action="store_true", help="a small network and few steps: a smoke test")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*validation_step.*no `val_dataloader`.*")
    warmup, steps, size = (2, 10, 16) if args.quick else (10, 150, 100)
    data = DatasetDict(train=sentences(32 * (warmup + steps), args.seed), validation=sentences(32, args.seed + 1))

    rows = []
    for model_name in MODELS:
        times: dict[bool, list[float]] = {True: [], False: []}
        losses: dict[bool, list[float]] = {}
        for r in range(args.repeats):
            for host in ((True, False) if r % 2 == 0 else (False, True)):
                seconds, losses[host] = run(model_name, host, data, args.device, warmup, steps, size, args.seed)
                times[host].append(seconds)
                print(f"  [{model_name}] repeat {r + 1}/{args.repeats} lengths on "
                      f"{'host' if host else 'device'}: {seconds:.3f} s", flush=True)
        diff = max(abs(a - b) for a, b in zip(losses[True], losses[False]))
        ours, theirs = statistics.median(times[True]), statistics.median(times[False])
        for host, seconds in ((False, theirs), (True, ours)):
            rows.append({
                "model": model_name,
                "contender": "lengths on the host (rnn_lightning)" if host else "lengths on the device (waits)",
                "ms_per_step": 1000 * seconds / steps,
                "sentences_per_s": 32 * steps / seconds,
                "speedup": theirs / seconds,
                "max_loss_diff": diff,
                "all_s": [round(t, 4) for t in times[host]],
            })
    print_table(f"Tagger training ({args.device}, batch 32{', quick' if args.quick else ''})",
                [{k: v for k, v in row.items() if k != "all_s"} for row in rows])
    out = Path(args.out) / f"{NAME}.json"
    write_json(out, NAME, rows, device=args.device, quick=args.quick, repeats=args.repeats, steps=steps,
               warmup=warmup, hidden=size, lightning=L.__version__)
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
