"""A callback that SIGKILLs its own training process at a given step (used by tests/test_resume.py)."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL this process when training reaches ``step`` (before that step runs); -1 never."""

    def __init__(self, step: int = -1) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SaveAtEnd(L.Callback):
    """Write ``final.ckpt`` when training ends, to compare runs."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint("final.ckpt")
