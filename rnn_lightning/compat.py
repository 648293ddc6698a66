"""Every use of another library's private API, in one place.

Each function wraps one private attribute or method that no public API replaces, says why it is needed, and has a
test in ``tests/test_compat.py`` that fails loudly when a new release moves it. ``pyproject.toml`` bounds the
majors these were tested with.
"""

from __future__ import annotations

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics
