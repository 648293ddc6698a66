"""RecurrentTask: the base of the tasks (training-loss and gradient-norm logs, the NaN stop, evaluation hooks,
optimizer wiring, the tokenizer and exact resume in checkpoints, the model hub)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from rnn_lightning.compat import logging_step
from rnn_lightning.tasks.checkpoints import check_task, check_task_hparams, check_weight_shapes, unreadable
from rnn_lightning.tasks.finite_guard import FiniteGradientGuard
from rnn_lightning.tasks.hub import HubMixin
from rnn_lightning.tasks.optimizers import configure
from rnn_lightning.tasks.resume import ExactResume
from rnn_lightning.tasks.tokenizer import TokenizerInCheckpoint


def host_reads_are_free(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor`` on the host costs no wait for a device (it lives in CPU memory)."""
    return tensor.device.type == "cpu"


class RecurrentTask(HubMixin, ExactResume, TokenizerInCheckpoint, L.LightningModule):
    """Base of the tasks: optimizer factories, gradient-norm log and divergence stop, tokenizer in the checkpoint, exact
    resume, ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` (see :mod:`rnn_lightning.tasks.hub`).

    Args:
        optimizer: the task's optimizer factory (``configure_optimizers`` calls it on the parameters).
        lr_scheduler: the task's optional LR scheduler factory (``ReduceLROnPlateau`` watches ``val/loss``).

    Subclasses log their training loss with :meth:`log_train_loss`, and implement ``_eval_step`` and ``_eval_end``,
    :meth:`count_tokens`, and for :class:`~rnn_lightning.callbacks.GradientFlowMonitor` :meth:`recurrent_encoder`
    and :meth:`last_step_losses`.

    ``grad_norm`` holds the total gradient norm of the last optimizer step before clipping (a 0-dim tensor on the
    gradients' device; ``None`` before the first step).
    """

    def __init__(self, *, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__()
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self._last_loss: torch.Tensor | None = None
        self.grad_norm: torch.Tensor | None = None
        self._finite_guard = FiniteGradientGuard()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, with clear errors for a file that is no checkpoint and for another
        task's checkpoint (see :mod:`rnn_lightning.tasks.checkpoints`)."""
        check_task(cls, checkpoint_path, base=RecurrentTask, weights_only=weights_only)
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only,
                                                **kwargs)
        except (EOFError, pickle.UnpicklingError, RuntimeError) as error:
            clear = unreadable(checkpoint_path, error)
            if clear is None:
                raise
            raise clear from error

    def log_train_loss(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Log ``train/loss`` (mean over processes) to the loggers and the progress bar.

        On CPU at every step. On a GPU only on the steps whose values reach the loggers (``log_every_n_steps``),
        as a host copy: Lightning reads every progress-bar value on the host at every step, which for a GPU value
        waits for the whole step, and each ``self.log`` costs host time that small GPU steps cannot hide.
        """
        self._last_loss = loss = loss.detach()
        distributed = self.trainer.world_size > 1
        if host_reads_are_free(loss):
            self.log("train/loss", loss, prog_bar=True, sync_dist=distributed, **kwargs)
        elif logging_step(self.trainer):
            if distributed:
                loss = self.trainer.strategy.reduce(loss, reduce_op="mean")
            self.log("train/loss", loss.cpu(), prog_bar=True, **kwargs)

    def configure_optimizers(self) -> Any:
        return configure(self)

    def count_tokens(self, batch: Any) -> torch.Tensor:
        """Hook: the number of tokens ``batch`` trains on (a 0-dim tensor; see
        :class:`~rnn_lightning.callbacks.TokensPerSecond`)."""
        raise NotImplementedError

    def layer_groups(self) -> list[list[torch.nn.Parameter]]:
        """Hook: the parameters in layer groups, bottom first (the input layer ... the head), for discriminative
        learning rates (``discriminative_lr``) and :class:`~rnn_lightning.callbacks.GradualUnfreezing`."""
        raise NotImplementedError(f"{type(self).__name__} does not split its parameters into layer groups: "
                                  "discriminative rates and gradual unfreezing are for the tagger and the classifier.")

    # -- hooks of GradientFlowMonitor --
    def recurrent_encoder(self) -> torch.nn.Module:
        """Hook: the task's word-level :class:`~rnn_lightning.nn.RecurrentEncoder`, whose layers are measured."""
        raise NotImplementedError

    def last_step_losses(self, batch: Any) -> torch.Tensor:
        """Hook: (B,) the loss of each of ``batch``'s sequences at its last real step, from the task's network."""
        raise NotImplementedError

    # -- evaluation: a subclass accumulates its metrics in _eval_step and logs and resets them in _eval_end --
    def _eval_step(self, batch: Any, stage: str) -> None:
        raise NotImplementedError

    def _eval_end(self, stage: str) -> None:
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as configured, stop on a non-finite gradient or a diverged loss, log ``train/grad_norm`` (pre-clip).

        Lightning calls this on every optimizer step, after the gradients are final (DDP-reduced, unscaled) and
        before the step. Clipping by norm already computes the total norm, so the norm costs no extra pass; it is
        logged only on the steps whose values reach the loggers (a logged value costs host time every step).
        """
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        one_pass = isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy))  # not sharded (FSDP...)
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and one_pass:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)  # returns the pre-clip total norm
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.grad_norm = norm.detach()
        logged = logging_step(self.trainer)
        self._finite_guard.check(self, norm, self._last_loss, self.uniform_loss(), logged=logged)
        if logged:
            self.log("train/grad_norm", norm)

    def uniform_loss(self) -> float | None:
        """The training loss of a uniform guess, ``log(num_labels)`` nats (per text for a classifier, per token for a
        tagger): the yardstick of the divergence stop (see :mod:`rnn_lightning.tasks.finite_guard`). ``None`` where
        the task has no ``num_labels``: then only a non-finite loss counts as diverged."""
        classes = self.hparams.get("num_labels")
        return math.log(classes) if isinstance(classes, int) and classes >= 2 else None

    def setup(self, stage: str) -> None:
        self._take_tokenizer()

    def on_train_epoch_end(self) -> None:
        self._finite_guard.resolve()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._finite_guard.resolve()  # never save weights a non-finite gradient may have reached
        self._save_tokenizer(checkpoint)
        self._save_resume(checkpoint)
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):  # the class, as the CLI records it: `rnn-lightning fit --ckpt_path` parses it
            hparams.setdefault("_class_path", f"{type(self).__module__}.{type(self).__qualname__}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse another task's checkpoint, one of other vocabularies or labels (:meth:`_check_checkpoint`) or with
        weights of other shapes, each naming what differs, before Lightning loads the weights."""
        trainer = getattr(self, "_trainer", None)
        path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        where = f"`ckpt_path` {str(path)!r}" if path is not None else "the checkpoint"
        check_task_hparams(type(self), checkpoint.get("hyper_parameters") or {}, where, base=RecurrentTask,
                           advice=f"Resume from a {type(self).__name__} checkpoint, or load this one with its own "
                                  "task.")
        self._load_tokenizer(checkpoint)
        self._check_checkpoint(checkpoint)
        check_weight_shapes(self, checkpoint, where)
        self._take_resume(checkpoint)

    def _check_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Hook: raise a ``ValueError`` if the checkpoint's data-derived settings (labels, ...) differ from ours."""
