"""Real Weights & Biases logging, offline: the quickstart recipe plus ``recipes/loggers/wandb.yaml``.

wandb >= 0.18 runs offline through ``wandb-core``, which writes only the ``.wandb`` transaction log and media
files (no ``files/config.yaml`` nor ``wandb-summary.json``); the log is read back here with a small reader of
its LevelDB-log framing and wandb's own ``Record`` protobuf.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rnn_lightning import MarkovCorpusDataModule
from rnn_lightning.data.markov import MarkovSource, markov_corpus
from rnn_lightning.data.tokenization import SPECIAL_TOKENS

wandb_internal_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RECIPES = ["-c", str(REPO / "recipes" / "quickstart.yaml"),
           "-c", str(REPO / "recipes" / "loggers" / "wandb.yaml")]
# the quickstart's corpus (num_words, branching, seed as in the recipe), made tiny
CORPUS = {"num_words": 50, "branching": 8, "seed": 0,
          "train_tokens": 5_000, "validation_tokens": 2_000, "test_tokens": 500}
TRAIN_BATCHES = 10
TIMEOUT_S = 180


def rnn_lightning_command() -> list[str]:
    """The ``rnn-lightning`` script of this interpreter (``python -m rnn_lightning.cli`` if absent)."""
    script = Path(sys.executable).with_name("rnn-lightning")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rnn_lightning.cli"]


def fit(workdir: Path, *overrides: str, devices: int = 1, max_epochs: int = 2) -> str:
    """Run the quickstart with the W&B fragment, offline, tiny; return its stdout (fail with its output)."""
    data = {**CORPUS, "batch_size": 4 // devices, "eval_batch_size": 4 // devices}
    args = [f"--data.init_args.{k}={v}" for k, v in data.items()]
    args += ["--model.init_args.embedding_dim=16", "--model.init_args.hidden_size=32"]
    args += [f"--trainer.{k}={v}" for k, v in {
        "accelerator": "cpu", "devices": devices, "max_epochs": max_epochs,
        "limit_train_batches": TRAIN_BATCHES, "log_every_n_steps": 2,
        "enable_progress_bar": False, "enable_model_summary": False,
    }.items()]
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    # none of this process's own W&B variables: an in-process run (another test) leaves e.g. the address of its
    # W&B service in os.environ, and a subprocess that inherits it logs there instead of into ``workdir``
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env = dict(
        inherited, WANDB_MODE="offline", WANDB_DIR=str(workdir), WANDB_SILENT="true", OMP_NUM_THREADS="1",
        WANDB_CONFIG_DIR=str(workdir / ".wandb-config"), WANDB_CACHE_DIR=str(workdir / ".wandb-cache"),
        WANDB_DATA_DIR=str(workdir / ".wandb-data"),
    )
    command = [*rnn_lightning_command(), "fit", *RECIPES, *args, *overrides]
    try:
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {TIMEOUT_S}s: {' '.join(command)}\n--- stdout ---\n{e.stdout}\n"
                    f"--- stderr ---\n{e.stderr}")
    if done.returncode != 0:
        pytest.fail(f"failed ({done.returncode}): {' '.join(command)}\n--- stdout ---\n{done.stdout}\n"
                    f"--- stderr ---\n{done.stderr}")
    return done.stdout


# -- reading an offline run --
_BLOCK = 32 * 1024  # LevelDB log: 32 KiB blocks of chunks, each with a 7-byte header
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    """The ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file, in order.

    Layout: a 7-byte file header (``:W&B``, magic 0xBEE1, version), then LevelDB-log chunks: each chunk is
    ``crc32c (4) | length (2, LE) | type (1) | data``; a record is one FULL chunk or FIRST, MIDDLE..., LAST;
    a block tail shorter than a header is zero padding.
    """
    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack_from("<H", data, 4)[0] == 0xBEE1, data[:7]
    records, parts, pos = [], [], 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # padding at the end of a block
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:  # preallocated / padded tail
            pos += left
            continue
        assert kind in (_FULL, _FIRST, _MIDDLE, _LAST), f"bad chunk type {kind} at byte {pos}"
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    assert not parts, "truncated record at the end of the file"
    return records


def _items(items) -> dict:
    """Config/history/summary items as a dict; ``nested_key`` paths (a table's fields) as nested dicts."""
    out: dict = {}
    for item in items:
        *parents, last = [item.key] if item.key else list(item.nested_key)
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = json.loads(item.value_json)
    return out


class OfflineRun:
    """Config, history rows and summary of one offline run directory."""

    def __init__(self, run_dir: Path) -> None:
        (log,) = run_dir.glob("run-*.wandb")
        self.dir, self.records = run_dir, read_records(log)
        self.config: dict = {}
        self.history: list[dict] = []
        self.summary: dict = {}
        for record in self.records:
            kind = record.WhichOneof("record_type")
            if kind == "config":
                self.config.update(_items(record.config.update))
            elif kind == "history":
                self.history.append(_items(record.history.item))
            elif kind == "summary":
                self.summary.update(_items(record.summary.update))

    def values(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


def run_dirs(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "wandb").glob("*run-*") if p.is_dir() and not p.is_symlink())


def expected_vocab_size() -> int:
    """Distinct words of the train split (the word tokenizer's vocabulary) plus the special tokens."""
    source = MarkovSource.random(CORPUS["num_words"], branching=CORPUS["branching"], seed=CORPUS["seed"])
    corpus = markov_corpus(source, CORPUS["train_tokens"], CORPUS["validation_tokens"], CORPUS["test_tokens"],
                           CORPUS["seed"])
    return len({word for line in corpus["train"]["text"] for word in line.split()}) + len(SPECIAL_TOKENS)


def test_quickstart_logs_hparams_metrics_and_samples_to_wandb(tmp_path: Path) -> None:
    stdout = fit(tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.startswith("offline-run-")
    run = OfflineRun(run_dir)
    kinds = {r.WhichOneof("record_type") for r in run.records}
    assert {"run", "config", "history", "summary", "exit"} <= kinds

    # hyperparameters: the model's (vocab_size linked from the data by the CLI) and the DataModule's
    vocab_size = expected_vocab_size()
    assert vocab_size == MarkovCorpusDataModule(**CORPUS).vocab_size
    assert run.config["vocab_size"] == vocab_size
    assert run.config["cell"] == "lstm" and run.config["hidden_size"] == 32
    assert run.config["num_words"] == CORPUS["num_words"]
    assert run.config["train_tokens"] == CORPUS["train_tokens"]

    # metrics: train/loss every log_every_n_steps, val/* after each of the 2 epochs
    train_loss, val_ppl, val_loss = run.values("train/loss"), run.values("val/ppl"), run.values("val/loss")
    assert len(train_loss) == 2 * TRAIN_BATCHES // 2 and all(math.isfinite(v) for v in train_loss)
    assert len(val_ppl) == len(val_loss) == 2
    for ppl, loss in zip(val_ppl, val_loss, strict=True):
        assert 1.0 < ppl < vocab_size and math.isclose(math.log(ppl), loss, rel_tol=1e-5)
    assert run.summary["val/ppl"] == val_ppl[-1]
    printed = re.search(r"validation perplexity: ([0-9.]+)", stdout)
    assert printed and float(printed.group(1)) == pytest.approx(val_ppl[-1], abs=5e-4)

    # the GenerateSamples table: logged after each validation, the rows of all validations so far
    tables = run.values("samples")
    assert len(tables) == 2 and all(t["_type"] == "table-file" for t in tables)
    table = json.loads((run_dir / "files" / tables[-1]["path"]).read_text())
    assert table["columns"] == ["epoch", "step", "prompt", "sample"]
    assert [row[:3] for row in table["data"]] == [[0, TRAIN_BATCHES, ""], [1, 2 * TRAIN_BATCHES, ""]]
    assert any(isinstance(row[3], str) and row[3].strip() for row in table["data"])
    logged = sorted((run_dir / "files" / "media" / "table").glob("*.table.json"))
    assert [p.name.split("_")[0] for p in logged] == ["samples", "samples"]


def test_ddp_creates_a_single_wandb_run(tmp_path: Path) -> None:
    """With 2 DDP processes only rank zero starts a W&B run (rank 1's WandbLogger stays a dummy)."""
    fit(tmp_path, devices=2, max_epochs=1)
    (run_dir,) = run_dirs(tmp_path)
    run = OfflineRun(run_dir)
    assert len(run.values("val/ppl")) == 1 and len(run.values("samples")) == 1
    assert run.config["batch_size"] == 2  # per process


def test_tagger_logs_its_labels_and_span_f1_to_wandb(tmp_path: Path) -> None:
    """A tagging run through the CLI with the W&B fragment: the label set in the config, span F1 per validation."""
    from test_distributed_tagging import write_conll

    write_conll(tmp_path / "train.txt", 80, 0)
    write_conll(tmp_path / "valid.txt", 31, 1)
    files = json.dumps({"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")})
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1",
               WANDB_CONFIG_DIR=str(tmp_path / ".wandb-config"), WANDB_CACHE_DIR=str(tmp_path / ".wandb-cache"),
               WANDB_DATA_DIR=str(tmp_path / ".wandb-data"))
    command = [*rnn_lightning_command(), "fit", "-c", str(REPO / "recipes" / "loggers" / "wandb.yaml"),
               "--model", "rnn_lightning.SequenceTagger", "--model.init_args.embedding_dim=8",
               "--model.init_args.hidden_size=8", "--model.init_args.crf=true",
               "--data", "rnn_lightning.TaggingDataModule", "--data.init_args.path=conll",
               "--data.init_args.tag_scheme=IOB2", "--data.init_args.data_files", files,
               "--trainer.accelerator=cpu", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    (run_dir,) = run_dirs(tmp_path)
    run = OfflineRun(run_dir)
    assert run.config["labels"] == ["B-LOC", "B-PER", "I-LOC", "O"] and run.config["span_scheme"] == "IOB2"
    assert run.config["crf"] is True and run.config["tag_scheme"] == "IOB2"  # the model's and the data's
    f1, precision, recall = run.values("val/f1"), run.values("val/precision"), run.values("val/recall")
    assert len(f1) == 2  # one per epoch
    for f, p, r in zip(f1, precision, recall, strict=True):
        assert f == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=1e-6)
    assert run.summary["val/f1"] == f1[-1]
