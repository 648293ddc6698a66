"""Every use of another library's private API, in one place.

Each function wraps one private attribute or method that no public API replaces, says why it is needed, and has a
test in ``tests/test_compat.py`` that fails loudly when a new release moves it. ``pyproject.toml`` bounds the
majors these were tested with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning as L

# ---------------------------------------------------------------- Lightning


def logging_step(trainer: L.Trainer) -> bool:
    """Whether the values logged in this training step reach the loggers (every ``log_every_n_steps``, and in a
    ``fast_dev_run``), as Lightning decides.

    Private: ``trainer._logger_connector.should_update_logs``. No public API says it, and working it out from
    ``log_every_n_steps`` and the step counters would copy Lightning's rule (which counts steps that stepped the
    optimizer, not batches).
    """
    return bool(trainer._logger_connector.should_update_logs) or bool(trainer.fast_dev_run)


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics
