"""TokensPerSecond: training throughput in target tokens per second."""

from __future__ import annotations

import time

import lightning as L
import torch

from rnn_lightning.constants import IGNORE_INDEX


class TokensPerSecond(L.Callback):
    """Log ``train/tokens_per_s``: tokens trained on (LM targets, or tagged/classified words) per second of
    training-loop time, per epoch.

    The clock stops during validation. The count is this process's; under DDP multiply by the world size.
    """

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tokens, self.seconds, self._start = 0, 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(batch, dict):  # tagging / classification: padded sequences and their lengths
            self.tokens += int(batch["lengths"].sum())
        else:  # language modeling: (inputs, targets) windows
            self.tokens += int((batch[1] != IGNORE_INDEX).sum())

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        if self.seconds > 0:
            pl_module.log("train/tokens_per_s", torch.tensor(self.tokens / self.seconds))

    def _pause(self) -> None:
        if self._start is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self._start
            self._start = None
