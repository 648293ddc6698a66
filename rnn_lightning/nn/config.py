"""EncoderConfig: the settings of the embedding + recurrent body that every network of ``rnn_lightning.nn`` shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from rnn_lightning.nn.checks import check_dropout, check_flag, check_size
from rnn_lightning.nn.encoder import Cell, Connection, RecurrentEncoder
from rnn_lightning.nn.weight_drop import check_weight_drop


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """How ids become contextual states; the language model, the tagger and the classifier networks take one.

    Each setting is documented here once; the tasks take them as flat arguments of the same names.

    Args:
        embedding_dim: token embedding size (E).
        hidden_size: recurrent state size per direction (H).
        num_layers: stacked recurrent layers; each feeds its output sequence to the next.
        cell: ``"rnn_tanh"``, ``"rnn_relu"`` (simple RNN), ``"gru"`` or ``"lstm"``.
        bidirectional: also read each sequence right to left and concatenate both directions (2H features per
            step): each token then sees its left and right context, what taggers and classifiers want. A language
            model refuses it (it would see the word it must predict).
        dropout: dropout on the embedded inputs, between stacked layers and on the last layer's outputs.
        dropout_embedding: dropout on the embedded inputs when it differs from ``dropout`` (``None``: ``dropout``).
        dropout_output: dropout on the last layer's outputs when it differs from ``dropout`` (``None``: ``dropout``).
        connection: how stacked layers join: ``"none"`` (each feeds the next; one fused cuDNN call), or
            ``"residual"`` / ``"dense"`` / ``"highway"`` direct connections that shorten the gradient's path through
            deep stacks (``num_layers >= 2``; see :mod:`rnn_lightning.nn.stack`).
        pad_id: padding id, whose embedding row stays zero (``None``: no padding row).
        word_dropout: in training, replace each real token by ``unk_id`` with this probability, so the ``<unk>``
            embedding learns to stand for the rare and unseen words met at test time (where taggers fail).
        unk_id: id of ``<unk>``.
        num_chars: size of the character vocabulary: each token's embedding is then joined by a
            :class:`~rnn_lightning.nn.CharacterEncoder` vector of its characters (Lample et al. 2016; ``None``:
            words only).
        char_embedding_dim: character embedding size.
        char_hidden_size: character BiRNN state size per direction (a word gets ``2 * char_hidden_size`` features).
        last_hidden_size: the last layer's state size (``None``: ``hidden_size``). AWD-LSTM gives it the embedding
            size, so a tied decoder needs no projection; the layers then run one by one.
        weight_drop: in training, DropConnect on every hidden-to-hidden matrix (one mask per matrix per forward,
            on the fused kernel; :mod:`~rnn_lightning.nn.weight_drop`; AWD-LSTM: 0.5).
        dropout_words: in training, drop whole word types for one forward (every occurrence embeds to zeros, the
            kept rows scaled up; :class:`~rnn_lightning.nn.embedding_dropout.EmbeddingDropout`; AWD-LSTM: 0.1). Not
            ``word_dropout``, which swaps single tokens for ``<unk>``.
        locked_dropout: the input, between-layer and output dropouts draw one mask per sequence, the same at every
            step (:class:`~rnn_lightning.nn.locked_dropout.LockedDropout`; AWD-LSTM). Language model only: the
            taggers and classifiers pack their padded batches.
        forget_bias: start every LSTM forget gate at this bias (``None``: torch's initialisation, around 0, which
            halves the cell state at each step). 1 is the usual fix (Jozefowicz et al. 2015); a dependency many steps
            back needs more (``docs/gradient_flow.md``). LSTM only; changes the initialisation, never a checkpoint.

    Example:
        >>> config = EncoderConfig(embedding_dim=8, hidden_size=16, bidirectional=True, dropout=0.3, dropout_output=0)
        >>> config.embedding_dropout, config.output_dropout, config.output_dim
        (0.3, 0, 32)
    """

    embedding_dim: int = 100
    hidden_size: int = 100
    num_layers: int = 1
    cell: Cell = "lstm"
    bidirectional: bool = False
    dropout: float = 0.0
    dropout_embedding: float | None = None
    dropout_output: float | None = None
    connection: Connection = "none"
    pad_id: int | None = 0
    word_dropout: float = 0.0
    unk_id: int = 1
    num_chars: int | None = None
    char_embedding_dim: int = 25
    char_hidden_size: int = 25
    last_hidden_size: int | None = None
    weight_drop: float = 0.0
    dropout_words: float = 0.0
    locked_dropout: bool = False
    forget_bias: float | None = None

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "char_embedding_dim", "char_hidden_size"):
            check_size(name, getattr(self, name))
        if isinstance(self.embedding_dim, bool) or not isinstance(self.embedding_dim, int) or self.embedding_dim < 0:
            raise ValueError(f"`embedding_dim` must be a non-negative integer (0: string embeddings alone), got "
                             f"{self.embedding_dim!r}.")
        if self.last_hidden_size is not None:
            check_size("last_hidden_size", self.last_hidden_size)
        for name in ("dropout", "dropout_embedding", "dropout_output", "word_dropout", "dropout_words"):
            if getattr(self, name) is not None:
                check_dropout(name, getattr(self, name))
        check_weight_drop(self.weight_drop)
        check_flag("locked_dropout", self.locked_dropout)
        if self.num_chars is not None and (not isinstance(self.num_chars, int) or self.num_chars < 2):
            raise ValueError(f"`num_chars` must be an integer >= 2 (padding and a character) or None, got "
                             f"{self.num_chars!r}.")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **overrides: Any) -> EncoderConfig:
        """The config of those ``settings`` (e.g. a task's flat hyperparameters) that name a field, then
        ``overrides``; other settings are not the encoder's and are left out."""
        names = {field.name for field in fields(cls)}
        return cls(**{**{key: value for key, value in settings.items() if key in names}, **overrides})

    @property
    def embedding_dropout(self) -> float:
        """Dropout on the embedded inputs."""
        return self.dropout if self.dropout_embedding is None else self.dropout_embedding

    @property
    def output_dropout(self) -> float:
        """Dropout on the last layer's outputs."""
        return self.dropout if self.dropout_output is None else self.dropout_output

    @property
    def output_dim(self) -> int:
        """Features per output step: the last layer's size ``* (2 if bidirectional else 1)``."""
        last = self.hidden_size if self.last_hidden_size is None else self.last_hidden_size
        return last * (2 if self.bidirectional else 1)

    def recurrent_encoder(self, input_size: int) -> RecurrentEncoder:
        """The recurrent stack of this config over ``input_size`` features per step."""
        return RecurrentEncoder(input_size, self.hidden_size, num_layers=self.num_layers, cell=self.cell,
                                bidirectional=self.bidirectional, dropout=self.dropout, connection=self.connection,
                                last_hidden_size=self.last_hidden_size, weight_drop=self.weight_drop,
                                locked_dropout=self.locked_dropout, forget_bias=self.forget_bias)
