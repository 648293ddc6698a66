"""Checking a checkpoint before loading it: clear errors for a path that holds no (whole) Lightning checkpoint and for
another task's checkpoint. ``RecurrentTask.load_from_checkpoint`` and the CLI's ``--ckpt_path`` both use it.

Lightning builds the task from the checkpoint's hyper-parameters and silently drops those its ``__init__`` does not
take: a classifier's checkpoint given to ``LanguageModel.load_from_checkpoint`` fails on whichever argument happens
to clash (its ``bidirectional=True``), or loads. And a truncated or foreign file fails deep in ``torch.load`` with
advice to load it with ``weights_only=False`` (which runs arbitrary code and does not mend a broken file).
"""

from __future__ import annotations

import inspect
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

_FIX = ("Pass a checkpoint written by `rnn-lightning fit` / `Trainer.fit` (e.g. checkpoints/quickstart/last.ckpt), "
        "or copy it again.")


class CheckpointNotFound(FileNotFoundError, ValueError):
    """A checkpoint path that names no file: bad input (a ``ValueError``) that ``except FileNotFoundError`` still
    catches, as it caught Lightning's own error."""


def read_hyperparameters(path: Any, *, arg: str = "`checkpoint_path`", weights_only: bool | None = None
                         ) -> dict[str, Any] | None:
    """The hyper-parameters of the Lightning checkpoint at the local path ``path``, read without its tensors (mmap).

    Raises a ``ValueError`` naming ``arg`` when ``path`` is missing, a folder, not a whole ``torch.save`` archive or
    not a Lightning checkpoint. ``None`` where the header cannot be read here: a file object or URL (Lightning opens
    those; see :func:`unreadable`), or, with ``weights_only=False``, a checkpoint holding objects that a weights-only
    load refuses (the load will run their code, trusted by the caller; with the default such a load fails, so that
    is an error here)."""
    if not isinstance(path, (str, os.PathLike)) or "://" in str(path):
        return None
    where = f"{arg} {str(path)!r}"
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "does not exist"
        raise CheckpointNotFound(f"{where} {what}: expected a checkpoint file written by `rnn-lightning fit` / "
                                 "`Trainer.fit`, e.g. checkpoints/quickstart/last.ckpt. Check the path.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 (torch raises several types for a damaged or foreign file)
        if _unsafe(error):
            if weights_only is False:
                return None
            unsupported = next(line for line in str(error).splitlines() if "Unsupported global" in line).strip()
            raise ValueError(f"{where} holds objects that a weights-only load refuses ({unsupported}). If you "
                             "trust the file, load it with `weights_only=False`.") from error
        if zipfile.is_zipfile(path):  # a whole archive that torch cannot read
            raise _not_a_checkpoint(where, _reason(error)) from error
        with open(path, "rb") as f:  # what torch.save writes is a zip; a truncated copy lacks the archive's end
            head = f.read(16)
        reason = f"not a complete zip archive; it starts with {head!r}" if head else "0 bytes"
        raise _not_a_checkpoint(where, reason) from error
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{where} is a PyTorch file but not a Lightning checkpoint (no `hyper_parameters` and "
                         f"`state_dict`). {_FIX}")
    return hparams


def check_task(cls: type, path: Any, *, base: type, arg: str = "`checkpoint_path`", weights_only: bool | None = None,
               advice: str | None = None) -> None:
    """Read the checkpoint at ``path`` (see :func:`read_hyperparameters`) and raise a ``ValueError`` when another
    task wrote it: its saved class (``_class_path``, written by the CLI) is neither ``cls`` nor a sub/superclass of
    it, or it has hyper-parameters that ``cls`` does not take. The error names the subclasses of ``base`` that fit,
    and ends with ``advice`` (default: load it with those)."""
    hparams = read_hyperparameters(path, arg=arg, weights_only=weights_only)
    if hparams is not None:
        check_task_hparams(cls, hparams, f"{arg} {str(path)!r}", base=base, advice=advice)


def check_task_hparams(cls: type, hparams: dict[str, Any], where: str, *, base: type, advice: str | None = None
                       ) -> None:
    """The rule of :func:`check_task` on a checkpoint's ``hparams`` already read (``where`` names the checkpoint)."""
    saved = imported_class(hparams.get("_class_path", ""))
    other_class = saved is not None and not (issubclass(saved, cls) or issubclass(cls, saved))
    foreign = foreign_hyperparameters(cls, hparams)
    if not (other_class or foreign):
        return
    fits = [task for task in _subclasses(base) if not foreign_hyperparameters(task, hparams)]
    # the most general fitting classes only: a subclass (a user's own task) loads through its parent too
    general = [task for task in fits if not any(task is not other and issubclass(task, other) for other in fits)]
    owners = [saved] if saved is not None else general
    what = " or ".join(task.__name__ for task in owners) or "model of another task"
    why = f" (its hyper-parameters {sorted(foreign)} are not arguments of {cls.__name__})" if foreign else ""
    loads = " or ".join(f"{task.__name__}.load_from_checkpoint" for task in owners) or "the task class that wrote it"
    raise ValueError(f"{where} holds a {what}, not a {cls.__name__}{why}. {advice or f'Load it with {loads}.'}")


def check_weight_shapes(model: torch.nn.Module, checkpoint: dict[str, Any], where: str) -> None:
    """Raise a ``ValueError`` naming the settings that differ when the checkpoint's weights have other shapes than
    ``model``'s (instead of torch's size-mismatch error from inside ``load_state_dict``)."""
    ours = model.state_dict()
    saved = checkpoint.get("state_dict") or {}
    wrong = [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in saved.items()
             if k in ours and isinstance(v, torch.Tensor) and v.shape != ours[k].shape]
    if not wrong:
        return
    name, theirs, here = wrong[0]
    hparams, current = checkpoint.get("hyper_parameters") or {}, dict(getattr(model, "hparams", {}))
    differ = [f"{k}={hparams[k]!r} saved, {current[k]!r} here" for k in sorted(set(hparams) & set(current))
              if not k.startswith("_") and hparams[k] != current[k]]
    settings = f" because settings differ ({'; '.join(differ[:5])})" if differ else ""
    raise ValueError(
        f"{where} does not fit this {type(model).__name__}{settings}: {len(wrong)} weights have other shapes, e.g. "
        f"{name} {theirs} saved, {here} here. A checkpoint loads only into a model of its own settings: resume "
        "with the settings it was saved with, or start a new run without `ckpt_path`."
    )


def unreadable(path: Any, error: BaseException, *, arg: str = "`checkpoint_path`") -> ValueError | None:
    """The error to raise instead of ``error`` when ``torch.load`` failed because what ``path`` names (a file object
    or URL, which :func:`read_hyperparameters` leaves to the load) is no (whole) checkpoint; ``None`` for others."""
    text = str(error)
    broken = (
        isinstance(error, EOFError)
        or (isinstance(error, pickle.UnpicklingError) and not _unsafe(error))
        or (isinstance(error, RuntimeError) and ("PytorchStreamReader" in text or "zip archive" in text))
    )
    if not broken:
        return None
    return _not_a_checkpoint(f"{arg} {str(path)!r}", _reason(error))


def imported_class(class_path: str) -> type | None:
    """The class ``module.Name`` if its module is already imported (never imports what a file names)."""
    module, _, name = class_path.rpartition(".")
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _not_a_checkpoint(where: str, reason: str) -> ValueError:
    return ValueError(f"{where} is not a readable checkpoint: it is empty, truncated (a copy or a save cut short) or "
                      f"not a file written by `Trainer.save_checkpoint` ({reason}). {_FIX}")


def _unsafe(error: BaseException) -> bool:
    """Whether ``error`` is a weights-only load refusing a pickled global (a whole file, not a broken one)."""
    return isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error)


def _reason(error: BaseException) -> str:
    """The first sentence of ``error`` (not torch's advice), or its type."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return first.split(". ")[0] or type(error).__name__


def foreign_hyperparameters(cls: type, hparams: dict[str, Any]) -> set[str]:
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
