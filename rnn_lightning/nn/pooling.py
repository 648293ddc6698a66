"""Seq2vec pooling: one vector per sequence from an encoder's states (B, T, H) -> (B, H), or (B, 3H) for ULMFiT's
concat pooling."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rnn_lightning.nn.checks import check_choice
from rnn_lightning.nn.packing import to_device

Pooling = Literal["final", "mean", "max", "concat"]
POOLINGS = ("final", "mean", "max", "concat")


def pooled_size(mode: Pooling, state_size: int) -> int:
    """The width of ``pool_states``' output for states of width ``state_size``: ``"concat"`` joins three summaries."""
    return 3 * state_size if mode == "concat" else state_size


def pool_states(outputs: Tensor, lengths: Tensor, mode: Pooling = "final", bidirectional: bool = False) -> Tensor:
    """Summarise each sequence's states in one vector.

    Args:
        outputs: (B, T, H * directions) encoder outputs, right-padded.
        lengths: (B,) real lengths (>= 1).
        mode: ``"final"``: the state after the last real step (for a bidirectional encoder, the left-to-right
            half at the last step and the right-to-left half at the first step: each direction's final state);
            ``"mean"`` / ``"max"``: mean or max over the real steps; ``"concat"``: ULMFiT's concat pooling (Howard &
            Ruder 2018), ``[final, max, mean]`` side by side, so that the classifier sees the last state and the
            strongest and average signal of every step.
        bidirectional: whether ``outputs`` concatenates two directions (matters for the final state only).

    Returns:
        (B, H * directions), or (B, 3 * H * directions) for ``"concat"`` (see :func:`pooled_size`).

    Example:
        >>> out = torch.tensor([[[1.0], [3.0], [9.0]], [[2.0], [4.0], [6.0]]])  # (2, 3, 1)
        >>> lengths = torch.tensor([2, 3])
        >>> [pool_states(out, lengths, m).flatten().tolist() for m in POOLINGS]
        [[3.0, 6.0], [2.0, 4.0], [3.0, 6.0], [3.0, 3.0, 2.0, 6.0, 6.0, 4.0]]
    """
    check_choice("pooling", mode, POOLINGS)
    lengths = to_device(lengths, outputs.device)  # (B,); CPU lengths: a non-blocking copy
    if mode == "final":
        return _final_state(outputs, lengths, bidirectional)
    mask = torch.arange(outputs.shape[1], device=outputs.device) < lengths[:, None]  # (B, T)
    if mode == "mean":
        return _mean(outputs, lengths, mask)
    if mode == "max":
        return _max(outputs, mask)
    summaries = [_final_state(outputs, lengths, bidirectional), _max(outputs, mask), _mean(outputs, lengths, mask)]
    return torch.cat(summaries, dim=-1)  # ULMFiT's order


def _final_state(outputs: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
    """(B, H * directions): each direction's state after reading the whole sequence."""
    forward = outputs[torch.arange(outputs.shape[0], device=outputs.device), lengths - 1]  # (B, H * directions)
    if not bidirectional:
        return forward
    half = outputs.shape[-1] // 2
    return torch.cat([forward[:, :half], outputs[:, 0, half:]], dim=-1)


def _mean(outputs: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
    """(B, H * directions): the mean over the real steps (``mask`` (B, T))."""
    return (outputs * mask[..., None]).sum(1) / lengths.to(outputs.dtype)[:, None]


def _max(outputs: Tensor, mask: Tensor) -> Tensor:
    """(B, H * directions): the max over the real steps (``mask`` (B, T))."""
    return outputs.masked_fill(~mask[..., None], float("-inf")).amax(1)
