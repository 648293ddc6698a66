"""Shared fixtures: a tiny synthetic corpus, a tiny language model, and a working directory laid out as a user's."""

import faulthandler
import os
import shutil
import signal
from pathlib import Path

import pytest
from corpora import CORPORA
from hypothesis import HealthCheck, settings

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread (unless set): the models here are tiny, and on a busy machine a second OpenMP thread waits
# at every barrier for a core someone else holds, slowing the suite severalfold. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# No property test may fail because the machine is busy: no per-example deadline, no "data generation too slow".
settings.register_profile("no_timing", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("no_timing")


DEADLINE_S = 120  # generous on a busy machine: the limit catches hangs, not slowness
_REAL_STDERR: dict[str, int] = {}


def pytest_configure(config):
    """Keep a copy of the real stderr (output capture is paused here), where a hang's tracebacks can still be read
    after the process that captured its own output has ended."""
    _REAL_STDERR["fd"] = os.dup(2)


@pytest.fixture
def deadline(request):
    """Fail a test that runs past its limit instead of blocking the suite (issue 12: malformed input once hung
    forever). The limit: ``@pytest.mark.deadline(seconds)``, else ``DEADLINE_S``, counted from this fixture's setup.

    A hang in Python code gets a ``TimeoutError`` at the limit (``SIGALRM``). A hang inside C code, where no Python
    signal handler runs, ends the whole test process ``grace`` seconds later (a marker keyword, default 30) with
    every thread's traceback (``faulthandler``): a failed run, never a blocked one."""
    marker = request.node.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else DEADLINE_S
    grace = int(marker.kwargs.get("grace", 30)) if marker else 30

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang (the test's deadline)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    stderr = open(_REAL_STDERR["fd"], "w", closefd=False) if "fd" in _REAL_STDERR else None
    faulthandler.dump_traceback_later(seconds + grace, exit=True, **({"file": stderr} if stderr else {}))
    try:
        yield seconds
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tiny_markov():
    from rnn_lightning import MarkovCorpusDataModule

    return MarkovCorpusDataModule(num_words=30, branching=4, train_tokens=3000, validation_tokens=800,
                                  test_tokens=800, batch_size=4, eval_batch_size=3, bptt=7)


@pytest.fixture
def tiny_lm():
    def make(dm, **kwargs):
        from rnn_lightning import LanguageModel

        defaults = dict(embedding_dim=8, hidden_size=12, num_layers=2, dropout_embedding=0.0,
                        dropout_between=0.0, dropout_output=0.0)
        return LanguageModel(vocab_size=dm.vocab_size, pad_id=dm.pad_id, **{**defaults, **kwargs})

    return make


def trainer(tmp_path, **kwargs):
    import lightning as L

    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return L.Trainer(**{**defaults, **kwargs})


def sgd(lr):
    """An optimizer factory for a task's ``optimizer``: plain SGD at ``lr``."""
    import torch

    return lambda params: torch.optim.SGD(params, lr=lr)


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = CORPORA  # the corpora, in the folders the README tells a user to make


@pytest.fixture
def user_checkout(tmp_path_factory, monkeypatch):
    """A working directory laid out as the README tells a user, and the test's current directory: the repository's
    ``recipes/`` and a ``data/`` folder holding each corpus of ``corpora.CORPORA`` (a symlink per corpus, so a test
    may add one of its own, e.g. ``data/ptb``). Checkpoints and logs land here, never in the repository.

    Every test gets it empty, at the same path within a session, so the corpora keep their paths and a
    ``datasets`` cache in the folder beside it (``user_checkout.parent / "datasets-cache"``) is reused."""
    path = tmp_path_factory.getbasetemp() / "user-checkout"
    shutil.rmtree(path, ignore_errors=True)
    (path / "data").mkdir(parents=True)
    (path / "recipes").symlink_to(REPO / "recipes")
    for corpus in sorted(SHARED_DATA.iterdir()) if SHARED_DATA.is_dir() else []:
        if corpus.is_dir():
            (path / "data" / corpus.name).symlink_to(corpus)
    monkeypatch.chdir(path)
    return path
