"""Stop training on a non-finite gradient norm without making the host wait for the GPU at every step.

Reading a CUDA value on the host (``bool(t)``, ``.item()``) waits for every kernel queued before it. Done once per
training step, that wait lets the GPU run dry while Python prepares the next step. So on CUDA the norm is copied
to pinned host memory without blocking and read a step later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor


@dataclass
class _PendingCheck:
    step: int
    epoch: int
    norm: Tensor
    loss: Tensor | None


class FiniteGradientGuard:
    """Stop training when the total gradient norm is not finite.

    On CPU the check runs at once, before the optimizer step, so the weights stay finite. On CUDA the norm is
    copied without blocking and read at the next step's check (or before a checkpoint is saved, or at the end of the
    epoch): training stops one step later, with the bad step named, and its update has been applied. Waiting for
    the verdict at once would stall the GPU on every step. fp16 with a GradScaler skips overflowing steps itself.
    """

    def __init__(self) -> None:
        self._pending: _PendingCheck | None = None
        self._norm_host: Tensor | None = None  # pinned host float, filled by a non-blocking copy
        self._event: torch.cuda.Event | None = None

    def check(self, module: L.LightningModule, norm: Tensor, loss: Tensor | None) -> None:
        self.resolve()
        if getattr(module.trainer.precision_plugin, "scaler", None) is not None:
            return
        step, epoch = module.global_step, module.current_epoch
        if norm.device.type != "cuda":
            if not torch.isfinite(norm):
                raise _not_finite(step, epoch, norm, loss, applied=False)
            return
        if self._norm_host is None:
            self._norm_host, self._event = torch.empty((), dtype=norm.dtype, pin_memory=True), torch.cuda.Event()
        self._norm_host.copy_(norm, non_blocking=True)  # the norm itself: no kernel; reuse is safe, resolve() waited
        self._event.record()
        self._pending = _PendingCheck(step, epoch, norm, loss)

    def resolve(self) -> None:
        """Raise if the last deferred check found a non-finite norm (waits for that step's gradients only)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self._event.synchronize()
        if not math.isfinite(self._norm_host.item()):
            raise _not_finite(pending.step, pending.epoch, pending.norm, pending.loss, applied=True)


def _not_finite(step: int, epoch: int, norm: Tensor, loss: Tensor | None, applied: bool) -> FloatingPointError:
    where = (
        "That step's update was applied before the check came back (on a GPU it runs one step behind, so the GPU "
        "never waits for it): the weights may no longer be finite, so resume from the last checkpoint. "
        if applied else "Training stopped before the update, so the weights are still finite. "
    )
    return FloatingPointError(
        f"the gradient is not finite at step {step} (epoch {epoch}): gradient norm {float(norm)}, loss "
        f"{float(loss) if loss is not None else 'n/a'}. {where}Likely cause: exploding gradients or a too large "
        "learning rate. Clip the gradient norm (trainer.gradient_clip_val, e.g. 0.25) or lower the optimizer's lr; "
        "with fp16 use bf16-mixed precision."
    )
