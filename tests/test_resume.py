"""Kill a training process (SIGKILL) and resume from last.ckpt: the result equals an unbroken run, exactly."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = dict(num_words=40, train_tokens=6000, validation_tokens=1500, test_tokens=500, batch_size=4,
            eval_batch_size=3, bptt=10)


AWD_DATA = {**DATA, "variable_bptt": True}  # AWD-LSTM's windows: a new cut each epoch, the step's lr scaled
AWD_MODEL = """    dropout_output: 0.3
    weight_drop: 0.5          # AWD-LSTM's regularisers draw random numbers too
    dropout_words: 0.1
    locked_dropout: true
    last_hidden_size: 16
    tie_weights: true
    ar_alpha: 2.0
    tar_beta: 1.0
"""


def _windows_per_epoch(data: dict) -> int:
    from rnn_lightning import MarkovCorpusDataModule

    dm = MarkovCorpusDataModule(**data)
    dm.setup("fit")
    return len(dm.train_dataloader())


WINDOWS = _windows_per_epoch(DATA)
AWD_WINDOWS = _windows_per_epoch(AWD_DATA)
CONFIG = """
seed_everything: 7
trainer:
  accelerator: cpu
  devices: 1
  deterministic: true
  max_epochs: 2
  log_every_n_steps: 1
  gradient_clip_val: 0.5
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {save_dir: logs}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {dirpath: ckpt, every_n_train_steps: EVERY, save_last: true, save_top_k: 0}
    - class_path: kill_helper.SaveAtEnd
    - class_path: kill_helper.KillAtStep
      init_args: {step: KILL, group: true}
model:
  class_path: rnn_lightning.LanguageModel
  init_args:
    embedding_dim: 16
    hidden_size: 24
    num_layers: 2
    dropout_embedding: 0.3   # dropout draws random numbers: the RNG state must resume too
    dropout_between: 0.3
    dropout_output: 0.3
    optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.01}}
    lr_scheduler: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 1, gamma: 0.5}}
data:
  class_path: rnn_lightning.MarkovCorpusDataModule
  init_args: DATA
"""


def _fit(workdir: Path, kill: int = -1, every: int = 15, resume: bool = False, devices: int = 1, awd: bool = False):
    workdir.mkdir(exist_ok=True)
    data = AWD_DATA if awd else DATA
    config = CONFIG.replace("KILL", str(kill)).replace("EVERY", str(every)).replace("DATA", json.dumps(data))
    if awd:
        config = config.replace("    dropout_output: 0.3\n", AWD_MODEL)
    if devices > 1:  # the same global batch (batch_size streams per device), real DDP over gloo
        config = config.replace("  devices: 1", f"  devices: {devices}\n  strategy: ddp")
        config = config.replace('"batch_size": 4', f'"batch_size": {4 // devices}')
    (workdir / "config.yaml").write_text(config)
    cmd = [sys.executable, "-m", "rnn_lightning.cli", "fit", "-c", "config.yaml"]
    if resume:
        cmd += ["--ckpt_path", "last"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    # A session of its own: the kill takes the whole process group (every DDP rank), never pytest.
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
                          start_new_session=True)


def _final(workdir: Path) -> tuple[dict, float]:
    state = torch.load(workdir / "final.ckpt", weights_only=True)  # safe loading, no pickled code
    ppl = []
    for path in sorted((workdir / "logs").rglob("metrics.csv")):  # version_0, then the resumed version_1
        with path.open() as f:
            ppl += [float(row["val/ppl"]) for row in csv.DictReader(f) if row.get("val/ppl")]
    return state, ppl[-1]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("unbroken")
    result = _fit(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return _final(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at, every, where", [
    (37, 15, "mid-epoch, last.ckpt at step 30"),
    (WINDOWS + 2, WINDOWS, "early in epoch 2, last.ckpt at the end of epoch 1"),
    (WINDOWS + 37, 15, "mid-epoch 2, last.ckpt mid-epoch too"),
])
def test_sigkill_then_resume_equals_an_unbroken_run(tmp_path, unbroken, kill_at, every, where):
    killed = _fit(tmp_path, kill=kill_at, every=every)
    assert killed.returncode == -9, f"expected SIGKILL ({where}): {killed.stderr[-2000:]}"
    assert not (tmp_path / "final.ckpt").exists()
    resumed = _fit(tmp_path, every=every, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (state, ppl), (ref_state, ref_ppl) = _final(tmp_path), unbroken
    assert state["global_step"] == ref_state["global_step"] == 2 * WINDOWS
    for name, ref in ref_state["state_dict"].items():
        torch.testing.assert_close(state["state_dict"][name], ref, rtol=0, atol=0, msg=f"{name} ({where})")
    assert ppl == ref_ppl


@pytest.mark.slow
@pytest.mark.parametrize("kill_at, where", [
    (37, "mid-epoch 1, last.ckpt at step 30"),
    (AWD_WINDOWS + 37, "mid-epoch 2 (its own cut of the windows), last.ckpt mid-epoch too"),
])
def test_awd_run_with_variable_windows_killed_then_resumed_equals_an_unbroken_run(tmp_path, kill_at, where):
    unbroken = _fit(tmp_path / "unbroken", awd=True)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    killed = _fit(tmp_path / "killed", kill=kill_at, awd=True)
    assert killed.returncode == -9, f"expected SIGKILL ({where}): {killed.stderr[-2000:]}"
    resumed = _fit(tmp_path / "killed", resume=True, awd=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (state, ppl), (ref_state, ref_ppl) = _final(tmp_path / "killed"), _final(tmp_path / "unbroken")
    assert state["global_step"] == ref_state["global_step"] == 2 * AWD_WINDOWS
    for name, ref in ref_state["state_dict"].items():
        torch.testing.assert_close(state["state_dict"][name], ref, rtol=0, atol=0, msg=f"{name} ({where})")
    assert ppl == ref_ppl


@pytest.mark.slow
def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_last_ckpt_intact(tmp_path):
    config = CONFIG.replace("KILL", "-1").replace("EVERY", "15").replace("DATA", json.dumps(DATA))
    config = config.replace("    - class_path: kill_helper.SaveAtEnd",
                            "    - class_path: kill_helper.KillDuringSave\n      init_args: {nth: 2}")
    (tmp_path / "config.yaml").write_text(config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-m", "rnn_lightning.cli", "fit", "-c", "config.yaml"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # The first save (step 15) is whole; the second (step 30) died half-written, away from last.ckpt.
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 15
    resumed = _fit(tmp_path, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(tmp_path / "final.ckpt", weights_only=True)["global_step"] == 2 * WINDOWS


@pytest.mark.slow
@pytest.mark.parametrize("awd", [False, True], ids=["plain", "awd-variable-windows"])
def test_ddp_job_killed_mid_epoch_resumes_to_the_unbroken_ddp_result(tmp_path, awd):
    """2 processes: each rank's stream position, BPTT state and dropout stream come back (with AWD's variable
    windows: both ranks cut their streams alike, before and after the resume)."""
    unbroken = _fit(tmp_path / "unbroken", devices=2, awd=awd)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    killed = _fit(tmp_path / "killed", kill=37, devices=2, awd=awd)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _fit(tmp_path / "killed", resume=True, devices=2, awd=awd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (state, ppl), (ref_state, ref_ppl) = _final(tmp_path / "killed"), _final(tmp_path / "unbroken")
    assert state["global_step"] == ref_state["global_step"]
    for name, ref in ref_state["state_dict"].items():
        torch.testing.assert_close(state["state_dict"][name], ref, rtol=0, atol=0, msg=name)
    assert ppl == ref_ppl
