"""Recurrent encoders over right-padded batches without packing, for export.

``pack_padded_sequence`` does not export to ONNX, and a traced graph keeps no ``PackedSequence``. A left-to-right pass
needs no packing on a right-padded batch: its steps on padding come after the real ones and change none of them. The
right-to-left pass must start at each sequence's own last token, so here each sequence is reversed within its length
(one gather with per-row indices; the padding stays in place), run left to right with the reverse weights, and
reversed back. Layer by layer, direction by direction, this computes what the packed run computes
(:func:`rnn_lightning.nn.packing.run_rnn`), zeros past each length included.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_lightning.nn.char_encoder import CharacterEncoder
from rnn_lightning.nn.stack import ConnectedStack


def reverse_within_lengths(lengths: Tensor, steps: Tensor) -> Tensor:
    """lengths (B,), steps (T,) = arange(T) -> (B, T) indices that reverse each row's first ``lengths`` steps and keep
    the padding in place (its own inverse)."""
    flipped = lengths.unsqueeze(1) - 1 - steps  # (B, T)
    return torch.where(flipped >= 0, flipped, steps.expand_as(flipped))


def unpacked(rnn: nn.Module) -> nn.Module:
    """The unpacked run of a :class:`~rnn_lightning.nn.RecurrentEncoder`'s ``rnn``: a fused ``torch.nn`` stack or a
    :class:`~rnn_lightning.nn.stack.ConnectedStack`."""
    return UnpackedStack(rnn) if isinstance(rnn, ConnectedStack) else UnpackedRNN(rnn)


class UnpackedRNN(nn.Module):
    """A fused ``torch.nn`` LSTM / GRU / RNN (batch first, any layers, one or two directions) run on a right-padded
    batch as the packed run computes it, with no packing: inputs (B, T, D), lengths (B,) -> outputs (B, T, H * dirs),
    zeros past each length. Eval only (no dropout between layers). Shares the parameters of ``rnn``.

    Args:
        rnn: the encoder's ``torch.nn.RNNBase`` module (``RecurrentEncoder.rnn`` when it is fused).
    """

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        if not isinstance(rnn, nn.RNNBase) or rnn.proj_size or not rnn.batch_first:
            raise ValueError(f"export runs batch-first torch.nn LSTM / GRU / RNN modules without `proj_size`, as "
                             f"rnn_lightning builds them, got {rnn!r}.")
        directions = 2 if rnn.bidirectional else 1
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ())
        # one single-layer, one-direction module per (layer, direction), sharing the fused module's parameters
        self.passes = nn.ModuleList()
        for layer in range(rnn.num_layers):
            size = rnn.input_size if layer == 0 else rnn.hidden_size * directions
            for direction in range(directions):
                one = _single(rnn, size)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name in names:
                    setattr(one, f"{name}_l0", getattr(rnn, name + suffix))
                self.passes.append(one)
        self.directions = directions

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs (B, T, D) right-padded, lengths (B,) in [1, T] -> outputs (B, T, H * directions), zero past each
        length."""
        steps = torch.arange(inputs.shape[1], device=inputs.device)  # (T,)
        order = reverse_within_lengths(lengths, steps)  # (B, T)
        x = inputs
        for first in range(0, len(self.passes), self.directions):
            outputs = [self.passes[first](x)[0]]  # (B, T, H) left to right
            if self.directions == 2:
                flipped = x.gather(1, order.unsqueeze(2).expand_as(x))  # each row reversed within its length
                backward = self.passes[first + 1](flipped)[0]  # (B, T, H)
                outputs.append(backward.gather(1, order.unsqueeze(2).expand_as(backward)))
            x = torch.cat(outputs, dim=2)  # (B, T, H * directions)
        real = steps < lengths.unsqueeze(1)  # (B, T)
        return x * real.unsqueeze(2).to(x.dtype)


class UnpackedStack(nn.Module):
    """A :class:`~rnn_lightning.nn.stack.ConnectedStack` run on a right-padded batch without packing, layer by layer
    through :class:`UnpackedRNN` and joined by the stack's own ``connect`` (eval: no dropout between layers):
    inputs (B, T, D), lengths (B,) -> outputs (B, T, last H * directions), zeros past each length. A padded step
    never reaches a real one (the left-to-right pass runs after them, the right-to-left one keeps padding in place,
    and the connections join step by step), so the padding is zeroed once, at the end."""

    def __init__(self, stack: ConnectedStack) -> None:
        super().__init__()
        self.stack, self.layers = stack, nn.ModuleList(UnpackedRNN(layer) for layer in stack.layers)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        seen, below = [inputs], inputs  # dense: the input and every layer's output so far
        for index, layer in enumerate(self.layers):
            dense = self.stack.connection == "dense" and index > 0
            below = self.stack.connect(index, [layer(torch.cat(seen, dim=-1) if dense else below, lengths), below])
            seen.append(below)
        real = torch.arange(inputs.shape[1], device=inputs.device) < lengths.unsqueeze(1)  # (B, T)
        return below * real.unsqueeze(2).to(below.dtype)


def _single(rnn: nn.RNNBase, input_size: int) -> nn.RNNBase:
    """A one-layer, one-direction, batch-first module of ``rnn``'s kind (plain ``torch.nn``: eval needs no weight
    drop)."""
    kwargs = dict(input_size=input_size, hidden_size=rnn.hidden_size, bias=rnn.bias, batch_first=True)
    if isinstance(rnn, nn.LSTM):
        return nn.LSTM(**kwargs)
    if isinstance(rnn, nn.GRU):
        return nn.GRU(**kwargs)
    return nn.RNN(**kwargs, nonlinearity=rnn.nonlinearity)


class UnpackedCharEncoder(nn.Module):
    """:class:`~rnn_lightning.nn.char_encoder.CharacterEncoder` without packing: chars (B, T, L) -> (B, T, 2H), zeros
    for padding words. Each direction's final state is its output at the word's last (left to right) or first (right
    to left) character."""

    def __init__(self, encoder: CharacterEncoder) -> None:
        super().__init__()
        self.embedding, self.rnn, self.pad_id = encoder.embedding, UnpackedRNN(encoder.encoder.rnn), encoder.pad_id
        self.hidden_size = encoder.encoder.hidden_size

    def forward(self, chars: Tensor) -> Tensor:
        """chars (B, T, L) right-padded with ``pad_id`` -> (B, T, 2H)."""
        batch, steps, width = chars.shape
        words = chars.reshape(-1, width)  # (W, L)
        lengths = (words != self.pad_id).sum(1).clamp(min=1)  # (W,) as the eager encoder: padding words run one pad
        outputs = self.rnn(self.embedding(words), lengths)  # (W, L, 2H)
        rows = torch.arange(words.shape[0], device=chars.device)
        forward = outputs[rows, lengths - 1, :self.hidden_size]  # (W, H): after the last character
        backward = outputs[:, 0, self.hidden_size:]  # (W, H): after reading back to the first
        real = (words[:, 0] != self.pad_id).unsqueeze(1).to(outputs.dtype)  # (W, 1)
        return (torch.cat([forward, backward], dim=1) * real).reshape(batch, steps, -1)
