"""Each private API that ``rnn_lightning.compat`` wraps still behaves as the wrapper expects."""

# ---------------------------------------------------------------- Lightning
import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from rnn_lightning.compat import logging_step


class _Recorder(Logger):
    """Keeps the steps whose metrics reached it: the reference for :func:`logging_step`."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    name, version = "recorder", 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        if "value" in metrics:
            self.steps.append(step)


class _Flags(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer, self.flags = torch.nn.Linear(2, 1), []

    def training_step(self, batch, batch_idx):
        self.flags.append(logging_step(self.trainer))
        loss = self.layer(batch).sum()
        self.log("value", loss.detach())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(**kwargs) -> tuple[list[bool], list[int]]:
    model, recorder = _Flags(), _Recorder()
    trainer = L.Trainer(accelerator="cpu", logger=recorder, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **kwargs)
    trainer.fit(model, DataLoader(torch.randn(7, 2), batch_size=1))
    return model.flags, recorder.steps


def test_logging_step_is_true_on_the_steps_whose_values_reach_the_logger():
    flags, logged = _fit(max_steps=7, log_every_n_steps=3)
    assert flags == [False, False, True, False, False, True, False]
    assert len(logged) == sum(flags)  # the steps the logger got its values
    flags, _ = _fit(fast_dev_run=3, log_every_n_steps=50)
    assert flags == [True, True, True]  # a fast_dev_run logs every step


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics
