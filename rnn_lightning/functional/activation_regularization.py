"""Activation regularisation (AR) and temporal activation regularisation (TAR) of AWD-LSTM.

Merity et al. 2017 ("Regularizing and Optimizing LSTM Language Models", Sec. 4.6; salesforce/awd-lstm-lm
``main.py``), both on the last recurrent layer's outputs and added to the cross-entropy:

    AR  = alpha * mean(dropout(h_t)^2)        on the dropped-out output: keeps activations small
    TAR = beta * mean((h_t - h_{t-1})^2)      on the output before dropout: keeps the state from jumping

The means run over every (sequence, step, feature) as in AWD, or over the real steps only when a ``mask`` of
padded steps is given (TAR then counts a pair of steps only when both are real). Computed in float32 at least.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["activation_regularization", "temporal_activation_regularization"]


def _check(name: str, output: Tensor, coefficient: float, coefficient_name: str, mask: Tensor | None,
           caller: str) -> None:
    if not isinstance(output, Tensor) or not output.is_floating_point() or output.ndim != 3:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{caller}: `{name}` must be a floating point (B, T, H) tensor, got {got}. Pass the last "
                         "recurrent layer's outputs, batch first.")
    if isinstance(coefficient, bool) or not isinstance(coefficient, int | float) or coefficient < 0:
        raise ValueError(f"{caller}: `{coefficient_name}` must be a number >= 0, got {coefficient!r}. "
                         "AWD-LSTM uses alpha=2, beta=1; 0 turns the term off.")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != output.shape[:2]):
        raise ValueError(f"{caller}: `mask` must be a bool (B, T) tensor of real steps, expected shape "
                         f"{tuple(output.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}.")


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _masked_mean(squares: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of (B, T, H) ``squares`` over the (B, T) ``mask``'s steps; 0 when there is none."""
    if mask is None:
        return squares.mean() if squares.numel() else squares.sum()
    count = mask.sum() * squares.shape[-1]
    return (squares * mask.unsqueeze(-1)).sum() / count.clamp(min=1)


def activation_regularization(dropped_output: Tensor, alpha: float, *, mask: Tensor | None = None) -> Tensor:
    """AR: ``alpha * mean(dropped_output ** 2)``, a scalar to add to the loss.

    Args:
        dropped_output: (B, T, H) last-layer outputs after the output dropout.
        alpha: coefficient (AWD-LSTM: 2).
        mask: optional (B, T) bool, True at real (not padded) steps.

    Example:
        >>> activation_regularization(torch.full((1, 2, 3), 2.0), alpha=0.5)
        tensor(2.)
    """
    _check("dropped_output", dropped_output, alpha, "alpha", mask, "activation_regularization")
    return alpha * _masked_mean(_at_least_float32(dropped_output).pow(2), mask)  # (B, T, H) squares


def temporal_activation_regularization(output: Tensor, beta: float, *, mask: Tensor | None = None) -> Tensor:
    """TAR: ``beta * mean((h_t - h_{t-1}) ** 2)`` over consecutive steps, a scalar to add to the loss.

    Args:
        output: (B, T, H) last-layer outputs before the output dropout.
        beta: coefficient (AWD-LSTM: 1).
        mask: optional (B, T) bool, True at real steps; a pair counts when both of its steps are real.

    Example:
        >>> h = torch.tensor([[[0.0], [1.0], [3.0]]])  # steps change by 1, then 2
        >>> temporal_activation_regularization(h, beta=1.0)  # (1 + 4) / 2
        tensor(2.5000)
    """
    _check("output", output, beta, "beta", mask, "temporal_activation_regularization")
    output = _at_least_float32(output)
    squares = (output[:, 1:] - output[:, :-1]).pow(2)  # (B, T - 1, H)
    pairs = None if mask is None else mask[:, 1:] & mask[:, :-1]  # (B, T - 1)
    return beta * _masked_mean(squares, pairs)
