"""Argument checks shared by the building blocks of ``rnn_lightning.nn`` (no imports of its own modules)."""

from __future__ import annotations


def check_dropout(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``0 <= value < 1``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}. Use e.g. 0.0 (off) to 0.5.")
