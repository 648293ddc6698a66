"""Loading a task from a checkpoint: clear errors for a file that is no checkpoint and for another task's checkpoint.

Lightning builds the task from the checkpoint's hyper-parameters and silently drops those its ``__init__`` does not
take: a classifier's checkpoint given to ``LanguageModel.load_from_checkpoint`` fails on whichever argument happens
to clash (its ``bidirectional=True``), or loads. And a truncated or foreign file fails deep in ``torch.load`` with
advice to load it with ``weights_only=False`` (which runs arbitrary code and does not mend a broken file).
"""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any

import torch


def check_task(cls: type, path: Any, base: type) -> None:
    """Raise a ``ValueError`` when the checkpoint at ``path`` has hyper-parameters that ``cls`` does not take: it
    was written by another task. Names the subclasses of ``base`` that take them all. A file that does not open here
    is left to the load itself (see :func:`unreadable`)."""
    if not isinstance(path, (str, Path)):
        return
    try:  # mmap: the tensors are not read, only the small pickled dictionary
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (not a zip checkpoint, unreadable, or unsafe types: the load will say)
        return
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict):
        return
    foreign = _foreign(cls, hparams)
    if not foreign:
        return
    fits = [f"{task.__name__}.load_from_checkpoint" for task in _subclasses(base) if not _foreign(task, hparams)]
    raise ValueError(
        f"`checkpoint_path` {str(path)!r} was written by another task: its hyper-parameters {sorted(foreign)} are "
        f"not arguments of {cls.__name__}. Load it with {' or '.join(fits) or 'the task class that wrote it'}."
    )


def unreadable(path: Any, error: BaseException) -> ValueError | None:
    """The error to raise instead of ``error`` when ``torch.load`` failed because ``path`` is no (whole) checkpoint;
    ``None`` for other errors."""
    text = str(error)
    broken = (
        isinstance(error, EOFError)
        or (isinstance(error, pickle.UnpicklingError) and "Unsupported global" not in text)
        or (isinstance(error, RuntimeError) and ("PytorchStreamReader" in text or "zip archive" in text))
    )
    if not broken:
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    reason = first.split(". ")[0] if isinstance(error, RuntimeError) else type(error).__name__  # not torch's advice
    return ValueError(
        f"`checkpoint_path` {str(path)!r} is not a readable checkpoint: it is empty, truncated (a copy or a save cut "
        f"short) or not a file written by `Trainer.save_checkpoint` ({reason}). Pass a checkpoint written by "
        "`rnn-lightning fit` / `Trainer.fit` (e.g. checkpoints/.../last.ckpt), or copy it again."
    )


def _foreign(cls: type, hparams: dict[str, Any]) -> set[str]:
    """The hyper-parameters ``cls`` does not take. One whose value is ``None`` says nothing of the task: the CLI's
    links record ``None`` for a DataModule attribute the model has no use for (a classifier's ``char_vocab``)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return set()
    return {key for key, value in hparams.items() if not key.startswith("_") and value is not None} - set(params)


def _subclasses(base: type) -> list[type]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
