"""Every use of another library's private API, in one place.

Each function wraps one private attribute or method that no public API replaces, says why it is needed, and has a
test in ``tests/test_compat.py`` that fails loudly when a new release moves it. ``pyproject.toml`` bounds the
majors these were tested with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


def dataset_fingerprint(data: Dataset) -> str:
    """The hash ``datasets`` names ``data``'s cache files by: the same for the same content and transforms, across
    runs. Keys caches beside it (a trained tokenizer, an encoding's ``new_fingerprint``). ``datasets`` has no
    public getter (``Dataset._fingerprint``)."""
    return data._fingerprint


# ---------------------------------------------------------------- torchmetrics
