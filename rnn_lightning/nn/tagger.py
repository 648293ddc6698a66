"""Sequence tagging network: embedding -> (bidirectional) RNN -> per-token label scores."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.encoder import Cell, Connection


class SequenceTaggerNet(nn.Module):
    """One label score vector per token (POS tags, NER tags).

    Args:
        vocab_size: number of token ids.
        num_labels: number of tags (C).
        embedding_dim: token embedding size.
        hidden_size: recurrent state size per direction.
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        bidirectional: each token sees its left and right context (what taggers want).
        dropout: dropout on embeddings, between layers and before the output layer.
        pad_id: padding id.
        word_dropout: in training, replace tokens by ``unk_id`` with this probability (see :class:`EmbedEncode`).
        unk_id: id of ``<unk>``.
        num_chars: character vocabulary size, to add character features (see :class:`EmbedEncode`).
        char_embedding_dim: character embedding size.
        char_hidden_size: character BiRNN state size per direction.
        connection: how stacked layers join: ``"none"``, or ``"residual"`` / ``"dense"`` / ``"highway"`` direct
            connections for deep stacks (``num_layers >= 2``; see :mod:`rnn_lightning.nn.stack`).

    Example:
        >>> import torch
        >>> net = SequenceTaggerNet(vocab_size=20, num_labels=5, embedding_dim=8, hidden_size=8)
        >>> tuple(net(torch.randint(1, 20, (2, 6)), torch.tensor([6, 3])).shape)
        (2, 6, 5)
    """

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        embedding_dim: int = 100,
        hidden_size: int = 100,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        pad_id: int | None = 0,
        word_dropout: float = 0.0,
        unk_id: int = 1,
        num_chars: int | None = None,
        char_embedding_dim: int = 25,
        char_hidden_size: int = 25,
        connection: Connection = "none",
    ) -> None:
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2 (a tagger chooses among tags), got {num_labels!r}.")
        self.body = EmbedEncode(vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
                                pad_id, word_dropout, unk_id, num_chars, char_embedding_dim, char_hidden_size,
                                connection)
        self.scorer = nn.Linear(self.body.output_dim, num_labels)

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) with ``num_chars``, char_lengths (B, T) optional -> label
        scores (B, T, C). Lengths belong on the CPU (see :class:`EmbedEncode`)."""
        return self.scorer(self.body(tokens, lengths, chars, char_lengths))
