"""Every use of another library's private API, in one place.

Each function wraps one private attribute or method that no public API replaces, says why it is needed, and has a
test in ``tests/test_compat.py`` that fails loudly when a new release moves it. ``pyproject.toml`` bounds the
majors these were tested with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics


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
