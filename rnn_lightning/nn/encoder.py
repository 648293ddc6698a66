"""Recurrent sequence encoder: (B, T, D) -> (B, T, H * directions), over cuDNN-backed ``torch.nn`` RNNs."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.checks import check_choice, check_dropout, check_size, check_token_id
from rnn_lightning.nn.packing import run_rnn
from rnn_lightning.nn.stack import CELLS, CONNECTIONS, Cell, ConnectedStack, Connection, State, make_rnn, map_state
from rnn_lightning.nn.weight_drop import check_weight_drop

__all__ = [
    "CELLS", "CONNECTIONS", "Cell", "Connection", "RecurrentEncoder", "State", "check_dropout", "check_token_id",
    "detach_state",
]


class RecurrentEncoder(nn.Module):
    """A stack of simple-RNN, GRU or LSTM layers, batch first.

    Args:
        input_size: features per input step (D).
        hidden_size: features of the recurrent state per direction (H).
        num_layers: stacked recurrent layers.
        cell: the recurrent cell.
        bidirectional: also run a right-to-left pass and concatenate both (output 2H).
        dropout: dropout between stacked layers (not after the last one).
        connection: how stacked layers join.
        last_hidden_size: the last layer's state size (``None``: ``hidden_size``).
        weight_drop: DropConnect on the hidden-to-hidden weights in training.
        locked_dropout: between layers, one dropout mask per sequence instead of one per step.
        forget_bias: the LSTM's initial forget-gate bias (``None``: torch's initialisation).

    ``num_layers``, ``cell``, ``bidirectional``, ``connection`` and the last three are the settings of the same names
    of :class:`~rnn_lightning.nn.EncoderConfig` (documented there), which builds one with ``recurrent_encoder``. The
    stack is one fused ``torch.nn`` module unless a connection, a last size of its own, or locked dropout between
    layers needs them run one by one (:class:`~rnn_lightning.nn.ConnectedStack`).

    Example:
        >>> import torch
        >>> enc = RecurrentEncoder(8, 16, num_layers=2, cell="gru", bidirectional=True)
        >>> out, state = enc(torch.randn(3, 5, 8))
        >>> tuple(out.shape), enc.output_dim, tuple(state.shape)
        ((3, 5, 32), 32, (4, 3, 16))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        connection: Connection = "none",
        last_hidden_size: int | None = None,
        weight_drop: float = 0.0,
        locked_dropout: bool = False,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELLS)
        check_choice("connection", connection, CONNECTIONS)
        last = hidden_size if last_hidden_size is None else last_hidden_size
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("last_hidden_size", last)):
            check_size(name, value)
        check_dropout("dropout", dropout)
        check_weight_drop(weight_drop)
        fused = connection == "none" and last == hidden_size and not (locked_dropout and num_layers > 1)
        if fused:
            self.rnn: nn.Module = make_rnn(cell, input_size, hidden_size, num_layers=num_layers,
                                           bidirectional=bidirectional, dropout=dropout, weight_drop=weight_drop,
                                           forget_bias=forget_bias)
        else:
            self.rnn = ConnectedStack(input_size, hidden_size, num_layers=num_layers, cell=cell,
                                      bidirectional=bidirectional, dropout=dropout, connection=connection,
                                      last_hidden_size=last, weight_drop=weight_drop, locked_dropout=locked_dropout,
                                      forget_bias=forget_bias)
        self.cell = cell
        self.connection = connection
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.last_hidden_size = last
        self.num_layers = num_layers

    @property
    def output_dim(self) -> int:
        """Features per output step: ``last_hidden_size * (2 if bidirectional else 1)``."""
        return self.last_hidden_size * (2 if self.bidirectional else 1)

    def forward(
        self, inputs: Tensor, state: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """Encode a batch of sequences.

        Args:
            inputs: (B, T, D) features, right-padded when ``lengths`` is given.
            state: initial state from a previous call (zeros when ``None``).
            lengths: (B,) real length of each sequence. The padding is then skipped (packed, or one call per
                length for long batches off CUDA: :func:`~rnn_lightning.nn.packing.run_rnn`): the final state is
                each sequence's own, the right-to-left pass starts at its last real step, and outputs at padded
                steps are zeros. Required for correct bidirectional results on padded batches.
                Keep them on the CPU: lengths on a GPU make the host wait for it (cuDNN needs them on the host).

        Returns:
            outputs (B, T, last H * directions) and the final state, each (layers * directions, B, H); (..., B, max H)
            when the last layer's size differs, each layer's rows zero-padded.
        """
        if lengths is None:
            return self.rnn(inputs, state)
        return run_rnn(self.rnn, inputs, lengths, state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd history of a carried state (truncated BPTT)."""
    return map_state(state, Tensor.detach)
