"""Locked (variational) dropout: one mask per sequence, the same at every time step.

Standard dropout draws a new mask at every step, so the recurrent layers see a different corruption of each input;
Gal & Ghahramani (2016, "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks") draw one
per sequence instead. AWD-LSTM (Merity et al. 2017; salesforce/awd-lstm-lm ``locked_dropout.py``) applies it to the
embeddings, between layers and to the last layer's output.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.checks import check_dropout

__all__ = ["LockedDropout"]


class LockedDropout(nn.Module):
    """Zero each feature of each sequence with probability ``p`` for all its steps; scale the rest by 1/(1-p).

    Identity in eval mode and at ``p=0``.

    Args:
        p: probability of dropping a feature of a sequence.

    Example:
        >>> import torch
        >>> out = LockedDropout(0.5)(torch.ones(2, 4, 3))
        >>> bool((out == out[:, :1]).all())  # the same mask at every step
        True
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        check_dropout("p", p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D), batch first. Returns: (B, T, D)."""
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep  # (B, 1, D): one per sequence
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
