"""Sequence tagging network: embedding -> (bidirectional) RNN -> per-token label scores."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.string_embeddings import ContextualStringEmbeddings


class SequenceTaggerNet(nn.Module):
    """One label score vector per token (POS tags, NER tags).

    Args:
        vocab_size: number of token ids.
        num_labels: number of tags (C).
        encoder: the embedding, recurrent and character settings (see :class:`EncoderConfig`; taggers want
            ``bidirectional=True``).
        strings: contextual string embeddings read beside (or, with ``embedding_dim=0``, instead of) the word
            embeddings (see :class:`EmbedEncode`).

    Example:
        >>> import torch
        >>> net = SequenceTaggerNet(20, 5, encoder=EncoderConfig(embedding_dim=8, hidden_size=8, bidirectional=True))
        >>> tuple(net(torch.randint(1, 20, (2, 6)), torch.tensor([6, 3])).shape)
        (2, 6, 5)
    """

    def __init__(self, vocab_size: int, num_labels: int, *, encoder: EncoderConfig,
                 strings: ContextualStringEmbeddings | None = None) -> None:
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2 (a tagger chooses among tags), got {num_labels!r}.")
        self.body = EmbedEncode(vocab_size, encoder=encoder, strings=strings)
        self.scorer = nn.Linear(self.body.output_dim, num_labels)

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None,
        words: Sequence[Sequence[str]] | None = None,
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) with ``num_chars``, char_lengths (B, T) optional, words (B
        lists of strings) with ``strings`` -> label scores (B, T, C). Lengths belong on the CPU (see
        :class:`EmbedEncode`)."""
        return self.scorer(self.body(tokens, lengths, chars, char_lengths, words))
