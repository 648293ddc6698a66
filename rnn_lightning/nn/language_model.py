"""RNN language-model network: embedding -> recurrent encoder -> (projection) -> vocabulary logits (full or
adaptive softmax)."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.checks import check_size, check_token_id
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.embedding_dropout import EmbeddingDropout
from rnn_lightning.nn.encoder import State
from rnn_lightning.nn.locked_dropout import LockedDropout
from rnn_lightning.nn.output_layer import AdaptiveSoftmax, SoftmaxOutput


class RNNLanguageModelNet(nn.Module):
    """Predicts the next token at every step: p(x_{t+1} | x_1..x_t).

    Args:
        vocab_size: number of tokens (V).
        encoder: the embedding and recurrent settings (see :class:`EncoderConfig`): ``dropout`` acts between
            stacked layers, ``dropout_embedding`` and ``dropout_output`` (default: ``dropout``) on the embedded
            inputs and before the decoder (one mask per sequence with ``locked_dropout``); ``weight_drop``,
            ``dropout_words`` and ``last_hidden_size`` give AWD-LSTM's network; ``bidirectional`` is refused (see the
            error); ``word_dropout`` and the character settings are not used.
        tie_weights: share the embedding matrix with the output layer (Press & Wolf 2017, Inan et al. 2017);
            when the last layer's size differs from ``embedding_dim`` a linear projection H -> E comes first. With
            the adaptive softmax only the head's rows of the ``cutoffs[0]`` most frequent words are shared (the
            tail clusters read narrower projections, whose sizes differ from the embedding's).
        adaptive_softmax_cutoffs: ``None``: the full softmax. Otherwise the adaptive softmax (Grave et al. 2017)
            with these cluster boundaries, e.g. ``[20000, 40000, 200000]`` for WikiText-103: the ids below the first
            form the head, so ids must be ordered by decreasing frequency (the word tokenizer's are). Exact: its
            log-probabilities sum to one over the vocabulary (see :mod:`~rnn_lightning.nn.output_layer`).
        adaptive_softmax_div_value: each tail cluster's projection is the previous one's size divided by this.

    Example:
        >>> import torch
        >>> net = RNNLanguageModelNet(50, encoder=EncoderConfig(embedding_dim=8, hidden_size=16), tie_weights=True)
        >>> logits, state = net(torch.randint(0, 50, (2, 7)))
        >>> tuple(logits.shape)
        (2, 7, 50)
    """

    def __init__(self, vocab_size: int, *, encoder: EncoderConfig, tie_weights: bool = False,
                 adaptive_softmax_cutoffs: list[int] | None = None, adaptive_softmax_div_value: float = 4.0) -> None:
        super().__init__()
        if encoder.bidirectional:
            raise ValueError(
                "`bidirectional=True` is not allowed for a language model: the backward direction reads the "
                "tokens to the right, so the model would see the word it must predict. Use bidirectional "
                "encoders for tagging or classification, and `bidirectional=False` here."
            )
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"`vocab_size` must be an integer >= 2, got {vocab_size!r}.")
        embedding_dim, hidden_size = encoder.embedding_dim, encoder.output_dim
        check_size("embedding_dim", embedding_dim)  # a language model reads its words' embeddings alone
        check_token_id("pad_id", encoder.pad_id, vocab_size)
        self.embedding = EmbeddingDropout(vocab_size, embedding_dim, padding_idx=encoder.pad_id,
                                          dropout=encoder.dropout_words)
        dropout = LockedDropout if encoder.locked_dropout else nn.Dropout
        self.dropout_in = dropout(encoder.embedding_dropout)
        self.encoder = encoder.recurrent_encoder(embedding_dim)
        self.dropout_out = dropout(encoder.output_dropout)
        needs_projection = tie_weights and hidden_size != embedding_dim
        self.projection = nn.Linear(hidden_size, embedding_dim, bias=False) if needs_projection else nn.Identity()
        in_features = embedding_dim if tie_weights else hidden_size
        if adaptive_softmax_cutoffs is None:
            self.decoder = SoftmaxOutput(in_features, vocab_size)
            if tie_weights:
                self.decoder.weight = self.embedding.weight  # (V, E), one parameter
        else:
            self.decoder = AdaptiveSoftmax(in_features, vocab_size, cutoffs=adaptive_softmax_cutoffs,
                                           div_value=adaptive_softmax_div_value,
                                           tied_embedding=self.embedding.weight if tie_weights else None)
        self.vocab_size, self.config = vocab_size, encoder
        self._init_weights()

    def _init_weights(self, scale: float = 0.1) -> None:
        # Uniform(-0.1, 0.1) for embedding and decoder, as pytorch/examples and Zaremba et al. do.
        nn.init.uniform_(self.embedding.weight, -scale, scale)
        if self.embedding.padding_idx is not None:
            self.embedding.weight.data[self.embedding.padding_idx].zero_()
        if isinstance(self.decoder, SoftmaxOutput):  # the adaptive softmax keeps torch's initialisation
            nn.init.zeros_(self.decoder.bias)
            if self.decoder.weight is not self.embedding.weight:
                nn.init.uniform_(self.decoder.weight, -scale, scale)

    def forward(self, tokens: Tensor, state: State | None = None, last_only: bool = False) -> tuple[Tensor, State]:
        """Args: tokens (B, T) ids; state from the previous window or ``None``; ``last_only``: decode only the
        last step (generation needs no logits for the prompt).

        Returns: logits (B, T, V), or (B, 1, V) with ``last_only``, and the final recurrent state.
        """
        h, state = self.features(tokens, state)  # (B, T, H)
        if last_only:
            h = h[:, -1:]  # (B, 1, H)
        return self.decode(self.dropout_out(h)), state  # (B, T, V)

    def features(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> the last layer's outputs (B, T, H) before the output dropout, and the final state.

        The training loss's regularisers (AR on ``dropout_out`` of them, TAR on them) and the cache pointer read
        these; ``decode(dropout_out(h))`` gives the logits.
        """
        return self.encoder(self.dropout_in(self.embedding(tokens)), state)  # (B, T, H)

    def decode(self, h: Tensor) -> Tensor:
        """(B, T, H) last-layer outputs, after the output dropout -> logits (B, T, V) (the adaptive softmax's are
        normalised log-probabilities)."""
        return self.decoder.logits(self.projection(h))

    def nll(self, h: Tensor, targets: Tensor, *, reduction: str = "none") -> Tensor:
        """(B, T, H) last-layer outputs after the output dropout, (B, T) next ids -> (B, T) negative
        log-likelihoods (float32, float64 for a float64 network; 0 where a target is ``IGNORE_INDEX``), or their
        () sum with ``reduction="sum"``."""
        return self.decoder.nll(self.projection(h), targets, reduction=reduction)
