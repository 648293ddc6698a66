"""Exact resume: a run restarted from any checkpoint, mid-epoch too, continues as the unbroken run would have.

Lightning restores weights, optimizer, schedulers and loop counters, and the state of loaders that have one (ours
do: they skip the batches already trained on). What it does not restore is the random stream that draws dropout
masks: each process's RNG state travels in the checkpoint here and is restored just before the first resumed step.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

KEY = "rnn_lightning_resume"


class ExactResume:
    """Mixin for a LightningModule: every rank's RNG state in the checkpoint, restored at the first resumed step.

    Subclasses add to what each rank keeps with :meth:`_rank_state` and restore it in :meth:`_restore`.
    """

    _resume: dict[str, Any] | None = None  # what a checkpoint carried for this rank, until used

    def _rank_state(self) -> dict[str, Any]:
        return {
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _restore(self, resume: dict[str, Any]) -> None:
        """First batch after a resume. Only dropout draws on the global RNG during training (loaders and sampling
        have their own generators), so restoring it here is exact."""
        torch.set_rng_state(resume["rng"])
        if resume["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["cuda_rng"])

    def _save_resume(self, checkpoint: dict[str, Any]) -> None:
        loader = getattr(self._trainer, "train_dataloader", None) if self._trainer is not None else None
        done = getattr(loader, "batches_done", 0)
        mine = self._rank_state()
        ranks = [mine]
        if self._trainer is not None and self.trainer.world_size > 1:  # Lightning dumps on every rank
            ranks = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(ranks, mine)
        checkpoint[KEY] = {"mid_epoch": bool(loader is not None and 0 < done < len(loader)), "ranks": ranks}

    def _take_resume(self, checkpoint: dict[str, Any]) -> None:
        resume = checkpoint.get(KEY)
        if resume is None or self._trainer is None:
            return
        ranks, world = resume["ranks"], self.trainer.world_size
        if len(ranks) == world:
            self._resume = {"mid_epoch": resume["mid_epoch"], **ranks[self.trainer.global_rank]}
        else:
            rank_zero_warn(
                f"the checkpoint was written by {len(ranks)} processes and this run has {world}: the random streams "
                "(and a language model's carried state) start afresh; the weights and optimizer are restored."
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        resume, self._resume = self._resume, None
        if resume is not None:
            self._restore(resume)
