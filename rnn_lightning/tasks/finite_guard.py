"""Stop training that diverged, without making the host wait for the GPU at every step.

Two signs of divergence: a non-finite gradient norm (checked at every optimizer step), and a training loss that
stays non-finite or far above a uniform guess's (checked on the logged steps). The second catches a run whose
weights blew up until its logits saturate: the gradients stay finite there (softmax saturates), so the loss sits at
huge values while the run goes on to write checkpoints of a useless model.

Reading a CUDA value on the host (``bool(t)``, ``.item()``) waits for every kernel queued before it. Done once per
training step, that wait lets the GPU run dry while Python prepares the next step. So on CUDA the norm and the loss
are copied to pinned host memory without blocking and read a step later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor

# A loss this many times a uniform guess's (log of the number of classes) gives the right class V^-10 of the
# probability a uniform guess gives it, on average: a learning model never passes through it (it starts at the
# uniform loss and goes down), a diverged one with saturated logits sits far above it (a loss in the millions).
# Ten leaves room for a short spike of a model that will recover, which the patience below also absorbs.
DIVERGED_LOSS_FACTOR = 10.0
# Consecutive logged checks (one every `log_every_n_steps`) with a loss above the ceiling, or not finite, before
# training stops: one bad batch or a transient spike does not stop a run.
DIVERGED_CHECKS = 3


@dataclass
class _PendingCheck:
    step: int
    epoch: int
    norm: Tensor | None  # None: not checked (a GradScaler skips overflowing steps itself)
    loss: Tensor | None
    ceiling: float | None
    logged: bool  # whether the loss is checked for divergence (a logged step)


class FiniteGradientGuard:
    """Stop training when the total gradient norm is not finite, or the training loss has diverged.

    On CPU the check runs at once, before the optimizer step, so after a non-finite gradient the weights stay
    finite. On CUDA the values are copied without blocking and read at the next step's check (or before a checkpoint
    is saved, or at the end of the epoch): training stops one step later, with the bad step named, and its update has
    been applied. Waiting for the verdict at once would stall the GPU on every step. fp16 with a GradScaler skips
    overflowing steps itself, so its gradient norm is not checked.

    The loss of a logged step (its mean over processes, so that every process stops at the same step) counts as
    diverged when it is not finite or above ``DIVERGED_LOSS_FACTOR`` times ``uniform_loss``; training
    stops after ``DIVERGED_CHECKS`` such checks in a row.
    """

    def __init__(self) -> None:
        self._pending: _PendingCheck | None = None
        self._host: dict[str, Tensor] = {}  # pinned host scalars ("norm", "loss"), filled by non-blocking copies
        self._event: torch.cuda.Event | None = None
        self._diverged: list[tuple[int, float]] = []  # the consecutive diverged checks so far: (step, loss)

    def check(
        self, module: L.LightningModule, norm: Tensor, loss: Tensor | None, uniform_loss: float | None = None,
        logged: bool = True,
    ) -> None:
        """Check this optimizer step's gradient ``norm`` and, on a ``logged`` step, its training ``loss`` against the
        loss of a uniform guess, ``uniform_loss`` (``None``: only a non-finite loss counts)."""
        self.resolve()
        if logged and loss is not None and module.trainer.world_size > 1:
            loss = module.trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")  # the same on each rank
        scaled = getattr(module.trainer.precision_plugin, "scaler", None) is not None
        ceiling = None if uniform_loss is None else DIVERGED_LOSS_FACTOR * uniform_loss
        check = _PendingCheck(module.global_step, module.current_epoch, None if scaled else norm, loss, ceiling, logged)
        if norm.device.type != "cuda":
            self._verdict(check, float(norm), None if loss is None else float(loss), applied=False)
            return
        self._event = self._event or torch.cuda.Event()
        for name, value in (("norm", norm), ("loss", loss)):
            if value is not None:
                self._host_copy(name, value)
        self._event.record()
        self._pending = check

    def _host_copy(self, name: str, value: Tensor) -> None:
        host = self._host.get(name)
        if host is None or host.dtype != value.dtype:
            host = self._host[name] = torch.empty((), dtype=value.dtype, pin_memory=True)
        host.copy_(value.reshape(()), non_blocking=True)  # a copy, no kernel; reuse is safe, resolve() waited

    def resolve(self) -> None:
        """Raise if the last deferred check found divergence (waits for that step's values only)."""
        check, self._pending = self._pending, None
        if check is None:
            return
        self._event.synchronize()
        loss = self._host["loss"].item() if check.loss is not None else None
        self._verdict(check, self._host["norm"].item(), loss, applied=True)

    def _verdict(self, check: _PendingCheck, norm: float, loss: float | None, applied: bool) -> None:
        if check.norm is not None and not math.isfinite(norm):
            raise _not_finite(check.step, check.epoch, norm, loss, applied)
        if loss is None or not check.logged:
            return
        if math.isfinite(loss) and (check.ceiling is None or loss <= check.ceiling):
            self._diverged.clear()
            return
        self._diverged.append((check.step, loss))
        if len(self._diverged) >= DIVERGED_CHECKS:
            raise _diverged(self._diverged, check.epoch, check.ceiling)


def _not_finite(step: int, epoch: int, norm: float, loss: float | None, applied: bool) -> FloatingPointError:
    where = (
        "That step's update was applied before the check came back (on a GPU it runs one step behind, so the GPU "
        "never waits for it): the weights may no longer be finite, so resume from the last checkpoint. "
        if applied else "Training stopped before the update, so the weights are still finite. "
    )
    return FloatingPointError(
        f"the gradient is not finite at step {step} (epoch {epoch}): gradient norm {norm}, loss "
        f"{loss if loss is not None else 'n/a'}. {where}Likely cause: exploding gradients or a too large "
        "learning rate. Clip the gradient norm (trainer.gradient_clip_val, e.g. 0.25) or lower the optimizer's lr; "
        "with fp16 use bf16-mixed precision."
    )


def _diverged(checks: list[tuple[int, float]], epoch: int, ceiling: float | None) -> FloatingPointError:
    steps = ", ".join(f"step {step}: {loss:.4g}" for step, loss in checks)
    above = "not finite" if ceiling is None else (
        f"not finite or above {DIVERGED_LOSS_FACTOR:g} x a uniform guess's loss = {ceiling:.4g} nats"
    )
    return FloatingPointError(
        f"training diverged at step {checks[-1][0]} (epoch {epoch}): the training loss was {above} at "
        f"{len(checks)} logged checks in a row ({steps}); the weights have blown up and the model is no better "
        "than a guess. Lower the optimizer's lr (e.g. 10x), or clip the gradient norm (trainer.gradient_clip_val, "
        "e.g. 0.25), then train again from the start or from a checkpoint written before the first of these steps."
    )
