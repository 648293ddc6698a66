"""Sentence classification network: embedding -> RNN -> pooling (final / mean / max) -> class logits."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.encoder import Cell, Connection
from rnn_lightning.nn.pooling import POOLINGS, Pooling, pool_states


class SequenceClassifierNet(nn.Module):
    """One label per sequence, from a pooled summary of the recurrent states.

    Args:
        vocab_size: number of token ids.
        num_labels: number of classes (C).
        embedding_dim: token embedding size.
        hidden_size: recurrent state size per direction.
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        bidirectional: read both ways (``"final"`` pooling then joins each direction's final state).
        dropout: dropout on embeddings, between layers and before the classifier.
        pooling: ``"final"`` state, or ``"mean"`` / ``"max"`` over all states.
        pad_id: padding id.
        word_dropout: in training, replace tokens by ``unk_id`` with this probability (see :class:`EmbedEncode`).
        unk_id: id of ``<unk>``.
        connection: how stacked layers join: ``"none"``, or ``"residual"`` / ``"dense"`` / ``"highway"`` direct
            connections for deep stacks (``num_layers >= 2``; see :mod:`rnn_lightning.nn.stack`).

    Example:
        >>> import torch
        >>> net = SequenceClassifierNet(vocab_size=20, num_labels=3, embedding_dim=8, hidden_size=8, pooling="max")
        >>> tuple(net(torch.randint(1, 20, (4, 6)), torch.tensor([6, 2, 5, 1])).shape)
        (4, 3)
    """

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        embedding_dim: int = 100,
        hidden_size: int = 150,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        pooling: Pooling = "final",
        pad_id: int | None = 0,
        word_dropout: float = 0.0,
        unk_id: int = 1,
        connection: Connection = "none",
    ) -> None:
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2, got {num_labels!r}.")
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
        self.body = EmbedEncode(vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
                                pad_id, word_dropout, unk_id, connection=connection)
        self.classifier = nn.Linear(self.body.output_dim, num_labels)
        self.pooling, self.bidirectional = pooling, bidirectional

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T), lengths (B,) -> logits (B, C)."""
        states = self.body(tokens, lengths)  # (B, T, H * directions)
        return self.classifier(pool_states(states, lengths, self.pooling, self.bidirectional))  # (B, C)

