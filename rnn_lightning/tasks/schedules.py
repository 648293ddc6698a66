"""The slanted triangular learning rate (STLR, Howard & Ruder 2018, eq. 3): a short linear warm-up to the peak, then a
long linear decay, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def slanted_triangular(step: int, *, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total_steps``, as a fraction of the peak.

    ``cut = floor(total_steps * cut_frac)`` (at least 1); ``p = step / cut`` before the cut, else ``1 - (step - cut) /
    (cut * (1 / cut_frac - 1))``; the fraction is ``(1 + p * (ratio - 1)) / ratio``: ``1 / ratio`` at the first step,
    1 at the cut, back to about ``1 / ratio`` at the end (and stays there past it).

    Example:
        >>> [round(slanted_triangular(t, total_steps=100), 4) for t in (0, 5, 10, 55, 100)]
        [0.0312, 0.5156, 1.0, 0.5156, 0.0312]
    """
    cut = max(1, math.floor(total_steps * cut_frac))
    p = step / cut if step < cut else 1 - (step - cut) / (cut * (1 / cut_frac - 1))
    return (1 + max(p, 0.0) * (ratio - 1)) / ratio


class SlantedTriangularLR(LambdaLR):
    """Each parameter group's learning rate follows :func:`slanted_triangular` from its own peak (its lr when the
    scheduler is built, so discriminative rates keep their ratios).

    Step it after every optimizer step (a task's ``configure_optimizers`` does: ``interval: step``). The number of
    steps is ``total_steps``, or, left ``None``, the Trainer's ``estimated_stepping_batches``, which the task's
    ``configure_optimizers`` fills in. From YAML: ``lr_scheduler: {class_path: rnn_lightning.SlantedTriangularLR}``.

    Args:
        optimizer: the optimizer whose groups' learning rates are the peaks.
        total_steps: optimizer steps of the whole run (``None``: the Trainer's estimate).
        cut_frac: the share of the steps spent warming up (ULMFiT: 0.1).
        ratio: how much smaller the lowest learning rate is than the peak (ULMFiT: 32).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.32)
        >>> schedule = SlantedTriangularLR(opt, total_steps=100)
        >>> opt.param_groups[0]["lr"]
        0.01
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, *, cut_frac: float = 0.1,
                 ratio: float = 32.0, last_epoch: int = -1) -> None:
        if not 0 < cut_frac < 1:
            raise ValueError(f"`cut_frac` must be in (0, 1), the warm-up's share of the steps, got {cut_frac!r} "
                             "(ULMFiT: 0.1).")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 1:
            raise ValueError(f"`ratio` must be a number >= 1, the peak over the lowest rate, got {ratio!r} "
                             "(ULMFiT: 32).")
        self.total_steps, self.cut_frac, self.ratio = None, cut_frac, ratio
        if total_steps is not None:
            self.fit_to(total_steps)
        super().__init__(optimizer, self._fraction, last_epoch)

    def fit_to(self, total_steps: int | float) -> None:
        """Set the run's number of optimizer steps (e.g. ``trainer.estimated_stepping_batches``)."""
        if isinstance(total_steps, bool) or not isinstance(total_steps, int | float) or not (
                math.isfinite(total_steps) and total_steps >= 1):
            raise ValueError(
                f"`total_steps` must be a positive number of optimizer steps, got {total_steps!r}. The slanted "
                "triangular schedule spreads over the whole run: give the Trainer `max_epochs` or `max_steps`."
            )
        self.total_steps = int(total_steps)

    def _fraction(self, step: int) -> float:
        if self.total_steps is None:
            if step == 0:  # the first step's rate is 1 / ratio of the peak whatever the length
                return 1 / self.ratio
            raise RuntimeError("SlantedTriangularLR does not know the run's length: pass `total_steps`, or let a "
                               "task's configure_optimizers fill it in from the Trainer.")
        return slanted_triangular(step, total_steps=self.total_steps, cut_frac=self.cut_frac, ratio=self.ratio)
