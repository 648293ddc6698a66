"""NT-ASGD: average the weights once validation stops improving (AWD-LSTM's optimizer schedule).

Merity et al. 2017 ("Regularizing and Optimizing LSTM Language Models", Sec. 3; salesforce/awd-lstm-lm
``main.py``) train with plain SGD until the validation loss is worse than every loss from more than ``nonmono``
validations ago, then switch to averaged SGD (``torch.optim.ASGD(t0=0, lambd=0)``: the same SGD steps, plus the
running mean of the weights after every step from the switch on). Validation, the saved model and test use the
mean; training goes on from the SGD weights.

Here the user's optimizer keeps stepping (with ``lambd=0`` ASGD's step is SGD's) and this callback keeps the mean
with ``Tensor.lerp_``. ``torch.optim.swa_utils.AveragedModel`` does the same update but reads its count from the
device at every step (a host wait on a GPU) and deep-copies the module; Lightning's ``StochasticWeightAveraging``
averages once per epoch from a fixed epoch. ``torch.optim.ASGD`` would replace the optimizer mid-fit, which
Lightning's optimizer and checkpoint wiring do not expect.

AWD-LSTM's second stage (``finetune.py``) restarts from the best averaged model and averages from the first step,
stopping once validation (of the mean) has stalled by the same rule: ``NTASGD(finetune=True)``, with
``LanguageModel(init_from=best.ckpt)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

__all__ = ["NTASGD", "validation_stalled"]


def validation_stalled(history: Sequence[float], current: float, nonmono: int) -> bool:
    """AWD's non-monotonic trigger: ``current`` is worse than the best of all but the last ``nonmono`` validations.

    Example:
        >>> validation_stalled([5.0, 4.0, 3.0, 3.5, 3.6], 3.7, nonmono=2)  # 3.7 > min(5, 4, 3)
        True
    """
    return len(history) > nonmono and current > min(history[:-nonmono])


class NTASGD(L.Callback):
    """Non-monotonically triggered averaging of the weights; validation, checkpoints and test use the average.

    Before the trigger nothing changes. After it, the mean of the parameters after each optimizer step is kept;
    each validation, test and predict run swaps it in and the training weights back afterwards; every checkpoint
    holds the mean as its ``state_dict`` (so the best checkpoint, ``test(ckpt_path="best")`` and
    ``load_from_checkpoint`` get it) and the training weights in this callback's state, from which a resumed fit
    continues. At the end of training the mean is left in the module. Use with SGD, as AWD-LSTM does.

    Args:
        nonmono: validations without improvement that trigger the averaging (AWD-LSTM: 5).
        monitor: the logged validation loss to watch (lower is better).
        finetune: AWD-LSTM's fine-tuning stage: average from the first step, and stop training when validation of
            the mean stalls by the same rule.

    Example:
        >>> callback = NTASGD(nonmono=5)  # then L.Trainer(callbacks=[callback]) with an SGD optimizer
        >>> callback.averaging  # until validation stalls
        False
    """

    def __init__(self, nonmono: int = 5, *, monitor: str = "val/loss", finetune: bool = False) -> None:
        if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
            raise ValueError(f"`nonmono` must be a positive integer, got {nonmono!r}. AWD-LSTM uses 5.")
        self.nonmono = nonmono
        self.monitor = monitor
        self.finetune = finetune
        self.history: list[float] = []  # monitored values of the validations before the trigger (fine-tuning: all)
        self.switched_at: int | None = None  # global step of the trigger
        self.count = 0  # steps averaged
        self.average: dict[str, Tensor] = {}  # parameter name -> running mean
        self._last_step = -1
        self._backup: dict[str, Tensor] | None = None  # training weights while the mean is swapped in
        self._resume_weights: dict[str, Tensor] | None = None  # training weights from a checkpoint

    @property
    def averaging(self) -> bool:
        return self.switched_at is not None

    # ------------------------------------------------------------ the mean
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self.averaging or trainer.global_step == self._last_step:
            return  # before the trigger, or a batch that accumulated gradients without a step
        self._last_step = trainer.global_step
        self.count += 1
        with torch.no_grad():
            for name, param in pl_module.named_parameters():
                if self.count == 1:
                    self.average[name] = param.detach().clone()
                else:
                    self.average[name].lerp_(param.detach(), 1.0 / self.count)  # (n-1)/n * mean + p/n

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)
        if trainer.sanity_checking or (self.averaging and not self.finetune):
            return
        if self.monitor not in trainer.callback_metrics:
            raise ValueError(f"NTASGD: `monitor={self.monitor!r}` was not logged in validation; logged: "
                             f"{sorted(trainer.callback_metrics)}. Pass the name of the validation loss.")
        current = float(trainer.callback_metrics[self.monitor])
        if validation_stalled(self.history, current, self.nonmono):
            stalled = f"NTASGD: {self.monitor}={current:.4g} is worse than the best before the last {self.nonmono} "
            if self.finetune:
                trainer.should_stop = True
                rank_zero_info(f"{stalled}validations of the mean; fine-tuning stops.")
            else:
                self.switched_at = self._last_step = trainer.global_step
                rank_zero_info(f"{stalled}validations; averaging the weights from step {trainer.global_step}.")
        self.history.append(current)

    # ------------------------------------------------------------ swapping the mean in for evaluation
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_training_weights(trainer, pl_module)
        self._swap_in(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_training_weights(trainer, pl_module)
        if self.finetune and not self.averaging:  # a fresh fine-tuning run averages from its first step
            self.switched_at = self._last_step = trainer.global_step

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_training_weights(trainer, pl_module)
        self._swap_in(pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_training_weights(trainer, pl_module)
        self._swap_in(pl_module)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.count:  # training is over: keep the mean, as AWD-LSTM's saved model does
            self._copy_into(pl_module, self.average)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self.count and self._backup is None:
            self._backup = {name: p.detach().clone() for name, p in pl_module.named_parameters()}
            self._copy_into(pl_module, self.average)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is not None:
            self._copy_into(pl_module, self._backup)
            self._backup = None

    @staticmethod
    def _copy_into(pl_module: L.LightningModule, values: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, param in pl_module.named_parameters():
                param.copy_(values[name])

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """The mean goes into ``state_dict`` (every key of a tied parameter); the training weights into our state."""
        if not self.count:
            return
        training = self._backup or {name: p.detach().clone() for name, p in pl_module.named_parameters()}
        name_of = {id(p): name for name, p in pl_module.named_parameters()}
        for key, value in pl_module.state_dict(keep_vars=True).items():
            if id(value) in name_of:
                checkpoint["state_dict"][key] = self.average[name_of[id(value)]].clone()
        if self.state_key in checkpoint.get("callbacks", {}):
            checkpoint["callbacks"][self.state_key]["training_weights"] = training

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "switched_at": self.switched_at, "count": self.count,
                "average": dict(self.average), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.switched_at = state_dict["switched_at"]
        self.count = state_dict["count"]
        self.average = dict(state_dict["average"])
        self._last_step = state_dict["last_step"]
        self._resume_weights = state_dict.get("training_weights")

    def _restore_training_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed fit continues from the training weights (the checkpoint's ``state_dict`` holds the mean)."""
        if self._resume_weights is not None and trainer.state.fn == TrainerFn.FITTING:
            self._copy_into(pl_module, self._resume_weights)
        self._resume_weights = None
        device = next(pl_module.parameters()).device
        self.average = {name: t.to(device) for name, t in self.average.items()}
