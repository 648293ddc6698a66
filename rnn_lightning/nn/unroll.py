"""Recurrent layers unrolled step by step in plain torch ops, their hidden states h_t exposed as graph nodes.

A fused ``torch.nn`` LSTM, GRU or RNN (one cuDNN call) keeps its per-step states inside the kernel: autograd sees
only the output sequence, whose gradient at step t holds the uses of h_t *above* the layer, not the path through
h_{t+1}, h_{t+2}, ... that the lecture's product of Jacobians runs along. Inside :func:`unrolled`, every
``torch.nn`` recurrent module of an encoder runs as a Python loop over the equations of the ``torch.nn`` docs on
its own weights, so ``torch.autograd.grad(loss, states)`` gives the total derivative d loss / d h_t of each layer.
No cuDNN kernel runs, so the gradient exists in eval mode too (cuDNN's RNN backward refuses it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = ["GATES", "LayerStates", "unrolled"]

# The blocks of weight_hh, in torch.nn's row order; a simple RNN has one, named "".
GATES = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "new"),
         "rnn_tanh": ("",), "rnn_relu": ("",)}
_CELL_OF_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


@dataclass
class LayerStates:
    """The left-to-right states of one recurrent layer over one batch.

    Attributes:
        states: h_t for t = 0 .. T-1, each (B, H): the graph nodes that feed step t+1 and the layer above.
        lengths: (B,) real length of each sequence on the CPU, or ``None`` when every sequence fills all T steps.
        weight_hh: the layer's hidden-to-hidden matrix (G*H, H) (G gate blocks, see ``GATES``).
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
    """

    states: list[Tensor]
    lengths: Tensor | None
    weight_hh: Tensor
    cell: str


@contextmanager
def unrolled(encoder: nn.Module) -> Iterator[list[LayerStates]]:
    """Within the block, each ``torch.nn`` LSTM/GRU/RNN inside ``encoder`` runs step by step (same outputs, same
    parameters) and appends one :class:`LayerStates` per layer, in the order the layers run, to the yielded list.

    Dropout between the layers of a fused stack acts as in ``torch.nn`` (in training mode only). Only the
    left-to-right direction of a bidirectional layer is recorded.

    Example:
        >>> lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
        >>> x = torch.randn(2, 5, 3)
        >>> with unrolled(lstm) as layers:
        ...     out, _ = lstm(x)
        >>> len(layers), len(layers[0].states), torch.allclose(out, lstm(x)[0], atol=1e-6)
        (2, 5, True)
    """
    records: list[LayerStates] = []
    modules = [m for m in encoder.modules() if isinstance(m, nn.RNNBase)]
    if not modules:
        raise ValueError(f"`encoder` ({type(encoder).__name__}) holds no torch.nn LSTM, GRU or RNN to unroll.")
    if any(getattr(m, "proj_size", 0) for m in modules):
        raise NotImplementedError("unrolled() does not handle LSTMs with `proj_size > 0`.")
    saved = [vars(m).get("forward") for m in modules]  # an instance-level forward set by someone else, if any
    for module in modules:
        module.forward = partial(_forward, module, records=records)  # an instance attribute shadows the class's
    try:
        yield records
    finally:
        for module, forward in zip(modules, saved):
            if forward is None:
                del module.forward
            else:
                module.forward = forward


def _forward(rnn: nn.RNNBase, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None,  # noqa: A002
             *, records: list[LayerStates]) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, Tensor]]:
    """``rnn.forward`` as a loop over steps: input (B, T, D) (batch first) or packed -> (output, final state)."""
    lengths = None
    if isinstance(input, PackedSequence):
        x, lengths = pad_packed_sequence(input, batch_first=True)  # (B, T, D) in the original order, (B,)
    else:
        x = input if rnn.batch_first else input.transpose(0, 1)  # (B, T, D)
    batch, steps, _ = x.shape
    cell = _CELL_OF_MODE[rnn.mode]
    directions = 2 if rnn.bidirectional else 1
    h0, c0 = _initial(rnn, hx, batch, x)  # (L * directions, B, H) each; c0 None except for the LSTM
    mask = None if lengths is None else (torch.arange(steps) < lengths[:, None]).to(x.device)  # (B, T)
    finals_h, finals_c = [], []
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            weights = [getattr(rnn, f"{kind}_{suffix}") for kind in ("weight_ih", "weight_hh")]
            biases = [getattr(rnn, f"{kind}_{suffix}") for kind in ("bias_ih", "bias_hh")] if rnn.bias else [None] * 2
            state = (h0[index], c0[index]) if cell == "lstm" else h0[index]
            x_proj = F.linear(x, weights[0], biases[0])  # (B, T, G*H): the input's share of every step at once
            hs: list[Tensor] = [x_proj.new_empty(0)] * steps
            for t in range(steps) if direction == 0 else reversed(range(steps)):
                new = _step(cell, x_proj[:, t], state, weights[1], biases[1])
                if mask is not None:  # past a sequence's end its state stays as it was
                    keep = mask[:, t, None]
                    new = tuple(torch.where(keep, n, s) for n, s in zip(new, state)) if cell == "lstm" else \
                        torch.where(keep, new, state)
                state = new
                hs[t] = state[0] if cell == "lstm" else state  # (B, H)
            if direction == 0:
                records.append(LayerStates(hs, lengths, weights[1], cell))
            out = torch.stack(hs, dim=1)  # (B, T, H)
            outputs.append(out if mask is None else out * mask[..., None])
            finals_h.append(state[0] if cell == "lstm" else state)
            if cell == "lstm":
                finals_c.append(state[1])
        x = torch.cat(outputs, dim=-1)  # (B, T, H * directions)
        if layer < rnn.num_layers - 1 and rnn.dropout > 0:
            x = F.dropout(x, rnn.dropout, training=rnn.training)
    final = torch.stack(finals_h)  # (L * directions, B, H)
    if cell == "lstm":
        final = (final, torch.stack(finals_c))
    if isinstance(input, PackedSequence):
        order = input.sorted_indices
        data = pack_padded_sequence(x.index_select(0, order), lengths[order.cpu()], batch_first=True).data
        return input._replace(data=data), final
    return (x if rnn.batch_first else x.transpose(0, 1)), final


def _initial(rnn: nn.RNNBase, hx: Tensor | tuple[Tensor, Tensor] | None, batch: int,
             x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The initial (h0, c0), zeros where ``hx`` is ``None``; c0 is ``None`` for cells without a cell state."""
    if hx is not None:
        return hx if isinstance(hx, tuple) else (hx, None)
    zeros = x.new_zeros(rnn.num_layers * (2 if rnn.bidirectional else 1), batch, rnn.hidden_size)
    return zeros, (zeros if rnn.mode == "LSTM" else None)


def _step(cell: str, x_proj: Tensor, state: Tensor | tuple[Tensor, Tensor], w_hh: Tensor,
          b_hh: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
    """One step of the ``torch.nn`` cell equations; ``x_proj`` = W_ih x_t + b_ih (B, G*H)."""
    h = state[0] if cell == "lstm" else state  # (B, H)
    h_proj = F.linear(h, w_hh, b_hh)  # (B, G*H)
    if cell == "lstm":
        i, f, g, o = (x_proj + h_proj).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = h_proj.chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h
    return torch.tanh(x_proj + h_proj) if cell == "rnn_tanh" else torch.relu(x_proj + h_proj)
