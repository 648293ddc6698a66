"""Token embedding + recurrent encoder over padded batches: the body every tagger and classifier shares."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_lightning.nn.char_encoder import CharacterEncoder
from rnn_lightning.nn.encoder import Cell, Connection, RecurrentEncoder, check_dropout, check_token_id


class EmbedEncode(nn.Module):
    """ids (B, T) + lengths (B,) -> contextual states (B, T, H * directions), padding skipped.

    Args:
        vocab_size: number of token ids.
        embedding_dim: token embedding size (E).
        hidden_size: recurrent state size per direction (H).
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        bidirectional: read each sequence both ways and concatenate (2H features per step).
        dropout: dropout on the embeddings, between layers, and on the outputs.
        pad_id: embedding row kept at zero for padding.
        word_dropout: in training, replace each real token by ``unk_id`` with this probability, so the ``<unk>``
            embedding learns to stand for the rare and unseen words met at test time.
        unk_id: id of ``<unk>``.
        num_chars: size of the character vocabulary: each token's embedding is then concatenated with a
            :class:`CharacterEncoder` vector of its characters (``None``: words only).
        char_embedding_dim: character embedding size.
        char_hidden_size: character BiRNN state size per direction (the word gets ``2 * char_hidden_size``).
        connection: how stacked layers join: ``"none"``, or ``"residual"`` / ``"dense"`` / ``"highway"`` direct
            connections for deep stacks (``num_layers >= 2``; see :mod:`rnn_lightning.nn.stack`).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: Cell,
        bidirectional: bool,
        dropout: float,
        pad_id: int | None,
        word_dropout: float = 0.0,
        unk_id: int = 1,
        num_chars: int | None = None,
        char_embedding_dim: int = 25,
        char_hidden_size: int = 25,
        connection: Connection = "none",
    ) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"`vocab_size` must be an integer >= 2, got {vocab_size!r}.")
        check_dropout("dropout", dropout)
        check_dropout("word_dropout", word_dropout)
        check_token_id("pad_id", pad_id, vocab_size)
        check_token_id("unk_id", unk_id, vocab_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.chars = None
        if num_chars is not None:
            self.chars = CharacterEncoder(num_chars, char_embedding_dim, char_hidden_size, cell)
        input_size = embedding_dim + (self.chars.output_dim if self.chars is not None else 0)
        self.encoder = RecurrentEncoder(input_size, hidden_size, num_layers, cell, bidirectional, dropout, connection)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = self.encoder.output_dim
        self.pad_id, self.word_dropout, self.unk_id = pad_id, word_dropout, unk_id

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) if built with ``num_chars`` -> states (B, T, H * directions),
        zeros at padded steps. ``lengths`` and ``char_lengths`` (B, T, optional) belong on the CPU (no GPU wait)."""
        if (chars is None) != (self.chars is None):
            raise ValueError(
                "this network was built with character features, so `chars` (B, T, L) is needed"
                if self.chars is not None else
                "`chars` was given but this network has no character encoder: build it with `num_chars`"
            )
        if self.training and self.word_dropout > 0:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout  # (B, T)
            if self.pad_id is not None:
                drop &= tokens != self.pad_id
            tokens = tokens.masked_fill(drop, self.unk_id)
        x = self.embedding(tokens)  # (B, T, E)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars, char_lengths)], dim=-1)  # (B, T, E + 2 * char_hidden_size)
        x = self.dropout(x)
        states, _ = self.encoder(x, lengths=lengths)  # (B, T, H * directions)
        return self.dropout(states)
