"""Each private API that ``rnn_lightning.compat`` wraps still behaves as the wrapper expects."""

# ---------------------------------------------------------------- Lightning
import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader
from torchmetrics import Metric

from rnn_lightning.compat import apply_keeping_dtypes, dataset_fingerprint, logging_step, rnn_flat_weights


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


def test_dataset_fingerprint_follows_content_and_names_the_cache_files(tmp_path):
    from datasets import load_dataset

    for name, text in (("one.txt", "a b\nc\n"), ("two.txt", "a b\nd\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")

    def load(name: str):
        return load_dataset("text", data_files=str(tmp_path / name), cache_dir=str(tmp_path / "cache"))["train"]

    first = dataset_fingerprint(load("one.txt"))
    assert isinstance(first, str) and len(first) >= 16
    assert dataset_fingerprint(load("one.txt")) == first  # a second run: the same key, so caches are reused
    assert dataset_fingerprint(load("two.txt")) != first  # another file: another key
    mapped = load("one.txt").map(lambda row: row, new_fingerprint="0123456789abcdef")
    assert dataset_fingerprint(mapped) == "0123456789abcdef"  # what `new_fingerprint` sets, as token_ids relies on
    assert "0123456789abcdef" in mapped.cache_files[0]["filename"]


# ---------------------------------------------------------------- torchmetrics
class TwoStates(Metric):
    """A float64 state, an int64 state and an int64 buffer; ``keep`` names what its ``_apply`` keeps."""

    def __init__(self, keep=()):
        super().__init__()
        self.keep = keep
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.register_buffer("table", torch.tensor([3, 1, 2]), persistent=False)

    def update(self, value):
        self.total = self.total + value
        self.count = self.count + 1

    def compute(self):
        return self.total / self.count

    def _apply(self, fn, exclude_state=""):
        if not self.keep:
            return super()._apply(fn, exclude_state)
        return apply_keeping_dtypes(self, super()._apply, fn, exclude_state, keep=self.keep)


def test_metric_apply_casts_states_and_skips_excluded_ones():
    """What the wrapper relies on: ``Metric._apply`` casts states (``set_dtype`` even int64 ones) and the defaults
    ``reset`` restores, except for the states named in ``exclude_state``; and it records the new device."""
    metric = TwoStates()
    metric.update(1.25)
    metric.set_dtype(torch.float16)
    assert metric.total.dtype == metric.count.dtype == torch.float16  # why the wrapper exists
    metric.reset()
    assert metric.count.dtype == torch.float16  # the default was cast too
    metric = TwoStates()
    metric.update(1.25)
    Metric._apply(metric, lambda t: t.to(torch.float16), exclude_state=("count",))
    assert metric.total.dtype == torch.float16 and metric.count.dtype == torch.int64
    metric.reset()
    assert metric.count.dtype == torch.int64 and metric.total.dtype == torch.float16
    metric._apply(lambda t: t.to("meta"))
    assert metric.device == torch.device("meta") and metric.total.device.type == "meta"


def test_apply_keeping_dtypes_keeps_values_and_follows_the_device():
    metric = TwoStates(keep=("total", "count", "table"))
    metric.update(1.1)  # not exact in float16
    metric.set_dtype(torch.float16)
    metric = metric.to(torch.bfloat16)
    assert (metric.total.dtype, metric.count.dtype, metric.table.dtype) == (torch.float64, torch.int64, torch.int64)
    assert metric.total.item() == 1.1 and metric.count.item() == 1 and metric.table.tolist() == [3, 1, 2]
    metric.reset()
    assert (metric.total.dtype, metric.count.dtype) == (torch.float64, torch.int64)
    metric = metric.to("meta")  # a device move without a GPU
    assert metric.device.type == metric.total.device.type == metric.count.device.type == "meta"
    assert metric.table.device.type == "meta" and metric.count.dtype == torch.int64
    metric.reset()
    assert metric.count.device.type == "meta" and metric.count.dtype == torch.int64


# ---------------------------------------------------------------- torch


def test_rnn_forward_reads_the_swapped_flat_weights_and_gets_its_own_back():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    before, _ = lstm(x)
    doubled = [2 * getattr(lstm, name) for name in lstm._flat_weights_names]
    with rnn_flat_weights(lstm, doubled):
        out, _ = lstm(x)
    reference = torch.nn.LSTM(3, 4, batch_first=True)
    reference.load_state_dict({name: w for name, w in zip(lstm._flat_weights_names, doubled, strict=True)})
    torch.testing.assert_close(out, reference(x)[0], rtol=0, atol=0)
    assert torch.equal(lstm(x)[0], before)  # the parameters are in use again
