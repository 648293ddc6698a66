"""The language model's output layer: the full softmax, or the adaptive softmax for large vocabularies.

Both give the same two things, so the network and the task read them one way:
- ``logits(h)``: (B, T, V) scores whose softmax is the model's distribution. The adaptive softmax returns its
  normalised log-probabilities (valid logits: ``log_softmax`` leaves them unchanged), so sampling, the cache
  pointer and anything else that reads logits works unchanged;
- ``nll(h, targets)``: (B, T) exact negative log-likelihood of the targets, without the full (B, T, V) scores
  where the layer can avoid them (the adaptive softmax's training step).

The adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs") puts the ``cutoffs[0]`` most
frequent words and one entry per tail cluster in a head softmax, and each tail cluster's words in a smaller softmax
over a projection of ``h`` reduced by ``div_value`` per cluster. Ids must be ordered by decreasing frequency for
this to save time: the word tokenizer of :mod:`rnn_lightning.data.tokenization` orders them so (after its four
special tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_lightning.constants import IGNORE_INDEX

__all__ = ["AdaptiveSoftmax", "SoftmaxOutput", "check_adaptive_softmax"]


class SoftmaxOutput(nn.Linear):
    """The full softmax: a linear map ``h -> logits`` over the whole vocabulary (weights ``(V, in_features)``)."""

    def logits(self, h: Tensor) -> Tensor:
        """(B, T, in_features) -> (B, T, V) logits."""
        return self(h)

    def nll(self, h: Tensor, targets: Tensor, *, reduction: str = "none") -> Tensor:
        """(B, T, in_features), (B, T) ids -> (B, T) float32 NLL (float64 for float64 ``h``), 0 where ignored;
        ``reduction="sum"``: their () sum, summed inside the cross-entropy as a plain training loop does."""
        logits = self(h)  # (B, T, V)
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        nll = F.cross_entropy(logits.flatten(0, -2).to(dtype), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction=reduction)  # (B*T,) or (): rows of contiguous scores, the fast layout
        return nll.view(targets.shape) if reduction == "none" else nll


def check_adaptive_softmax(cutoffs: list[int], div_value: float, *, vocab_size: int, in_features: int) -> None:
    """Raise a ``ValueError`` naming the argument for cutoffs or a ``div_value`` the layer cannot use."""
    example = "e.g. [20000, 40000, 200000] for WikiText-103's 267,735 words"
    if (not isinstance(cutoffs, list | tuple) or not cutoffs
            or any(isinstance(c, bool) or not isinstance(c, int) for c in cutoffs)):
        raise ValueError(f"`adaptive_softmax_cutoffs` must be a non-empty list of integers, got {cutoffs!r}; "
                         f"{example}, or None for the full softmax.")
    if list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab_size:
        raise ValueError(f"`adaptive_softmax_cutoffs` must increase strictly within [1, vocab_size={vocab_size}), "
                         f"got {list(cutoffs)}: each is the first id of a cluster (ids sorted by frequency). Use "
                         f"cutoffs below the vocabulary size, {example}.")
    if isinstance(div_value, bool) or not isinstance(div_value, int | float) or not div_value >= 1:
        raise ValueError(f"`adaptive_softmax_div_value` must be a number >= 1, got {div_value!r}: each tail cluster's "
                         "projection is the previous one's size divided by it (Grave et al. use 4).")
    smallest = int(in_features // div_value ** len(cutoffs))
    if smallest < 1:
        raise ValueError(f"`adaptive_softmax_div_value`={div_value} with {len(cutoffs)} tail clusters shrinks the "
                         f"output layer's {in_features} features to {smallest} in the last cluster. Use fewer cutoffs "
                         "or a smaller div_value.")


def _promote(x: Tensor) -> Tensor:
    """At least float32: bf16/fp16 matmul outputs become float32 before their log_softmax; float64 stays."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _to_float32(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    return _promote(output)


class _TiedHead(nn.Module):
    """The head's weights with its shortlist rows shared with the input embedding (the word ids < ``shortlist``)."""

    def __init__(self, embedding_weight: nn.Parameter, *, shortlist: int, n_clusters: int) -> None:
        super().__init__()
        self.shortlist_weight = embedding_weight  # (V, E): the same parameter as the embedding's
        self.cluster_weight = nn.Parameter(torch.empty(n_clusters, embedding_weight.shape[1]))  # (K, E)
        self.shortlist = shortlist
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.cluster_weight, -0.1, 0.1)  # the embedding's own range (the shared rows)

    def forward(self, h: Tensor) -> Tensor:
        """(N, E) -> (N, shortlist + K) head scores."""
        return F.linear(h, torch.cat([self.shortlist_weight[: self.shortlist], self.cluster_weight]))


class AdaptiveSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """:class:`torch.nn.AdaptiveLogSoftmaxWithLoss` with the output layer's two methods, exact in mixed precision.

    Under autocast its matmuls run in bf16/fp16 and every ``log_softmax`` in float32 (the torch layer alone keeps
    them in bf16 on the CPU and fails on float32 inputs).

    Args:
        in_features: size of the features it reads (E with tied weights).
        vocab_size: number of classes (V).
        cutoffs: the first id of each tail cluster, increasing, < V (ids sorted by decreasing frequency).
        div_value: each tail cluster's projection is ``in_features // div_value ** (i + 1)`` wide.
        tied_embedding: the input embedding's ``(V, in_features)`` weight: the head's rows of the ``cutoffs[0]``
            most frequent words are then its rows (the tail clusters' words read narrower projections and are not
            tied).

    Example:
        >>> layer = AdaptiveSoftmax(8, 50, cutoffs=[10, 30], div_value=2.0)
        >>> log_p = layer.logits(torch.randn(2, 3, 8))
        >>> tuple(log_p.shape), bool(torch.allclose(log_p.exp().sum(-1), torch.ones(2, 3)))
        ((2, 3, 50), True)
    """

    def __init__(self, in_features: int, vocab_size: int, *, cutoffs: list[int], div_value: float = 4.0,
                 tied_embedding: nn.Parameter | None = None) -> None:
        check_adaptive_softmax(cutoffs, div_value, vocab_size=vocab_size, in_features=in_features)
        super().__init__(in_features, vocab_size, list(cutoffs), div_value=float(div_value))
        if tied_embedding is not None:
            self.head = _TiedHead(tied_embedding, shortlist=self.shortlist_size, n_clusters=self.n_clusters)
        for module in (self.head, *self.tail):
            module.register_forward_hook(_to_float32)

    def logits(self, h: Tensor) -> Tensor:
        """(B, T, in_features) -> (B, T, V) log-probabilities (each row's exp sums to one)."""
        return self.log_prob(_promote(h).flatten(0, -2)).view(*h.shape[:-1], self.n_classes)

    def nll(self, h: Tensor, targets: Tensor, *, reduction: str = "none") -> Tensor:
        """(B, T, in_features), (B, T) ids -> (B, T) NLL, 0 where ignored (``reduction="sum"``: their () sum); only
        each target's clusters run."""
        scored = targets != IGNORE_INDEX  # (B, T)
        flat_targets = targets.masked_fill(~scored, 0).flatten()  # ignored rows score id 0 (a head word), dropped
        log_p = self(_promote(h).flatten(0, -2), flat_targets).output  # (B*T,)
        # Every tail cluster joins the graph (zero gradient where no target is in it): DDP reduces a gradient for
        # every parameter at every step, and a rank's window may hold no word of a rare cluster.
        untouched = sum(weight.flatten()[0] for weight in self.tail.parameters()) * 0.0
        nll = (untouched - log_p).view(targets.shape).masked_fill(~scored, 0.0)
        return nll.sum() if reduction == "sum" else nll
