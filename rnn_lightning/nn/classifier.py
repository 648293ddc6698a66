"""Sentence classification network: embedding -> RNN -> pooling (final / mean / max / concat) -> class logits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rnn_lightning.nn.checks import check_choice
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.pooling import POOLINGS, Pooling, pool_states, pooled_size
from rnn_lightning.nn.string_embeddings import ContextualStringEmbeddings


class SequenceClassifierNet(nn.Module):
    """One label per sequence, from a pooled summary of the recurrent states.

    Args:
        vocab_size: number of token ids.
        num_labels: number of classes (C).
        encoder: the embedding and recurrent settings (see :class:`EncoderConfig`; with ``bidirectional``,
            ``"final"`` pooling joins each direction's final state).
        pooling: ``"final"`` state, ``"mean"`` / ``"max"`` over all states, or ``"concat"``: the three side by side
            (ULMFiT's concat pooling).
        strings: contextual string embeddings read beside the word embeddings (see :class:`EmbedEncode`).

    Example:
        >>> import torch
        >>> net = SequenceClassifierNet(20, 3, encoder=EncoderConfig(embedding_dim=8, hidden_size=8), pooling="max")
        >>> tuple(net(torch.randint(1, 20, (4, 6)), torch.tensor([6, 2, 5, 1])).shape)
        (4, 3)
    """

    def __init__(
        self, vocab_size: int, num_labels: int, *, encoder: EncoderConfig, pooling: Pooling = "final",
        strings: ContextualStringEmbeddings | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2, got {num_labels!r}.")
        check_choice("pooling", pooling, POOLINGS)
        self.body = EmbedEncode(vocab_size, encoder=encoder, strings=strings)
        self.classifier = nn.Linear(pooled_size(pooling, self.body.output_dim), num_labels)
        self.pooling, self.bidirectional = pooling, encoder.bidirectional

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None,
        words: Sequence[Sequence[str]] | None = None,
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) with ``num_chars``, char_lengths (B, T) optional, words (B
        lists of strings) with ``strings`` -> logits (B, C). Lengths belong on the CPU (see :class:`EmbedEncode`)."""
        states = self.body(tokens, lengths, chars, char_lengths, words)  # (B, T, H * directions)
        return self.classifier(pool_states(states, lengths, self.pooling, self.bidirectional))  # (B, C)
