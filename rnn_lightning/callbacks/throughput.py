"""TokensPerSecond: training throughput in tokens per second."""

from __future__ import annotations

import time

import lightning as L
import torch


class TokensPerSecond(L.Callback):
    """Log ``train/tokens_per_s``: tokens trained on per second of training-loop time, per epoch.

    What a batch's tokens are is the task's to say, through its ``count_tokens(batch)`` (a 0-dim tensor; the
    language model counts its targets, the tagger and classifier their words). The counts add up on the batch's
    device and are read once per epoch, so no step waits for a GPU. The clock stops during validation. The count is
    this process's; under DDP multiply by the world size.
    """

    def __init__(self) -> None:
        self.tokens: torch.Tensor | int = 0
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not callable(getattr(pl_module, "count_tokens", None)):
            raise TypeError(
                f"TokensPerSecond counts tokens with the task's `count_tokens(batch)`, which "
                f"{type(pl_module).__name__} lacks: use it with an rnn_lightning task, or define the method "
                "(the number of tokens a training batch holds, as a tensor)."
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tokens, self.seconds, self._start = 0, 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.tokens = self.tokens + pl_module.count_tokens(batch)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        if self.seconds > 0:
            pl_module.log("train/tokens_per_s", torch.tensor(float(self.tokens) / self.seconds))

    def _pause(self) -> None:
        if self._start is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self._start
            self._start = None
