"""A callback that SIGKILLs its own training process at a given step (used by tests/test_resume.py)."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL this process (with ``group``: its whole process group, all DDP ranks) when training reaches
    ``step`` (before that step runs); -1 never."""

    def __init__(self, step: int = -1, group: bool = False) -> None:
        self.step, self.group = step, group

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            if self.group:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


class SaveAtEnd(L.Callback):
    """Write ``final.ckpt`` when training ends, to compare runs."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint("final.ckpt")


class KillDuringSave(L.Callback):
    """SIGKILL this process halfway through writing its ``nth`` checkpoint file."""

    def __init__(self, nth: int = 2) -> None:
        self.nth, self.seen = nth, 0

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.seen += 1
        if self.seen != self.nth:
            return
        from fsspec.implementations.local import LocalFileOpener

        def write_half_then_die(opener, data):
            opener.f.write(bytes(data)[: len(data) // 2])
            opener.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        LocalFileOpener.write = write_half_then_die
