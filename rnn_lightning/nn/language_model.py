"""RNN language-model network: embedding -> recurrent encoder -> (projection) -> vocabulary logits."""

from __future__ import annotations

from torch import Tensor, nn

from rnn_lightning.nn.encoder import Cell, Connection, RecurrentEncoder, State, check_dropout, check_token_id


class RNNLanguageModelNet(nn.Module):
    """Predicts the next token at every step: p(x_{t+1} | x_1..x_t).

    Args:
        vocab_size: number of tokens (V).
        embedding_dim: size of the token embeddings (E).
        hidden_size: size of the recurrent state (H).
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        dropout_embedding: dropout on the embedded inputs.
        dropout_between: dropout between stacked recurrent layers.
        dropout_output: dropout on the last layer's outputs, before the decoder.
        tie_weights: share the embedding matrix with the output layer (Press & Wolf 2017, Inan et al. 2017);
            when ``hidden_size != embedding_dim`` a linear projection H -> E comes first.
        pad_id: embedding row kept at zero for padding (``None`` for none).
        bidirectional: refused; a language model must not see the future (see the error).
        connection: how stacked layers join: ``"none"``, or ``"residual"`` / ``"dense"`` / ``"highway"`` direct
            connections for deep stacks (``num_layers >= 2``; see :mod:`rnn_lightning.nn.stack`).

    Example:
        >>> import torch
        >>> net = RNNLanguageModelNet(vocab_size=50, embedding_dim=8, hidden_size=16, tie_weights=True)
        >>> logits, state = net(torch.randint(0, 50, (2, 7)))
        >>> tuple(logits.shape)
        (2, 7, 50)
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        cell: Cell = "lstm",
        dropout_embedding: float = 0.0,
        dropout_between: float = 0.0,
        dropout_output: float = 0.0,
        tie_weights: bool = False,
        pad_id: int | None = None,
        bidirectional: bool = False,
        connection: Connection = "none",
    ) -> None:
        super().__init__()
        if bidirectional:
            raise ValueError(
                "`bidirectional=True` is not allowed for a language model: the backward direction reads the "
                "tokens to the right, so the model would see the word it must predict. Use bidirectional "
                "encoders for tagging or classification, and `bidirectional=False` here."
            )
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"`vocab_size` must be an integer >= 2, got {vocab_size!r}.")
        for name, p in (("dropout_embedding", dropout_embedding), ("dropout_output", dropout_output)):
            check_dropout(name, p)
        check_token_id("pad_id", pad_id, vocab_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout_in = nn.Dropout(dropout_embedding)
        self.encoder = RecurrentEncoder(
            embedding_dim, hidden_size, num_layers, cell, dropout=dropout_between, connection=connection
        )
        self.dropout_out = nn.Dropout(dropout_output)
        needs_projection = tie_weights and hidden_size != embedding_dim
        self.projection = nn.Linear(hidden_size, embedding_dim, bias=False) if needs_projection else nn.Identity()
        self.decoder = nn.Linear(embedding_dim if tie_weights else hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight  # (V, E), one parameter
        self.vocab_size = vocab_size
        self._init_weights()

    def _init_weights(self, scale: float = 0.1) -> None:
        # Uniform(-0.1, 0.1) for embedding and decoder, as pytorch/examples and Zaremba et al. do.
        nn.init.uniform_(self.embedding.weight, -scale, scale)
        if self.embedding.padding_idx is not None:
            self.embedding.weight.data[self.embedding.padding_idx].zero_()
        nn.init.zeros_(self.decoder.bias)
        if self.decoder.weight is not self.embedding.weight:
            nn.init.uniform_(self.decoder.weight, -scale, scale)

    def forward(self, tokens: Tensor, state: State | None = None, last_only: bool = False) -> tuple[Tensor, State]:
        """Args: tokens (B, T) ids; state from the previous window or ``None``; ``last_only``: decode only the
        last step (generation needs no logits for the prompt).

        Returns: logits (B, T, V), or (B, 1, V) with ``last_only``, and the final recurrent state.
        """
        x = self.dropout_in(self.embedding(tokens))  # (B, T, E)
        h, state = self.encoder(x, state)  # (B, T, H)
        if last_only:
            h = h[:, -1:]  # (B, 1, H)
        h = self.projection(self.dropout_out(h))  # (B, T, H or E)
        return self.decoder(h), state  # (B, T, V)
