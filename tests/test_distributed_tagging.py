"""Tagging metrics under real DDP (CPU, gloo, 2 ranks): every validation sentence and token counted exactly once.

The validation split has an odd number of sentences, so Lightning's default distributed sampler would pad one rank
with a repeated sentence; the DataModule's unrepeated sampler must not. Both runs go through the CLI as
subprocesses (DDP re-executes the command for rank 1) and validate the same seeded initial weights.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from test_tagging import WORDS, rule_tags

from rnn_lightning.functional.tag_schemes import tag_spans

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).resolve().parent
VALIDATION_SENTENCES = 101


class RecordTagging(L.Callback):
    """Writes the all-reduced token count and span counts of each validation (runs before the task's epoch end)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = pl_module.metrics["val"]
        local_tokens = metrics["loss"].weight.detach().clone()
        tokens = trainer.strategy.reduce(local_tokens.clone(), reduce_op="sum")
        spans = trainer.strategy.reduce(metrics["f1"].counts.detach().clone(), reduce_op="sum")  # (types, 3)
        if trainer.is_global_zero:
            row = {"world_size": trainer.world_size, "tokens": float(tokens), "rank0_tokens": float(local_tokens),
                   "predicted": int(spans[:, 1].sum()), "gold": int(spans[:, 2].sum())}
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def write_conll(path: Path, n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    sentences = [[rng.choice(WORDS) for _ in range(rng.randint(1, 12))] for _ in range(n)]
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(s, rule_tags(s))) for s in sentences]
    path.write_text("\n\n".join(blocks) + "\n")
    return sentences


def validate(workdir: Path, devices: int, files: dict[str, str]) -> tuple[dict, dict]:
    workdir.mkdir()
    args = ["validate", "--seed_everything", "0", "--model", "rnn_lightning.SequenceTagger",
            "--model.init_args.embedding_dim", "8", "--model.init_args.hidden_size", "8",
            "--data", "rnn_lightning.TaggingDataModule", "--data.init_args.path", "conll",
            "--data.init_args.tag_scheme", "IOB2", "--data.init_args.eval_batch_size", "8",
            "--data.init_args.data_files", json.dumps(files),
            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
            "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir", "logs",
            "--trainer.callbacks+", "test_distributed_tagging.RecordTagging",
            "--trainer.callbacks.path", "record.jsonl"]
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-m", "rnn_lightning.cli", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    record = json.loads((workdir / "record.jsonl").read_text().splitlines()[-1])
    (metrics_file,) = workdir.glob("logs/lightning_logs/*/metrics.csv")  # rank zero logs alone
    with open(metrics_file) as f:
        logged = [row for row in csv.DictReader(f) if row.get("val/acc")]
    assert len(logged) == 1
    return record, {k: float(v) for k, v in logged[0].items() if k.startswith("val/")}


def test_ddp_validation_counts_each_sentence_once(tmp_path):
    files = {"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")}
    write_conll(tmp_path / "train.txt", 80, 0)
    sentences = write_conll(tmp_path / "valid.txt", VALIDATION_SENTENCES, 1)
    single, single_logged = validate(tmp_path / "single", 1, files)
    ddp, ddp_logged = validate(tmp_path / "ddp", 2, files)
    tokens = sum(map(len, sentences))
    gold = sum(len(tag_spans(rule_tags(s), "IOB2")) for s in sentences)
    for record in (single, ddp):
        assert record["tokens"] == tokens and record["gold"] == gold  # each token and each span once
    assert 0 < ddp["rank0_tokens"] < tokens  # rank 0 saw only its share
    assert ddp["predicted"] == single["predicted"]
    assert ddp_logged.keys() == single_logged.keys() >= {"val/acc", "val/f1", "val/loss"}
    for key, value in single_logged.items():
        assert ddp_logged[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
