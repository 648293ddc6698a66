"""Gradient flow through time: how the gradient of a late loss shrinks (or grows) with the distance to a state.

For a layer's states h_0 .. h_{T-1} and the loss of the last step, ||d loss_T / d h_t|| is, through the chain rule,
a product of T-1-t step Jacobians d h_{k+1} / d h_k (the lecture's argument): it behaves like exp(-rate * distance),
with a positive rate for vanishing gradients (a simple RNN with small weights) and a negative one for exploding
ones. :func:`measure_gradient_flow` measures the curve of every layer of a network on one batch, without touching
the network: dropout off, random state restored, nothing written to the parameters' ``.grad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnn_lightning.nn.unroll import GATES, LayerStates, unrolled

__all__ = ["GradientFlow", "decay_rate", "measure_gradient_flow", "norms_by_distance", "spectral_radii"]


@dataclass
class GradientFlow:
    """What :func:`measure_gradient_flow` found, one entry per recurrent layer (bottom first).

    Attributes:
        norms: (D,) float64 CPU tensors: the mean over the batch's sequences of ||d loss / d h_t|| at distance
            d = (its length - 1 - t), for d = 0 .. D-1 (NaN where no sequence reaches that distance).
        decay_rates: the fitted rate of each curve (see :func:`decay_rate`).
        spectral_radii: the largest |eigenvalue| of each gate block of the layer's hidden-to-hidden matrix,
            by gate name (``""`` for a simple RNN's single block; see :func:`spectral_radii`).
    """

    norms: list[Tensor]
    decay_rates: list[float]
    spectral_radii: list[dict[str, float]]


def measure_gradient_flow(model: nn.Module, encoder: nn.Module, losses: Callable[[], Tensor]) -> GradientFlow:
    """Measure d loss / d h_t for every step t of every recurrent layer of ``encoder``, a part of ``model``.

    Args:
        model: the whole network ``losses`` runs: put in eval mode for the call (no dropout), then restored.
        encoder: the module whose ``torch.nn`` recurrent layers are measured (see :func:`~rnn_lightning.nn.unroll.
            unrolled`; a character encoder elsewhere in ``model`` stays fused and unmeasured).
        losses: runs ``model`` on the batch and returns (B,) each sequence's loss at its last real step.
            Sequences whose loss has no gradient there (an ignored target) are left out.

    The forward runs in a separate graph through ``torch.autograd.grad`` (the parameters' ``.grad`` stay as they
    were) with the random state forked (restored afterwards).
    """
    modes = {module: module.training for module in model.modules()}
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        model.eval()
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), unrolled(encoder) as layers:
            loss = losses().sum()
            states = [h for layer in layers for h in layer.states]
            grads = torch.autograd.grad(loss, states, materialize_grads=True)
    finally:
        for module, training in modes.items():
            module.train(training)
    curves, start = [], 0
    for layer in layers:
        steps = len(layer.states)
        norms = torch.stack(grads[start:start + steps], dim=1).double().norm(dim=-1)  # (B, T)
        curves.append(norms_by_distance(norms.cpu(), layer.lengths))
        start += steps
    return GradientFlow(norms=curves, decay_rates=[decay_rate(curve) for curve in curves],
                        spectral_radii=[spectral_radii(layer) for layer in layers])


def norms_by_distance(norms: Tensor, lengths: Tensor | None = None) -> Tensor:
    """norms (B, T) of d loss_b / d h_t, lengths (B,) or ``None`` (all T) -> (D,) mean norm at each distance.

    Sequence b's step t lies at distance d = lengths[b] - 1 - t from its last step. A sequence whose norm at
    distance 0 is zero (its loss had no gradient) is left out; D is the longest length left, and a distance no
    sequence left reaches is NaN.

    Example:
        >>> norms_by_distance(torch.tensor([[1.0, 2.0, 4.0], [3.0, 5.0, 0.0]]), torch.tensor([3, 2]))
        tensor([4.5000, 2.5000, 1.0000])
    """
    batch, steps = norms.shape
    lengths = torch.full((batch,), steps) if lengths is None else lengths.cpu()
    position = lengths[:, None] - 1 - torch.arange(steps)  # (B, D): the step at each distance
    reached = position >= 0
    by_distance = norms.gather(1, position.clamp(min=0)).masked_fill(~reached, 0.0)  # (B, D)
    kept = by_distance[:, 0] > 0  # (B,)
    if not kept.any():
        return norms.new_empty(0)
    reached &= kept[:, None]
    counts = reached.sum(0)  # (D,)
    curve = (by_distance * reached).sum(0) / counts  # NaN where counts == 0
    return curve[: int(lengths[kept].max())]


def decay_rate(norms: Tensor) -> float:
    """Minus the least-squares slope of ln(norm) against distance (0, 1, ...): the norm goes like
    exp(-rate * distance). Positive: vanishing; negative: exploding. Zero and NaN entries are skipped; NaN when
    fewer than two remain.

    Example:
        >>> round(decay_rate(torch.tensor([1.0, 0.5, 0.25, 0.125])), 4) == round(math.log(2), 4)
        True
    """
    y = norms.detach().double().cpu()
    x = torch.arange(len(y), dtype=torch.float64)
    usable = torch.isfinite(y) & (y > 0)
    if int(usable.sum()) < 2:
        return math.nan
    x, y = x[usable], y[usable].log()
    x_centered = x - x.mean()
    return -float((x_centered * (y - y.mean())).sum() / (x_centered**2).sum())


def spectral_radii(layer: LayerStates) -> dict[str, float]:
    """The largest |eigenvalue| of each gate block (H, H) of ``layer.weight_hh``, by gate name.

    For a simple RNN (one block, named ``""``) it bounds how fast the state's Jacobian product can shrink or grow
    (together with the nonlinearity's slope): above 1 it may explode, below 1 it vanishes. For the gated cells each
    block acts inside a gate; the LSTM's cell state carries gradients along the forget gate instead.
    """
    gates = GATES[layer.cell]
    blocks = layer.weight_hh.detach().double().cpu().chunk(len(gates), dim=0)  # G x (H, H)
    return {gate: float(torch.linalg.eigvals(block).abs().max()) for gate, block in zip(gates, blocks)}
