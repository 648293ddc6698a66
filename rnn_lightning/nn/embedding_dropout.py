"""Embedding dropout: drop whole words (rows of the embedding matrix) for one forward call.

Gal & Ghahramani (2016) and AWD-LSTM (Merity et al. 2017, Sec. 4.3; salesforce/awd-lstm-lm
``embed_regularize.py``): each word type is dropped with probability ``p`` for the whole call, so every occurrence
of a dropped word in the batch embeds to zeros, and the kept rows are scaled by ``1 / (1 - p)``. AWD masks the
whole (V, E) matrix; masking the looked-up rows with the same per-word mask gives the same output and gradient
without a (V, E) temporary. The parameter itself is never changed, so a decoder tied to it uses the undropped
weight, as in AWD.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from rnn_lightning.nn.checks import check_dropout

__all__ = ["EmbeddingDropout"]


class EmbeddingDropout(nn.Embedding):
    """``torch.nn.Embedding`` that drops whole words in training; a drop-in replacement (same ``state_dict``).

    Args:
        num_embeddings: vocabulary size (V).
        embedding_dim: embedding size (E).
        *args: as ``torch.nn.Embedding`` (``padding_idx``, ...).
        dropout: probability of dropping each word type for one forward call (AWD-LSTM: 0.1).
        **kwargs: as ``torch.nn.Embedding``.

    Example:
        >>> import torch
        >>> emb = EmbeddingDropout(10, 4, dropout=0.5)
        >>> out = emb(torch.tensor([[3, 3, 3, 5]]))  # (1, 4, 4)
        >>> bool((out[0, 0] == out[0, 1]).all() and (out[0, 1] == out[0, 2]).all())  # one fate per word
        True
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *args: Any, dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_embeddings, embedding_dim, *args, **kwargs)
        check_dropout("dropout", dropout)
        self.dropout = float(dropout)

    def forward(self, tokens: Tensor) -> Tensor:
        """Args: tokens (...) ids. Returns: (..., E)."""
        embedded = super().forward(tokens)  # (..., E)
        if not self.training or self.dropout == 0.0:
            return embedded
        keep = 1.0 - self.dropout
        word_scale = self.weight.new_empty(self.num_embeddings).bernoulli_(keep) / keep  # (V,), one per call
        return embedded * word_scale[tokens].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.dropout}"
