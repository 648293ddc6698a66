"""The tasks' default optimizers, and ``configure_optimizers`` from a task's YAML-configurable factories."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """Adam, lr 1e-3, fused where every parameter allows it (see :func:`can_fuse`): every task's default."""
    params = list(params)
    return torch.optim.Adam(params, lr=1e-3, fused=can_fuse(params))


def can_fuse(params: list[torch.Tensor]) -> bool:
    """Whether ``fused=True`` suits these parameters (plain floating-point tensors on the CPU or a CUDA GPU).

    A fused Adam updates each tensor in one vectorised pass instead of a pass per operation.
    """
    return bool(params) and all(
        type(p) in (torch.Tensor, torch.nn.Parameter) and p.is_floating_point() and p.device.type in ("cpu", "cuda")
        for p in params
    )


def configure(module: L.LightningModule) -> Any:
    """``configure_optimizers`` from the task's ``optimizer`` / ``lr_scheduler`` factories (YAML-configurable)."""
    optimizer = module.optimizer(module.parameters())
    if module.lr_scheduler is None:
        return optimizer
    scheduler = module.lr_scheduler(optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
