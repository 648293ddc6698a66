"""Argument checks shared by the building blocks of ``rnn_lightning.nn`` and the layers above it (no imports of its
other modules)."""

from __future__ import annotations

from pathlib import Path

from rnn_lightning.constants import DIRECTIONS


def check_dropout(name: str, value: float, *, advice: str = "Use e.g. 0.0 (off) to 0.5.") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``0 <= value < 1`` (``advice``: the fix the message gives)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}. {advice}")


def check_size(name: str, value: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a positive integer (a width, a layer count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is one of ``choices`` (a cell, a connection, ...)."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def check_token_id(name: str, value: int | None, vocab_size: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is ``None`` or a token id in ``[0, vocab_size)``
    (``nn.Embedding`` would take a negative one as counted from the end)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size):
        raise ValueError(
            f"`{name}` must be a token id in [0, vocab_size={vocab_size}) or None, got {value!r}. Pass the "
            f"DataModule's `{name}` (the CLI links it), or None where there is no such token."
        )


def check_top_k(top_k: int | None) -> None:
    """Raise a ``ValueError`` unless ``top_k`` (the number of best tag paths asked for) is ``None`` or an int >= 1."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"`top_k` must be a positive integer (the number of best tag paths) or None, got {top_k!r}. "
                         "Pass e.g. top_k=3, or None for the best path alone.")


def check_flag(name: str, value: bool) -> bool:
    """``value``, or a ``TypeError`` naming ``name`` unless it is True or False (``"false"`` would count as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {type(value).__name__} {value!r:.60}.")
    return value


def check_direction(value: str, name: str = "direction") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is one of :data:`~rnn_lightning.constants.DIRECTIONS`."""
    if value not in DIRECTIONS:
        raise ValueError(f"`{name}` must be one of {DIRECTIONS}, got {value!r}: 'forward' reads the text as written, "
                         "'backward' from its end (a backward language model).")


def _blocking_file(out: Path) -> Path | None:
    """The first of ``out`` and its parents that exists, if it is not a folder (nothing can be written there)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def check_output_folder(path: str | Path, arg: str, *, contents: str = "the exported model") -> Path:
    """``path`` as a ``Path``, or a ``ValueError`` naming ``arg`` when it, or a folder above it, is a file."""
    out = Path(path)
    blocking = _blocking_file(out)
    if blocking is not None:
        where = "is a file" if blocking == out else f"lies inside {str(blocking)!r}, which is a file"
        raise ValueError(f"{arg} {str(out)!r} {where}: expected a folder to write {contents} into. Pass a new or "
                         "existing folder.")
    return out


def check_output_file(path: str | Path, arg: str, *, contents: str) -> Path:
    """``path`` as a ``Path``, or a ``ValueError`` naming ``arg`` when it is a folder or lies inside a file."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{arg} {str(out)!r} is a folder: expected a file to write {contents} to. Pass a file "
                         f"name, e.g. {str(out / 'predictions.jsonl')!r}.")
    blocking = _blocking_file(out.parent)
    if blocking is not None:
        raise ValueError(f"{arg} {str(out)!r} lies inside {str(blocking)!r}, which is a file: expected a file in a "
                         f"folder to write {contents} to. Pass a path in a folder.")
    return out
