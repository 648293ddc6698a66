"""The tasks' default optimizers, and ``configure_optimizers`` from a task's YAML-configurable factories."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from rnn_lightning.tasks.schedules import SlantedTriangularLR


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """Adam, lr 1e-3, fused where every parameter allows it (see :func:`can_fuse`): every task's default."""
    params = list(params)
    return torch.optim.Adam(params, lr=1e-3, fused=can_fuse(params))


def can_fuse(params: list[torch.Tensor]) -> bool:
    """Whether ``fused=True`` suits these parameters (plain floating-point tensors on the CPU or a CUDA GPU).

    A fused Adam updates each tensor in one vectorised pass instead of a pass per operation.
    """
    params = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]  # groups too
    return bool(params) and all(
        type(p) in (torch.Tensor, torch.nn.Parameter) and p.is_floating_point() and p.device.type in ("cpu", "cuda")
        for p in params
    )


def discriminative_rates(optimizer: torch.optim.Optimizer, decay: float) -> None:
    """Divide each parameter group's learning rate by ``decay`` once per group above it (ULMFiT's discriminative
    fine-tuning, Howard & Ruder 2018: ``lr / 2.6 ** k`` for the group ``k`` below the top): the groups are in
    ``optimizer.param_groups`` bottom first, the last (the head) keeps its rate."""
    if isinstance(decay, bool) or not isinstance(decay, int | float) or decay < 1:
        raise ValueError(f"`discriminative_lr` must be a number >= 1, each layer group's learning rate over the one "
                         f"below it, got {decay!r} (ULMFiT: 2.6; None: one rate for all).")
    for depth, group in enumerate(reversed(optimizer.param_groups)):
        group["lr"] = group["lr"] / decay**depth


def configure(module: L.LightningModule) -> Any:
    """``configure_optimizers`` from the task's ``optimizer`` / ``lr_scheduler`` factories (YAML-configurable).

    With a ``discriminative_lr`` hyperparameter the optimizer gets the task's ``layer_groups()`` as parameter groups,
    each lower group's rate divided by it (see :func:`discriminative_rates`). A :class:`SlantedTriangularLR` without
    ``total_steps`` spreads over the Trainer's ``estimated_stepping_batches`` and steps after every optimizer step.
    """
    decay = module.hparams.get("discriminative_lr")
    if decay is None:
        optimizer = module.optimizer(module.parameters())
    else:
        optimizer = module.optimizer([{"params": group} for group in module.layer_groups()])
        discriminative_rates(optimizer, decay)
    if module.lr_scheduler is None:
        return optimizer
    scheduler = module.lr_scheduler(optimizer)
    if isinstance(scheduler, SlantedTriangularLR):
        if scheduler.total_steps is None:
            scheduler.fit_to(module.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
