"""GradientFlowMonitor: vanishing and exploding gradients through time, measured on the model being trained."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from rnn_lightning.functional.gradient_flow import GradientFlow, measure_gradient_flow

PREFIX = "gradflow"


class GradientFlowMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps, measure how the gradient of the last step's loss fades (or grows)
    with the distance to each earlier hidden state, on the batch about to be trained on, and log it.

    For each recurrent layer l (bottom first; the left-to-right direction of a bidirectional one) of the task's
    word-level encoder, on the current batch, before the optimizer step:

    - the curve ||d loss_T / d h_t|| against the distance T-1-t (mean over the batch's sequences, each with its own
      last step; see :func:`~rnn_lightning.functional.gradient_flow.measure_gradient_flow`): kept in
      :attr:`history`, drawn as a plot image for W&B and TensorBoard when matplotlib is installed, else logged to
      W&B as a table (step, layer, distance, norm);
    - ``gradflow/decay_rate/layer{l}``: minus the slope of ln(norm) against distance (positive: vanishing);
    - ``gradflow/spectral_radius/layer{l}``: the largest |eigenvalue| of W_hh for a simple RNN, and
      ``.../layer{l}/{gate}`` of each gate's block (H, H) for the GRU (reset, update, new) and the LSTM (input,
      forget, cell, output);
    - with ``gradient_clip_val`` set (by norm), ``gradflow/clipped_steps`` and ``gradflow/clipped_fraction``: the
      optimizer steps since the last measurement whose gradient norm before clipping (the task's ``grad_norm``)
      exceeded it (from the second measurement on).

    The measurement leaves training as it was: it runs the network in eval mode (no dropout), layer by layer and
    step by step in plain torch ops (no cuDNN kernel, so it works on GPUs in train mode), in a separate graph that
    writes no ``.grad``, with the random state restored. It costs about one forward and backward of the batch,
    slower than cuDNN's (a Python loop over the steps), plus an eigen-decomposition of each gate block on the CPU.
    Values go straight to the loggers at the current step (``log_every_n_steps`` does not apply), from rank 0.

    Args:
        every_n_steps: optimizer steps between measurements (the first is at step 0, the model at initialisation).

    Example:
        >>> monitor = GradientFlowMonitor(every_n_steps=100)  # L.Trainer(callbacks=[monitor], gradient_clip_val=0.25)

    The task must provide ``recurrent_encoder()`` and ``last_step_losses(batch)`` (the rnn_lightning tasks do) and,
    for the clipping counts, ``grad_norm``.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be a positive integer, got {every_n_steps!r}. Use e.g. 100.")
        self.every_n_steps = every_n_steps
        self.history: list[dict[str, Any]] = []  # one record per measurement, see _record
        self._measured_step = -1
        self._clipped: torch.Tensor | int = 0  # since the last measurement; a device tensor (read when logged)
        self._steps = 0
        self._seen_norm: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        missing = [name for name in ("recurrent_encoder", "last_step_losses") if not hasattr(pl_module, name)]
        if missing:
            raise TypeError(
                f"GradientFlowMonitor measures a task through its {' and '.join(f'`{m}`' for m in missing)}, which "
                f"{type(pl_module).__name__} lacks: use it with an rnn_lightning task (LanguageModel, SequenceTagger, "
                "SequenceClassifier), or define `recurrent_encoder()` (the module holding the torch.nn recurrent "
                "layers) and `last_step_losses(batch)` ((B,) each sequence's loss at its last step)."
            )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self._measured_step or not trainer.is_global_zero:
            return
        self._measured_step = step
        flow = measure_gradient_flow(pl_module, pl_module.recurrent_encoder(),
                                     lambda: pl_module.last_step_losses(batch))
        record = self._record(step, flow, trainer)
        self.history.append(record)
        for logger in trainer.loggers:
            logger.log_metrics(record["scalars"], step=step)
            _log_curves(logger, record)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        norm = getattr(pl_module, "grad_norm", None)
        if norm is None or norm is self._seen_norm or not _clips_by_norm(trainer):
            return  # no optimizer step since the last batch (accumulation), or nothing to count
        self._seen_norm = norm
        self._clipped = self._clipped + (norm > trainer.gradient_clip_val)
        self._steps += 1

    def _record(self, step: int, flow: GradientFlow, trainer: L.Trainer) -> dict[str, Any]:
        """{"step", "norms": per layer [norm at distance 0, 1, ...], "scalars": {name: value}}; the clipping counts
        restart."""
        scalars = {}
        for layer, (rate, radii) in enumerate(zip(flow.decay_rates, flow.spectral_radii)):
            scalars[f"{PREFIX}/decay_rate/layer{layer}"] = rate
            for gate, radius in radii.items():
                scalars[f"{PREFIX}/spectral_radius/layer{layer}" + (f"/{gate}" if gate else "")] = radius
        if _clips_by_norm(trainer) and self._steps:
            clipped = int(self._clipped)
            scalars[f"{PREFIX}/clipped_steps"] = float(clipped)
            scalars[f"{PREFIX}/clipped_fraction"] = clipped / self._steps
        self._clipped, self._steps = 0, 0
        return {"step": step, "norms": [curve.tolist() for curve in flow.norms], "scalars": scalars}


def _clips_by_norm(trainer: L.Trainer) -> bool:
    return bool(trainer.gradient_clip_val) and trainer.gradient_clip_algorithm in (None, "norm")


def _log_curves(logger: Any, record: dict[str, Any]) -> None:
    """The curves as a plot image (W&B, TensorBoard) when matplotlib is installed, else as a W&B table."""
    key, step = f"{PREFIX}/curve", record["step"]
    try:
        image = plot_curves(record["norms"], title=f"step {step}")  # (H, W, 3) uint8
    except ImportError:
        if isinstance(logger, WandbLogger):
            rows = [[step, layer, distance, norm] for layer, curve in enumerate(record["norms"])
                    for distance, norm in enumerate(curve)]
            logger.log_table(key=key, columns=["step", "layer", "distance", "grad_norm"], data=rows, step=step)
        return
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[image], step=step)
    elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard's SummaryWriter
        logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")


def plot_curves(norms: list[list[float]], *, title: str = "") -> np.ndarray:
    """(H, W, 3) uint8 RGB image: ||d loss_T / d h_t|| (log scale) against the distance T-1-t, one line per layer.

    Needs matplotlib (an ``ImportError`` without it); draws off-screen, leaving pyplot's state alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=100)
    axes = figure.subplots()
    for layer, curve in enumerate(norms):
        axes.semilogy(range(len(curve)), curve, label=f"layer {layer}")
    axes.set_xlabel("distance T-1-t (steps)")
    axes.set_ylabel("||d loss_T / d h_t||")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
