"""Recurrent sequence encoder: (B, T, D) -> (B, T, H * directions), over cuDNN-backed ``torch.nn`` RNNs."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.packing import run_rnn
from rnn_lightning.nn.stack import CELLS, CONNECTIONS, Cell, ConnectedStack, Connection, State, make_rnn

__all__ = [
    "CELLS", "CONNECTIONS", "Cell", "Connection", "RecurrentEncoder", "State", "check_dropout", "check_token_id",
    "detach_state",
]


def check_dropout(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``0 <= value < 1``."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}. Use e.g. 0.0 (off) to 0.5.")


def check_token_id(name: str, value: int | None, vocab_size: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is ``None`` or a token id in ``[0, vocab_size)``
    (``nn.Embedding`` would take a negative one as counted from the end)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size):
        raise ValueError(
            f"`{name}` must be a token id in [0, vocab_size={vocab_size}) or None, got {value!r}. Pass the "
            f"DataModule's `{name}` (the CLI links it), or None where there is no such token."
        )


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

    ``num_layers``, ``cell``, ``bidirectional`` and ``connection`` are the settings of the same names of
    :class:`~rnn_lightning.nn.EncoderConfig` (documented there), which builds one with ``recurrent_encoder``.

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
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"`cell` must be one of {CELLS}, got {cell!r}.")
        if connection not in CONNECTIONS:
            raise ValueError(f"`connection` must be one of {CONNECTIONS}, got {connection!r}.")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        check_dropout("dropout", dropout)
        if connection == "none":
            self.rnn: nn.Module = make_rnn(cell, input_size, hidden_size, num_layers=num_layers,
                                           bidirectional=bidirectional, dropout=dropout)
        else:
            self.rnn = ConnectedStack(input_size, hidden_size, num_layers=num_layers, cell=cell,
                                      bidirectional=bidirectional, dropout=dropout, connection=connection)
        self.cell = cell
        self.connection = connection
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    @property
    def output_dim(self) -> int:
        """Features per output step: ``hidden_size * (2 if bidirectional else 1)``."""
        return self.hidden_size * (2 if self.bidirectional else 1)

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
            outputs (B, T, H * directions) and the final state, each (layers * directions, B, H).
        """
        if lengths is None:
            return self.rnn(inputs, state)
        return run_rnn(self.rnn, inputs, lengths, state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd history of a carried state (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
