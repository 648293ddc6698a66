"""``Perplexity`` metric: accumulates a float64 NLL sum and an int64 token count across batches."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from rnn_lightning.compat import apply_keeping_dtypes
from rnn_lightning.functional.perplexity import (
    _is_integer_tensor,
    _mean_nll,
    _nll_sum_and_count,
    perplexity_from_nll,
)

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
    dtype = torch.int64 if integer else torch.float64  # a Python float straight to float64, not through float32
    value = value.detach().to(device) if isinstance(value, Tensor) else torch.tensor(value, dtype=dtype, device=device)
    if value.numel() != 1:
        raise ValueError(
            f"Perplexity.update: `{name}` must be a scalar (summed over the batch), got shape "
            f"{tuple(value.shape)}. Sum over tokens first (reduction='sum')."
        )
    return value.reshape(()).to(torch.int64 if integer else torch.float64)


def _check_values(nll_sum: Tensor, count: Tensor, accumulated: bool = False) -> None:
    """Raise unless ``nll_sum >= 0``, ``count >= 0``, and ``nll_sum == 0`` where ``count == 0``. Checked where the
    values are on the host (free); a GPU's at ``compute``, whose result is read on the host anyway."""
    if count.device.type != "cpu" and not accumulated:
        return
    where = "the accumulated " if accumulated else ""
    if bool(count < 0):
        raise ValueError(
            f"Perplexity: {where}`count` must be >= 0 (a number of scored tokens), got {int(count)}. Pass e.g. "
            "`(target != ignore_index).sum()`."
        )
    if bool(nll_sum < 0):
        raise ValueError(
            f"Perplexity: {where}`nll_sum` must be >= 0 (a sum of negative log-likelihoods), got {float(nll_sum)}. "
            "Pass the loss -log p (e.g. F.cross_entropy(..., reduction='sum')), not the log-likelihood log p."
        )
    if not accumulated and bool(count == 0) and bool(nll_sum != 0):
        raise ValueError(
            f"Perplexity.update: `nll_sum` is {float(nll_sum)} but `count` is 0: a loss over no token. Pass the "
            "number of tokens the loss was summed over (`(target != ignore_index).sum()`)."
        )


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
            _check_values(batch_nll, batch_count)
        # Out of place: a state reset under `torch.inference_mode` (Trainer.validate) is an inference tensor,
        # which an in-place add outside inference mode (validation inside `fit`) would reject.
        self.nll_sum = self.nll_sum + batch_nll.to(self.nll_sum.device)
        self.count = self.count + batch_count.to(self.count.device)

    def compute(self) -> Tensor:
        """Return the perplexity as a float32 scalar tensor (computed in float64).

        Raises:
            ValueError: If no token has been counted (no update, or every target was ``ignore_index``), or an update
                on a GPU (whose values are checked here, not at each update) passed a negative ``nll_sum``/``count``.
        """
        _check_values(self.nll_sum, self.count, accumulated=True)
        if not bool(self.count > 0):
            reason = (
                "called before any update"
                if not self.update_called
                else f"found no scored token (every target was ignore_index={self.ignore_index}, or empty)"
            )
            raise ValueError(f"Perplexity.compute() {reason}. Call `update` with at least one scored token.")
        return perplexity_from_nll(self.nll_sum, self.count)

    def mean_nll(self) -> Tensor:
        """The mean negative log-likelihood per token over all updates and processes (float64, nats).

        ``log(compute())``, without the float32 ``inf`` of a perplexity above ~88.7 nats: what a task logs as loss.

        Raises:
            ValueError: If no token has been counted.
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, process_group=self.process_group,
                               should_sync=self.sync_on_compute):
            _check_values(self.nll_sum, self.count, accumulated=True)
            return _mean_nll(self.nll_sum, self.count, caller="Perplexity.mean_nll")

    def _apply(self, fn: Any, exclude_state: Any = "") -> torch.nn.Module:
        # `.to(dtype)` and `set_dtype` would cast the states (even the int64 count, to float): keep their exact values
        # and dtypes, and follow only the device move.
        return apply_keeping_dtypes(self, super()._apply, fn, exclude_state, keep=("nll_sum", "count"))
