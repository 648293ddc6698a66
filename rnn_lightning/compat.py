"""Every use of another library's private API, in one place.

Each function wraps one private attribute or method that no public API replaces, says why it is needed, and has a
test in ``tests/test_compat.py`` that fails loudly when a new release moves it. ``pyproject.toml`` bounds the
majors these were tested with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    import lightning as L
    from datasets import Dataset
    from torch.nn import Module
    from torchmetrics import Metric

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


def dataset_fingerprint(data: Dataset) -> str:
    """The hash ``datasets`` names ``data``'s cache files by: the same for the same content and transforms, across
    runs. Keys caches beside it (a trained tokenizer, an encoding's ``new_fingerprint``). ``datasets`` has no
    public getter (``Dataset._fingerprint``)."""
    return data._fingerprint


# ---------------------------------------------------------------- torchmetrics


def apply_keeping_dtypes(
    metric: Metric,
    metric_apply: Callable[..., Module],
    fn: Callable,
    exclude_state: Sequence[str] | str,
    keep: Sequence[str],
) -> Module:
    """``Metric._apply`` for a metric whose attributes ``keep`` (states or buffers) keep their dtype and values and
    follow only the device move; for a metric's own ``_apply`` override, with ``metric_apply=super()._apply``.

    ``Metric._apply`` is the private hook behind ``.to``, ``.cuda`` and ``set_dtype``: on ``.to(dtype)`` (e.g.
    Lightning's ``"16-true"`` precision) and ``set_dtype`` it casts the states and their defaults (``set_dtype`` even
    int64 ones, to float), and no public API opts a state out. Its private ``exclude_state`` argument leaves the named
    states and their defaults alone (``reset`` moves a default to its state's device), and ``metric.device`` (public)
    is the device ``fn`` moved the metric to.
    """
    saved = {key: getattr(metric, key) for key in keep}
    skip = (exclude_state,) if isinstance(exclude_state, str) else tuple(exclude_state)
    this = metric_apply(fn, exclude_state=(*skip, *keep))
    for key, value in saved.items():
        setattr(this, key, value.to(this.device))
    return this


# ---------------------------------------------------------------- torch


@contextmanager
def rnn_flat_weights(rnn: torch.nn.RNNBase, weights: list[Tensor]) -> Iterator[None]:
    """Run ``rnn``'s own ``forward`` on ``weights`` instead of its parameters, for the duration of the block.

    ``nn.LSTM``/``GRU``/``RNN.forward`` hands the list ``rnn._flat_weights`` (the parameters, in
    ``rnn._flat_weights_names`` order) to the fused kernel. Swapping that list is the one way to feed it derived
    weights (weight drop) while keeping every other part of ``forward`` (packed input, default state, checks) and
    the parameters untouched. ``torch.func.functional_call`` would set the attributes instead, which makes
    ``forward`` re-flatten the parameters into a new cuDNN buffer on every call (twice: in and out).
    """
    assert len(weights) == len(rnn._flat_weights_names), "one tensor per flat weight"
    saved = rnn.__dict__["_flat_weights"]
    rnn.__dict__["_flat_weights"] = weights
    try:
        yield
    finally:
        rnn.__dict__["_flat_weights"] = saved
