"""Real multi-process DDP on CPU (gloo, 2 ranks) against a 1-process run of the same global batches.

Both runs go through the ``rnn-lightning`` CLI as subprocesses (Lightning's DDP launcher re-executes the same
command line for rank 1, so the DDP trainer must not run inside pytest). The DataModule cuts
``batch_size * world_size`` streams and hands each rank its own contiguous block of rows, so 1 process x 4
streams and 2 processes x 2 streams see the same windows; with no dropout, plain SGD and the gradient of the
mean over every target token, the two runs must end with the same weights and the same validation perplexity.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from rnn_lightning.data.markov import MarkovSource, markov_corpus

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
STEPS = 20  # optimizer steps: one epoch of `limit_train_batches` windows, then one validation
CLIP = 0.1  # below the gradient norms of this model (~0.15-0.2), so clipping acts at every step
CORPUS = {"num_words": 50, "train_tokens": 20_000, "validation_tokens": 5_000, "test_tokens": 1_000,
          "seed": 0}
STREAMS = 4  # global training streams = global evaluation streams
TIMEOUT_S = 180


class RecordValidation(L.Callback):
    """Appends each validation's token count and NLL sum, summed over all ranks, to a JSON-lines file.

    Loaded by the CLI subprocesses as ``test_distributed.RecordValidation`` (``tests/`` on PYTHONPATH). It
    runs before ``LanguageModel.on_validation_epoch_end`` (callbacks first), while the Perplexity states still
    hold this rank's sums; every rank takes part in the all-reduce, rank zero writes.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric = pl_module.val_ppl
        local_count = int(metric.count)
        nll_sum = trainer.strategy.reduce(metric.nll_sum.detach().clone(), reduce_op="sum")
        count = trainer.strategy.reduce(metric.count.detach().clone(), reduce_op="sum")
        if trainer.is_global_zero:
            row = {
                "sanity_checking": trainer.sanity_checking,
                "global_step": trainer.global_step,
                "world_size": trainer.world_size,
                "nll_sum": float(nll_sum),
                "count": int(count),
                "rank0_count": local_count,
            }
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def cli_args(devices: int) -> list[str]:
    """``rnn-lightning fit`` arguments: ``STREAMS`` global streams split over ``devices`` processes."""
    per_device = STREAMS // devices
    model = {
        "embedding_dim": 16, "hidden_size": 32, "num_layers": 2, "cell": "lstm",
        "dropout_embedding": 0.0, "dropout_between": 0.0, "dropout_output": 0.0,
    }
    data = {**CORPUS, "batch_size": per_device, "eval_batch_size": per_device, "bptt": 35}
    args = ["fit", "--seed_everything", "0", "--model", "rnn_lightning.LanguageModel"]
    args += [f"--model.init_args.{k}={v}" for k, v in model.items()]
    args += ["--model.init_args.optimizer", "torch.optim.SGD", "--model.init_args.optimizer.lr", "1.0"]
    args += ["--data", "rnn_lightning.MarkovCorpusDataModule"]
    args += [f"--data.init_args.{k}={v}" for k, v in data.items()]
    trainer = {
        "accelerator": "cpu", "devices": devices, "max_epochs": 1, "max_steps": STEPS,
        "limit_train_batches": STEPS, "limit_val_batches": 1.0, "num_sanity_val_steps": -1,
        "gradient_clip_val": CLIP, "gradient_clip_algorithm": "norm", "deterministic": True,
        "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
    }
    if devices > 1:
        trainer["strategy"] = "ddp"
    args += [f"--trainer.{k}={v}" for k, v in trainer.items()]
    args += [
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", "logs",
        "--trainer.callbacks+", "lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.dirpath", "checkpoints", "--trainer.callbacks.save_last", "true",
        "--trainer.callbacks.save_top_k", "0",
        "--trainer.callbacks+", "test_distributed.RecordValidation",
        "--trainer.callbacks.path", "validation.jsonl",
    ]
    return args


def _start(workdir: Path, devices: int) -> subprocess.Popen:
    workdir.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]))
    command = [sys.executable, "-m", "rnn_lightning.cli", *cli_args(devices)]
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen, name: str) -> None:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{name} run timed out after {TIMEOUT_S}s\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    if process.returncode != 0:
        pytest.fail(f"{name} run failed ({process.returncode}): {' '.join(process.args)}\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run A (1 process x 4 streams) and run B (DDP, 2 processes x 2 streams) side by side."""
    root = tmp_path_factory.mktemp("ddp")
    start = time.perf_counter()
    processes = {"single": _start(root / "single", 1), "ddp": _start(root / "ddp", 2)}
    for name, process in processes.items():
        _finish(process, name)
    print(f"\nboth CLI runs took {time.perf_counter() - start:.1f}s")
    return {name: root / name for name in processes}


def _validations(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "validation.jsonl").read_text().splitlines()]


def _metrics(workdir: Path) -> list[dict[str, str]]:
    files = sorted(workdir.glob("logs/lightning_logs/*/metrics.csv"))
    assert len(files) == 1, f"expected one CSV log (rank zero only), found {files}"
    with open(files[0]) as f:
        return list(csv.DictReader(f))


def _final_val_ppl(workdir: Path) -> float:
    values = [float(row["val/ppl"]) for row in _metrics(workdir) if row.get("val/ppl")]
    assert len(values) == 1, f"expected one logged validation, got {values}"
    return values[0]


def _checkpoint(workdir: Path) -> dict:
    return torch.load(workdir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def _validation_targets() -> int:
    """Targets scored on the validation split, from the raw lines: each line's words and its ``<eos>``.

    The split is ``<bos> w1 .. wn <eos>`` per line, concatenated; ``<bos>`` is never a target.
    """
    source = MarkovSource.random(CORPUS["num_words"], seed=CORPUS["seed"])
    corpus = markov_corpus(source, CORPUS["train_tokens"], CORPUS["validation_tokens"], CORPUS["test_tokens"],
                           CORPUS["seed"])
    return sum(len(line.split()) + 1 for line in corpus["validation"]["text"])


def test_ddp_shards_validation_and_counts_every_token_once(runs: dict[str, Path]) -> None:
    single, ddp = _validations(runs["single"]), _validations(runs["ddp"])
    assert [v["world_size"] for v in single] == [1, 1] and [v["world_size"] for v in ddp] == [2, 2]
    assert [v["sanity_checking"] for v in ddp] == [True, False] == [v["sanity_checking"] for v in single]
    assert single[1]["global_step"] == ddp[1]["global_step"] == STEPS  # the last validation follows step N

    expected = _validation_targets()
    for run in (single, ddp):
        assert [v["count"] for v in run] == [expected, expected]  # every target once, on one rank only
    assert 0 < ddp[0]["rank0_count"] < expected  # rank 0 scored only its own block of streams

    # Before training the weights are the seeded initialisation in both runs: the sharded validation,
    # all-reduced, must give the single-process NLL (summation order differs: tolerance ~float32).
    rel = abs(ddp[0]["nll_sum"] - single[0]["nll_sum"]) / single[0]["nll_sum"]
    print(f"initial validation NLL sum: single {single[0]['nll_sum']:.6f}, ddp {ddp[0]['nll_sum']:.6f}")
    assert rel < 1e-6

    for workdir in runs.values():
        checkpoint = _checkpoint(workdir)
        assert checkpoint["global_step"] == STEPS
        grad_norms = [float(r["train/grad_norm"]) for r in _metrics(workdir) if r.get("train/grad_norm")]
        assert len(grad_norms) == STEPS and max(grad_norms) > CLIP  # clipping did act


def test_ddp_training_matches_single_process(runs: dict[str, Path]) -> None:
    a, b = _checkpoint(runs["single"])["state_dict"], _checkpoint(runs["ddp"])["state_dict"]
    assert a.keys() == b.keys()
    diffs = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a}
    worst = max(diffs, key=diffs.get)
    ppl_single, ppl_ddp = _final_val_ppl(runs["single"]), _final_val_ppl(runs["ddp"])
    print(f"max |w_single - w_ddp| = {diffs[worst]:.3g} ({worst}); "
          f"val/ppl single {ppl_single!r}, ddp {ppl_ddp!r}")
    assert diffs[worst] < 1e-5, f"weights differ: max abs diff {diffs[worst]:.3g} in {worst}"
    assert ppl_ddp == pytest.approx(ppl_single, rel=1e-6, abs=0)
