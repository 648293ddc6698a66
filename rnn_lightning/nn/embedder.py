"""Token embedding + recurrent encoder over padded batches: the body every tagger and classifier shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnn_lightning.nn.char_encoder import CharacterEncoder
from rnn_lightning.nn.checks import check_token_id
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.embedding_dropout import EmbeddingDropout
from rnn_lightning.nn.string_embeddings import ContextualStringEmbeddings


class EmbedEncode(nn.Module):
    """ids (B, T) + lengths (B,) -> contextual states (B, T, H * directions), padding skipped.

    Args:
        vocab_size: number of token ids.
        encoder: the embedding, recurrent and character settings (see :class:`EncoderConfig`).
        strings: contextual string embeddings whose per-word features join the word embeddings (then
            ``embedding_dim=0`` reads them alone, with no word embeddings); ``forward`` then needs the ``words``.

    Example:
        >>> body = EmbedEncode(20, encoder=EncoderConfig(embedding_dim=4, hidden_size=3, bidirectional=True))
        >>> tuple(body(torch.randint(1, 20, (2, 5)), torch.tensor([5, 2])).shape), body.output_dim
        ((2, 5, 6), 6)
    """

    def __init__(self, vocab_size: int, *, encoder: EncoderConfig,
                 strings: ContextualStringEmbeddings | None = None) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"`vocab_size` must be an integer >= 2, got {vocab_size!r}.")
        if encoder.locked_dropout:
            raise ValueError("`locked_dropout=True` is for the language model: taggers and classifiers pack their "
                             "padded batches, where one mask per sequence between layers is not supported. Use "
                             "locked_dropout=False.")
        check_token_id("pad_id", encoder.pad_id, vocab_size)
        check_token_id("unk_id", encoder.unk_id, vocab_size)
        self.embedding = EmbeddingDropout(vocab_size, encoder.embedding_dim, padding_idx=encoder.pad_id,
                                          dropout=encoder.dropout_words)
        self.chars = None
        if encoder.num_chars is not None:
            self.chars = CharacterEncoder(encoder.num_chars, embedding_dim=encoder.char_embedding_dim,
                                          hidden_size=encoder.char_hidden_size, cell=encoder.cell)
        self.strings = strings
        input_size = (encoder.embedding_dim + (self.chars.output_dim if self.chars is not None else 0)
                      + (strings.output_dim if strings is not None else 0))
        if input_size == 0:
            raise ValueError("`embedding_dim` is 0 and no character or string features are on, so the encoder would "
                             "read nothing. Set `embedding_dim` > 0, or give `lm_checkpoints` to read string "
                             "embeddings alone.")
        self.encoder = encoder.recurrent_encoder(input_size)
        self.dropout_in = nn.Dropout(encoder.embedding_dropout)
        self.dropout_out = nn.Dropout(encoder.output_dropout)
        self.output_dim = self.encoder.output_dim
        self.config = encoder

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None,
        words: Sequence[Sequence[str]] | None = None,
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) if built with ``num_chars``, words (B lists of T_b strings) if
        built with ``strings`` -> states (B, T, H * directions), zeros at padded steps. ``lengths`` and
        ``char_lengths`` (B, T, optional) belong on the CPU (no GPU wait)."""
        if (chars is None) != (self.chars is None):
            raise ValueError(
                "this network was built with character features, so `chars` (B, T, L) is needed"
                if self.chars is not None else
                "`chars` was given but this network has no character encoder: build it with `num_chars`"
            )
        pad_id, word_dropout = self.config.pad_id, self.config.word_dropout
        if self.training and word_dropout > 0:
            drop = torch.rand(tokens.shape, device=tokens.device) < word_dropout  # (B, T)
            if pad_id is not None:
                drop &= tokens != pad_id
            tokens = tokens.masked_fill(drop, self.config.unk_id)
        x = self.embedding(tokens)  # (B, T, E)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars, char_lengths)], dim=-1)  # (B, T, E + 2 * char_hidden_size)
        if self.strings is not None:
            x = torch.cat([x, self._string_features(words, tokens.shape[1])], dim=-1)  # (B, T, ... + H_fwd + H_bwd)
        states, _ = self.encoder(self.dropout_in(x), lengths=lengths)  # (B, T, H * directions)
        return self.dropout_out(states)

    def _string_features(self, words: Sequence[Sequence[str]] | None, width: int) -> Tensor:
        """The string embeddings of ``words`` (B, width, D), padded to the batch's ``width`` steps."""
        if words is None:
            raise ValueError(
                "this network reads each word's characters through its language models (`strings`), so it needs the "
                "words themselves (`words`, one list of strings per sentence). From a TaggingDataModule: set its "
                "`serve_words: true`."
            )
        features = self.strings(words)  # (B, W, D), W the longest word list
        return nn.functional.pad(features, (0, 0, 0, width - features.shape[1]))
