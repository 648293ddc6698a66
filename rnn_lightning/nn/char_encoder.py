"""Character features of words: a bidirectional RNN over each word's characters (Lample et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_lightning.nn.encoder import Cell, RecurrentEncoder


class CharacterEncoder(nn.Module):
    """chars (B, T, L) -> one vector per word (B, T, 2H): the final states of a BiRNN read over its characters.

    The left-to-right state after the last character sees the suffix, the right-to-left one after the first
    character sees the prefix: what tells a tagger that an unseen ``Kowalczyk`` is a name or ``rebuilding`` a
    verb. Padding words (all characters ``pad_id``) get zeros.

    Args:
        num_chars: size of the character vocabulary (ids ``0 .. num_chars - 1``).
        embedding_dim: character embedding size.
        hidden_size: state size per direction (H).
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        pad_id: the padding character id.

    Example:
        >>> encoder = CharacterEncoder(num_chars=30, embedding_dim=8, hidden_size=5)
        >>> chars = torch.tensor([[[3, 4, 5], [6, 0, 0], [0, 0, 0]]])  # 1 sentence: "abc", "d", padding
        >>> vectors = encoder(chars)
        >>> tuple(vectors.shape), bool(vectors[0, 2].eq(0).all())
        ((1, 3, 10), True)
    """

    def __init__(
        self, num_chars: int, *, embedding_dim: int = 25, hidden_size: int = 25, cell: Cell = "lstm", pad_id: int = 0
    ) -> None:
        super().__init__()
        if not isinstance(num_chars, int) or num_chars < 2:
            raise ValueError(f"`num_chars` must be an integer >= 2 (padding and a character), got {num_chars!r}.")
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=pad_id)
        self.encoder = RecurrentEncoder(embedding_dim, hidden_size, cell=cell, bidirectional=True)
        self.output_dim, self.pad_id = self.encoder.output_dim, pad_id

    def forward(self, chars: Tensor, lengths: Tensor | None = None) -> Tensor:
        """chars (B, T, L), right-padded with ``pad_id`` -> (B, T, 2H), zeros for padding words.

        ``lengths`` (B, T): each word's number of characters, on the CPU (see :func:`word_lengths`); computed from
        ``chars`` when ``None``, which on a GPU makes the host wait for it (packing needs lengths on the host).
        """
        if chars.ndim != 3:
            raise ValueError(f"`chars` must have shape (B, T, L), got {tuple(chars.shape)}.")
        batch, steps, width = chars.shape
        if lengths is None:
            lengths = word_lengths(chars, self.pad_id)
        elif lengths.shape != (batch, steps):
            raise ValueError(
                f"`lengths` must have the (B, T) = {(batch, steps)} shape of `chars`, got {tuple(lengths.shape)}."
            )
        words = chars.reshape(batch * steps, width)  # (W, L)
        # Padding words run as one pad character (no host-side selection) and are zeroed afterwards.
        _, state = self.encoder(self.embedding(words), lengths=lengths.reshape(-1).clamp(min=1))
        final = state[0] if isinstance(state, tuple) else state  # (2, W, H): each direction's final state
        vectors = torch.cat([final[0], final[1]], dim=1)  # (W, 2H)
        real = words[:, 0] != self.pad_id  # (W,): a word has characters from its first position on
        return (vectors * real.unsqueeze(1)).view(batch, steps, -1)


def word_lengths(chars: Tensor, pad_id: int = 0) -> Tensor:
    """chars (B, T, L) right-padded with ``pad_id`` -> (B, T) characters per word (0 for padding words)."""
    return (chars != pad_id).sum(-1)
