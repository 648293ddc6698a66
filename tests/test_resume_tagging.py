"""A tagger killed (SIGKILL) mid-epoch and resumed from last.ckpt ends as the unbroken run, on 1 and 2 processes."""

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import trainer
from datasets import DatasetDict
from test_tagging import rule_corpus, rule_tags

from rnn_lightning import SequenceTagger, TaggingDataModule

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["ann", "bob", "sees", "likes", "the", "dog", "in", "paris", "rome", "today", "Zed", "Kowalczyk"]
CONFIG = """
seed_everything: 3
trainer:
  accelerator: cpu
  devices: DEVICES
  strategy: STRATEGY
  deterministic: true
  max_epochs: 2
  log_every_n_steps: 1
  gradient_clip_val: 1.0
  enable_progress_bar: false
  enable_model_summary: false
  logger: {class_path: lightning.pytorch.loggers.CSVLogger, init_args: {save_dir: logs}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {dirpath: ckpt, every_n_train_steps: 5, save_last: true, save_top_k: 0}
    - class_path: kill_helper.SaveAtEnd
    - {class_path: kill_helper.KillAtStep, init_args: {step: KILL, group: true}}
model:
  class_path: rnn_lightning.SequenceTagger
  init_args:
    embedding_dim: 8
    hidden_size: 8
    dropout: 0.3            # dropout and word dropout draw random numbers: the RNG state must resume too
    word_dropout: 0.2
    char_embedding_dim: 4
    char_hidden_size: 4
    crf: true
    optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.01}}
data:
  class_path: rnn_lightning.TaggingDataModule
  init_args:
    path: conll
    data_files: {train: train.txt, validation: dev.txt}
    tag_scheme: IOB2
    char_features: true
    batch_size: BATCH
"""
SENTENCES = 300  # 300 / 16 = 19 batches per epoch on one process


def _write_conll(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]
        lines += [f"{w} {t}" for w, t in zip(words, rule_tags(words))] + [""]
    path.write_text("\n".join(lines) + "\n")


def _fit(workdir: Path, kill: int = -1, resume: bool = False, devices: int = 1) -> subprocess.CompletedProcess:
    workdir.mkdir(exist_ok=True)
    _write_conll(workdir / "train.txt", SENTENCES, 0)
    _write_conll(workdir / "dev.txt", 40, 1)
    config = CONFIG.replace("KILL", str(kill)).replace("DEVICES", str(devices))
    config = config.replace("STRATEGY", "ddp" if devices > 1 else "auto").replace("BATCH", str(16 // devices))
    (workdir / "config.yaml").write_text(config)
    cmd = [sys.executable, "-m", "rnn_lightning.cli", "fit", "-c", "config.yaml"]
    cmd += ["--ckpt_path", "last"] if resume else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    # A session of its own: the kill takes the whole process group (every DDP rank), never pytest.
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
                          start_new_session=True)


def _final(workdir: Path) -> tuple[dict, list[float]]:
    state = torch.load(workdir / "final.ckpt", weights_only=True)
    f1 = []
    for path in sorted((workdir / "logs").rglob("metrics.csv")):
        with path.open() as f:
            f1 += [float(row["val/f1"]) for row in csv.DictReader(f) if row.get("val/f1")]
    return state, f1


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_tagger_killed_mid_epoch_resumes_to_the_unbroken_result(tmp_path, devices):
    unbroken = _fit(tmp_path / "unbroken", devices=devices)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    killed = _fit(tmp_path / "killed", kill=13, devices=devices)  # last.ckpt at step 10, mid-epoch 1
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _fit(tmp_path / "killed", resume=True, devices=devices)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "dataloader is not resumable" not in resumed.stderr
    (state, f1), (ref_state, ref_f1) = _final(tmp_path / "killed"), _final(tmp_path / "unbroken")
    assert state["global_step"] == ref_state["global_step"] == 2 * -(-SENTENCES // 16)
    for name, ref in ref_state["state_dict"].items():
        torch.testing.assert_close(state["state_dict"][name], ref, rtol=0, atol=0, msg=name)
    assert f1[-1] == ref_f1[-1]


def test_overfit_batches_swaps_in_its_sequential_sampler(tmp_path):
    """Lightning re-creates the training loader with a SequentialSampler: the same 2 batches every epoch."""
    dm = TaggingDataModule(dataset=DatasetDict(train=rule_corpus(100, 0), validation=rule_corpus(20, 1)),
                           tag_scheme="IOB2", batch_size=8)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=4, hidden_size=4)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["tokens"].clone())

    t = trainer(tmp_path, overfit_batches=2, max_epochs=2, callbacks=[Record()])
    t.fit(model, dm)
    assert t.global_step == 4 and torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])
