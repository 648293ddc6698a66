"""Stacked recurrent layers, fused (cuDNN) or joined by direct connections: residual, dense or highway.

Deep stacks learn slowly in their lower layers: the gradient reaching them passes through every layer above and
shrinks (or grows) on the way. A direct connection gives it a shorter path:

    residual   h_l = f_l(h_{l-1}) + h_{l-1}                                   (He et al. 2016; layers 2..L)
    dense      h_l = f_l([x; h_1; ...; h_{l-1}])                              (Huang et al. 2017)
    highway    h_l = g * f_l(h_{l-1}) + (1 - g) * h_{l-1},  g = sigmoid(W h_{l-1} + b)   (Srivastava et al. 2015)

where f_l is the l-th recurrent layer run over the whole sequence and h_{l-1} its input (after the between-layer
dropout). The first layer has no connection (its input is the embedding, of another size).

Run one by one, layers may also differ (``connection="none"``): AWD-LSTM (Merity et al. 2017) gives its last layer
the embedding's size, so a tied decoder needs no projection, and drops out between layers with one mask per
sequence (:class:`~rnn_lightning.nn.locked_dropout.LockedDropout`). The carried state of layers of different sizes
is one (L * directions, B, max H) tensor, each layer's rows zero-padded to the widest.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnn_lightning.nn.checks import check_choice
from rnn_lightning.nn.locked_dropout import LockedDropout
from rnn_lightning.nn.weight_drop import WeightDropGRU, WeightDropLSTM, WeightDropRNN

Cell = Literal["rnn_tanh", "rnn_relu", "gru", "lstm"]
Connection = Literal["none", "residual", "dense", "highway"]
# LSTM state is (h, c); the others carry h only. Each is (num_layers * directions, B, H).
State = Tensor | tuple[Tensor, Tensor]
Sequence = Tensor | PackedSequence

CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
CONNECTIONS = ("none", "residual", "dense", "highway")
HIGHWAY_GATE_BIAS = -1.0  # gates start mostly closed: each layer first passes its input on (Srivastava et al.)


def map_state(state: State | None, fn: Callable[[Tensor], Tensor]) -> State | None:
    """``fn`` on each tensor of a recurrent state (h, or the LSTM's (h, c) pair); ``None`` stays ``None``."""
    if state is None:
        return None
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def make_rnn(
    cell: Cell, input_size: int, hidden_size: int, *, num_layers: int, bidirectional: bool, dropout: float,
    weight_drop: float = 0.0, forget_bias: float | None = None,
) -> nn.RNNBase:
    """A batch-first ``torch.nn`` LSTM, GRU or RNN (one cuDNN call for the whole stack on a GPU); with
    ``weight_drop > 0`` its weight-drop subclass (same parameters and ``state_dict``, see
    :mod:`rnn_lightning.nn.weight_drop`); with a ``forget_bias``, an LSTM's forget gates start there
    (:func:`init_forget_bias`)."""
    check_forget_bias(forget_bias, cell)
    kwargs = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, batch_first=True,
                  bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
    plain, dropped = {"lstm": (nn.LSTM, WeightDropLSTM), "gru": (nn.GRU, WeightDropGRU)}.get(cell, (None, None))
    if plain is None:  # a simple RNN
        plain, dropped, kwargs["nonlinearity"] = nn.RNN, WeightDropRNN, cell.removeprefix("rnn_")
    rnn = dropped(**kwargs, weight_drop=weight_drop) if weight_drop > 0 else plain(**kwargs)
    if forget_bias is not None:
        init_forget_bias(rnn, forget_bias)
    return rnn


def check_forget_bias(value: float | None, cell: Cell) -> None:
    """Refuse a ``forget_bias`` that is not a number, or one given to a cell without a forget gate."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`forget_bias` must be a number or None, got {value!r}. Use e.g. 1.0 (None: torch's "
                         "default initialisation).")
    if cell != "lstm":
        raise ValueError(f"`forget_bias` sets the LSTM's forget-gate bias, but cell={cell!r} has no forget gate: "
                         "use cell='lstm', or forget_bias=None.")


def init_forget_bias(rnn: nn.LSTM, value: float) -> None:
    """Start every forget gate of ``rnn`` at bias ``value`` (each ``bias_ih`` forget block; ``bias_hh``'s zero).

    torch draws the bias around 0, so each step keeps about half the cell state and the gradient to a state
    ``d`` steps back shrinks like ``0.5 ** d``: long-range dependencies are learned slowly or not at all. A
    positive bias keeps the cell state open from the start (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1;
    the further the dependency, the larger it needs to be). Gate order in torch: input, forget, cell, output.
    """
    hidden = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_ih"):
                param[hidden:2 * hidden] = value
            elif name.startswith("bias_hh"):
                param[hidden:2 * hidden] = 0.0


class ConnectedStack(nn.Module):
    """Recurrent layers run one by one and joined by ``connection``; called like ``torch.nn.LSTM`` (batch first).

    Takes the arguments of :class:`~rnn_lightning.nn.RecurrentEncoder` (which builds one for a ``connection``
    other than ``"none"``, a ``last_hidden_size`` of its own, or locked dropout between layers), with
    ``num_layers >= 2`` for a ``connection`` (``"residual"``, ``"dense"``, ``"highway"``: see the module docstring).

    Example:
        >>> stack = ConnectedStack(8, 16, num_layers=3, cell="gru", bidirectional=True, connection="highway")
        >>> out, state = stack(torch.randn(2, 5, 8))
        >>> tuple(out.shape), tuple(state.shape)
        ((2, 5, 32), (6, 2, 16))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 2,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        connection: Connection = "residual",
        last_hidden_size: int | None = None,
        weight_drop: float = 0.0,
        locked_dropout: bool = False,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("connection", connection, CONNECTIONS)
        if connection != "none" and num_layers < 2:
            raise ValueError(
                f"`connection={connection!r}` joins stacked layers, so it needs num_layers >= 2, got {num_layers}. "
                "Use connection='none' with one layer."
            )
        last = hidden_size if last_hidden_size is None else last_hidden_size
        if connection in ("residual", "highway") and last != hidden_size:
            raise ValueError(
                f"`connection={connection!r}` adds each layer's input to its output, so every layer needs the same "
                f"size, got hidden_size={hidden_size} and last_hidden_size={last_hidden_size}. Use "
                "last_hidden_size=None, or connection='dense' or 'none'."
            )
        self.directions = 2 if bidirectional else 1
        self.hidden_sizes = [hidden_size] * (num_layers - 1) + [last]  # each layer's state size
        width = hidden_size * self.directions  # features of each layer's output but the last
        sizes = [input_size] + [input_size + layer * width if connection == "dense" else width
                                for layer in range(1, num_layers)]  # each layer's input features
        self.layers = nn.ModuleList(
            make_rnn(cell, size, hidden, num_layers=1, bidirectional=bidirectional, dropout=0.0,
                     weight_drop=weight_drop, forget_bias=forget_bias)
            for size, hidden in zip(sizes, self.hidden_sizes, strict=True))
        self.gates = None
        if connection == "highway":
            self.gates = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers - 1))
            for gate in self.gates:
                nn.init.constant_(gate.bias, HIGHWAY_GATE_BIAS)
        self.dropout = LockedDropout(dropout) if locked_dropout else nn.Dropout(dropout)
        self.connection = connection

    def forward(self, inputs: Sequence, state: State | None = None) -> tuple[Sequence, State]:
        """inputs (B, T, D) or packed, state (L * directions, B, max H) -> outputs (B, T, last H * directions), final
        state."""
        if isinstance(inputs, PackedSequence) and isinstance(self.dropout, LockedDropout) and len(self.layers) > 1:
            raise ValueError("locked dropout between layers takes padded (B, T, D) inputs, not a packed batch: "
                             "call without `lengths`, or use locked_dropout=False.")
        per_layer = _split_state(state, self.hidden_sizes, self.directions)
        seen = [inputs]  # dense: the input and every layer's (dropped-out) output so far
        finals = []
        below = inputs
        for index, rnn in enumerate(self.layers):
            layer_input = _map(_concat, seen) if self.connection == "dense" and index > 0 else below
            out, final = rnn(layer_input, per_layer[index])
            finals.append(final)
            out = _map(partial(self.connect, index), [out, below])
            below = out if index == len(self.layers) - 1 else _map(lambda data: self.dropout(data[0]), [out])
            seen.append(below)
        return below, _join_states(finals, max(self.hidden_sizes))

    def connect(self, index: int, data: list[Tensor]) -> Tensor:
        """Layer ``index``'s output joined with its input by the connection: ``data`` = [output, input] step features
        (..., F) -> (..., F). (The dense connection joins at the next layer's input instead.)"""
        out, below = data
        if index > 0 and self.connection == "residual":
            return out + below
        if index > 0 and self.connection == "highway":
            return _highway(self.gates[index - 1], data)
        return out


def _highway(gate: nn.Linear, data: list[Tensor]) -> Tensor:
    transformed, carried = data  # the layer's output, its input
    g = torch.sigmoid(gate(carried))  # (..., 2H): how much of the layer's own output to take
    return g * transformed + (1 - g) * carried


def _map(fn: Callable[[list[Tensor]], Tensor], sequences: list[Sequence]) -> Sequence:
    """``fn`` over the step features of padded tensors, or of packed sequences (all with the same batch sizes)."""
    first = sequences[0]
    if isinstance(first, PackedSequence):
        return first._replace(data=fn([s.data for s in sequences]))
    return fn(sequences)


def _concat(data: list[Tensor]) -> Tensor:
    return torch.cat(data, dim=-1)


def _split_state(state: State | None, sizes: list[int], directions: int) -> list[State | None]:
    """(L * directions, B, max H) -> one (directions, B, H_l) slice per layer (a pair of them for the LSTM)."""
    if state is None:
        return [None] * len(sizes)
    pick = lambda t, i: t[i * directions:(i + 1) * directions, :, :sizes[i]].contiguous()  # noqa: E731
    if isinstance(state, tuple):
        return [tuple(pick(t, i) for t in state) for i in range(len(sizes))]
    return [pick(state, i) for i in range(len(sizes))]


def _join_states(finals: list[State], width: int) -> State:
    """Per-layer (directions, B, H_l) states -> (L * directions, B, width), each zero-padded to ``width``."""
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[-1]))  # noqa: E731
    if isinstance(finals[0], tuple):
        return tuple(torch.cat([pad(t) for t in parts]) for parts in zip(*finals))
    return torch.cat([pad(t) for t in finals])
