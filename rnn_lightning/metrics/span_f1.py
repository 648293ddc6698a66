"""``SpanF1`` metric: span-level (entity) F1 of sequence tagging, equal to conlleval and seqeval."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric

from rnn_lightning.compat import apply_keeping_dtypes
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.functional.span_f1 import (
    _averaged,
    _check,
    _check_average,
    _check_mode,
    _span_counts,
    label_table,
    span_f1_from_counts,
)
from rnn_lightning.functional.tag_schemes import allowed_transitions

__all__ = ["SpanF1"]


class SpanF1(Metric):
    """Span F1 of a tagger over all updates, as conlleval and seqeval compute it (seqeval's argument names).

    Spans are decoded from the predicted and gold tags with conlleval's rules (IOB1, IOB2, IOBES and BILOU
    tags; ill-formed predictions decode as conlleval does), or with seqeval's strict rules (``mode="strict"``:
    only the well-formed spans of ``scheme`` count), and a predicted span counts as correct when a gold span has
    the same sentence, start, end and type. The state is an int64 ``(num_types, 3)`` tensor of
    ``[correct, predicted, gold]`` counts per type, summed across processes.

    Args:
        labels: The tag of each label id, e.g. ``["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]`` (the model's
            output classes, in order).
        average: How to average over types: ``"micro"`` (of the summed counts: conlleval's and seqeval's headline
            number), ``"macro"`` (the mean over the types with a predicted or gold span) or ``"weighted"`` (by
            each type's gold spans). :meth:`report` also gives the F1 of each type.
        mode: None (conlleval's rules, seqeval's default) or ``"strict"`` (seqeval's strict mode).
        scheme: With ``mode="strict"``, the scheme of the labels: ``"IOB2"``, ``"IOBES"`` or ``"BILOU"`` (or
            seqeval's class of that name).
        kwargs: Passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ``dist_sync_on_step``, ...).

    Raises:
        ValueError: If a label is malformed or repeated, ``average`` is not one of the three, or ``mode`` and
            ``scheme`` are not a valid pair (in strict mode, every label must use a prefix of ``scheme``).

    Example:
        >>> import torch
        >>> metric = SpanF1(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        >>> target = torch.tensor([[1, 2, 0, 3], [3, 4, -100, -100]])  # PER [0, 1], LOC [3, 3] | LOC [0, 1]
        >>> preds = torch.tensor([[1, 2, 0, 1], [3, 4, 0, 0]])  # PER [0, 1], PER [3, 3] | LOC [0, 1]
        >>> metric.update(preds, target)  # mask: target != -100
        >>> metric.compute()  # precision 2/3, recall 2/3
        tensor(0.6667)
        >>> metric.report()["f1_per_type"]
        {'LOC': 0.6666666666666666, 'PER': 0.6666666666666666}
        >>> strict = SpanF1(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], mode="strict", scheme="IOB2")
        >>> strict.update(torch.tensor([[2, 2, 0, 3]]), torch.tensor([[1, 2, 0, 3]]))  # I-PER I-PER: no span
        >>> strict.report()  # default mode would count PER [0, 1] as correct
        {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'f1_per_type': {'LOC': 1.0, 'PER': 0.0}}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    counts: Tensor

    def __init__(
        self,
        labels: Sequence[str],
        average: Literal["micro", "macro", "weighted"] = "micro",
        *,
        mode: Literal["strict"] | None = None,
        scheme: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_average(average, "SpanF1")
        scheme = _check_mode(mode, scheme, "SpanF1")
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise ValueError(
                f"SpanF1: `labels` must be a sequence of tags (one per label id), got {labels!r}. Pass e.g. "
                "['O', 'B-PER', 'I-PER']."
            )
        repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
        if repeated:
            raise ValueError(
                f"SpanF1: `labels` must name each label id once, got {repeated} more than once. Pass the model's "
                "label list, one tag per output class."
            )
        try:
            prefixes, types, type_names = label_table(labels)
        except ValueError as error:
            raise ValueError(f"SpanF1: {str(error).removeprefix('label_table: ')}") from None
        if scheme is not None:
            try:  # the scheme's prefixes, as the CRF masks read them
                allowed_transitions(labels, scheme)
            except ValueError as error:
                raise ValueError(f"SpanF1: {str(error).removeprefix('allowed_transitions: ')}") from None
        self.labels = list(labels)
        self.average = average
        self.mode = mode
        self.scheme = scheme
        self.type_names = type_names
        self.register_buffer("prefixes", prefixes, persistent=False)  # (C,)
        self.register_buffer("types", types, persistent=False)  # (C,)
        self.add_state("counts", default=torch.zeros(len(type_names), 3, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch of sentences.

        Args:
            preds: Predicted label ids ``(B, T)``, or scores ``(B, T, C)`` (their argmax is taken).
            target: Gold label ids ``(B, T)``; ``-100`` marks positions to skip (padding, non-first word pieces).
            mask: Optional bool ``(B, T)``, True at tokens; positions where ``target == -100`` are skipped too.
        """
        if isinstance(preds, Tensor) and (preds.is_floating_point() or preds.ndim == 3):
            if preds.ndim != 3 or preds.shape[-1] != len(self.labels):
                raise ValueError(
                    f"SpanF1.update: score `preds` must have shape (B, T, C={len(self.labels)}) (one score per "
                    f"label), got {tuple(preds.shape)}. Pass the tagger's logits, or label ids of shape (B, T)."
                )
            preds = preds.argmax(-1)  # (B, T)
        if not isinstance(target, Tensor):
            raise TypeError(f"SpanF1.update: `target` must be a tensor of label ids, got {type(target).__name__}.")
        if isinstance(preds, Tensor) and preds.shape != target.shape:
            raise ValueError(
                f"SpanF1.update: `preds` and `target` must have the same shape (B, T), got {tuple(preds.shape)} and "
                f"{tuple(target.shape)}. Pass one row per sentence for both, padded to the same length."
            )
        keep = target != IGNORE_INDEX  # (B, T)
        if mask is not None:
            if isinstance(mask, Tensor) and mask.shape != target.shape:
                raise ValueError(
                    f"SpanF1.update: `mask` must have the shape of `target` (B, T), got {tuple(mask.shape)} and "
                    f"{tuple(target.shape)}. Pass one row per sentence."
                )
            _check({"target": target}, mask, self.prefixes, self.types, "SpanF1.update")
            keep = keep & mask
        _check({"preds": preds, "target": target}, keep, self.prefixes, self.types, "SpanF1.update")
        num_types = len(self.type_names)
        counts = _span_counts(preds, target, keep, self.prefixes, self.types, num_types, "SpanF1.update", self.scheme)
        # Out of place: a state reset under `torch.inference_mode` (Trainer.validate) is an inference tensor,
        # which an in-place add outside inference mode (validation inside `fit`) would reject.
        self.counts = self.counts + counts.to(self.counts.device)

    def compute(self) -> Tensor:
        """F1 over all updates (averaged as ``average`` says) as a float32 scalar tensor (0 without any span)."""
        return _averaged(self.counts, self.average)[2].float()

    def report(self) -> dict[str, Any]:
        """Precision, recall and F1 (averaged as ``average`` says), and the F1 of each type, as Python floats
        (seqeval's values).

        Returns:
            ``{"precision": float, "recall": float, "f1": float, "f1_per_type": {type_name: float}}``.
        """
        # As compute() does outside `forward`: sum the counts over all processes first (then restore this process's).
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            return span_f1_from_counts(self.counts, self.type_names, average=self.average)

    def _apply(self, fn: Any, exclude_state: Any = "") -> torch.nn.Module:
        # `.to(dtype)` and `set_dtype` would cast the states and buffers: keep the int64 counts (and the int64 label
        # tables) exact, and follow only the device move.
        return apply_keeping_dtypes(self, super()._apply, fn, exclude_state, keep=("counts", "prefixes", "types"))
