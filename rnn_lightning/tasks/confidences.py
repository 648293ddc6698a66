"""What ``tag(return_scores=True)`` and ``classify(return_probabilities=True)`` return, and what ``WritePredictions``
writes with ``scores=True``: one plain record per sentence or text.

Not frozen dataclasses: Lightning's predict loop moves outputs to the CPU by rebuilding each dataclass field by field,
which a frozen one refuses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScoredSpan:
    """A predicted span: tokens ``start..end`` (inclusive) of type ``label`` (e.g. ``"PER"``), and its probability.

    With a CRF, the posterior probability that these tokens carry exactly the predicted tags
    (``CRF.span_probabilities``; in IOB1/IOB2 an upper bound of the span's own probability, since a path with these
    tags may go on with ``I-X``). A softmax tagger's tokens are independent given the sentence, so there the same
    quantity is the product of the span's token probabilities; it is not what a CRF's product of marginals would
    be, which ignores that neighbouring tags depend on each other.
    """

    start: int
    end: int
    label: str
    probability: float


@dataclass
class ScoredPath:
    """One of the k best tag paths of a CRF tagger and its probability ``exp(path score - log Z)``."""

    tags: list[str]
    probability: float


@dataclass
class TaggedSentence:
    """A sentence's predicted tags with their confidences.

    Attributes:
        tags: the predicted tag of each token (what ``tag()`` returns by default).
        probabilities: each token's probability of its predicted tag: the CRF's marginal ``p(y_t = tag | sentence)``
            (forward-backward), or the softmax tagger's softmax.
        spans: the predicted spans with their probabilities (see :class:`ScoredSpan`), in order; ``None`` when the
            tagger has no span scheme (POS tags).
        best_paths: the ``top_k`` best paths, best first (fewer where the sentence has fewer allowed paths);
            ``None`` unless ``top_k`` was asked.
    """

    tags: list[str]
    probabilities: list[float]
    spans: list[ScoredSpan] | None = None
    best_paths: list[ScoredPath] | None = None


@dataclass
class Classification:
    """A text's predicted class (what ``classify()`` returns by default) and every class's softmax probability."""

    label: str
    probabilities: dict[str, float]
