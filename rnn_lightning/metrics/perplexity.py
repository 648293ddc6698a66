"""``Perplexity`` metric: accumulates a float64 NLL sum and an int64 token count across batches."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from rnn_lightning.compat import apply_keeping_dtypes
from rnn_lightning.functional.perplexity import _is_integer_tensor, _nll_sum_and_count, perplexity_from_nll

__all__ = ["Perplexity"]


def _scalar(value: Any, name: str, integer: bool, device: torch.device) -> Tensor:
    """Validate a pre-summed ``nll_sum``/``count`` argument and return it as a detached scalar tensor."""
    if isinstance(value, bool) or not isinstance(value, (Tensor, int, float)):
        ok = False
    elif integer:
        ok = isinstance(value, int) or _is_integer_tensor(value)
    else:
        ok = not isinstance(value, Tensor) or value.is_floating_point()
    if not ok:
        kind = "an integer token count (int or integer tensor)" if integer else "a float (tensor) in nats"
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        fix = "(target != ignore_index).sum()" if integer else "F.cross_entropy(..., reduction='sum')"
        raise TypeError(f"Perplexity.update: `{name}` must be {kind}, got {got}. Pass e.g. `{fix}`.")
    value = torch.as_tensor(value, device=device).detach()
    if value.numel() != 1:
        raise ValueError(
            f"Perplexity.update: `{name}` must be a scalar (summed over the batch), got shape "
            f"{tuple(value.shape)}. Sum over tokens first (reduction='sum')."
        )
    return value.reshape(()).to(torch.int64 if integer else torch.float64)


class Perplexity(Metric):
    """Perplexity ``exp(sum NLL / token count)`` over all updates, stable for float16/bfloat16 logits.

    Unlike ``torchmetrics.text.Perplexity`` (softmax in the input dtype, then log), the NLL comes from
    ``log_softmax`` in float32, so float16 logits do not give ``inf``. The states are a float64 ``nll_sum``
    and an int64 ``count``, both summed across processes. They keep their dtypes under ``.to(dtype)`` and
    ``set_dtype`` (e.g. Lightning's ``"16-true"`` precision), where an fp16 sum would overflow at 65504.

    ``update`` takes either ``logits`` and ``target`` (positionally, as ``metric(logits, target)`` does), or
    an already summed ``nll_sum`` and ``count`` (keywords), so a task that computed
    ``F.cross_entropy(..., reduction="sum")`` for its loss does not run ``log_softmax`` twice.

    Args:
        ignore_index: Target value (e.g. the padding id) that is neither scored nor counted. Only used by
            the ``logits``/``target`` form of ``update``.
        kwargs: Passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ``dist_sync_on_step``, ...).

    Example:
        >>> import math, torch
        >>> metric = Perplexity(ignore_index=-100)
        >>> metric.update(torch.zeros(2, 3, 4), torch.tensor([[0, 1, 2], [3, 0, -100]]))  # (B, T, V), (B, T)
        >>> metric.update(nll_sum=torch.tensor(3 * math.log(4.0)), count=3)
        >>> metric.compute()  # every token cost log(4)
        tensor(4.)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 1.0

    nll_sum: Tensor
    count: Tensor

    def __init__(self, ignore_index: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"Perplexity: `ignore_index` must be an int or None, got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        logits: Tensor | None = None,
        target: Tensor | None = None,
        *,
        nll_sum: Tensor | float | None = None,
        count: Tensor | int | None = None,
    ) -> None:
        """Add a batch, given as ``logits`` (..., V) and ``target`` (...), or as ``nll_sum`` and ``count``."""
        from_logits = logits is not None or target is not None
        from_nll = nll_sum is not None or count is not None
        if from_logits == from_nll:
            got = "both forms" if from_logits else "neither"
            raise ValueError(
                f"Perplexity.update: pass either `logits` and `target`, or `nll_sum` and `count`, got {got}. "
                "Use `update(logits, target)` or `update(nll_sum=loss_sum, count=n_tokens)`."
            )
        pair = {"logits": logits, "target": target} if from_logits else {"nll_sum": nll_sum, "count": count}
        missing = [name for name, value in pair.items() if value is None]
        if missing:
            a, b = pair
            raise ValueError(f"Perplexity.update: `{missing[0]}` is missing. Pass both `{a}` and `{b}`.")
        if from_logits:
            batch_nll, batch_count = _nll_sum_and_count(
                logits.detach(), target, self.ignore_index, caller="Perplexity.update"
            )
        else:
            batch_nll = _scalar(nll_sum, "nll_sum", integer=False, device=self.nll_sum.device)
            batch_count = _scalar(count, "count", integer=True, device=self.count.device)
        # Out of place: a state reset under `torch.inference_mode` (Trainer.validate) is an inference tensor,
        # which an in-place add outside inference mode (validation inside `fit`) would reject.
        self.nll_sum = self.nll_sum + batch_nll.to(self.nll_sum.device)
        self.count = self.count + batch_count.to(self.count.device)

    def compute(self) -> Tensor:
        """Return the perplexity as a float32 scalar tensor (computed in float64).

        Raises:
            ValueError: If no token has been counted (no update, or every target was ``ignore_index``).
        """
        if not bool(self.count > 0):
            reason = (
                "called before any update"
                if not self.update_called
                else f"found no scored token (every target was ignore_index={self.ignore_index}, or empty)"
            )
            raise ValueError(f"Perplexity.compute() {reason}. Call `update` with at least one scored token.")
        return perplexity_from_nll(self.nll_sum, self.count)

    def _apply(self, fn: Any, exclude_state: Any = "") -> torch.nn.Module:
        # `.to(dtype)` and `set_dtype` would cast the states (even the int64 count, to float): keep their exact values
        # and dtypes, and follow only the device move.
        return apply_keeping_dtypes(self, super()._apply, fn, exclude_state, keep=("nll_sum", "count"))
