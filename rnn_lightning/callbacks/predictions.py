"""WritePredictions: what ``rnn-lightning predict`` computes, written as JSON lines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


def _plain(value: Any) -> Any:
    """Tensors, numpy values and containers of them as strict-JSON values: lists, finite numbers, strings.

    A non-finite number (a language model's NaN where a position has no target, an infinite score) becomes ``null``:
    strict JSON has no NaN or Infinity, and Python's ``json`` would write them as bare ``NaN`` that other readers
    refuse. Keys become strings; any other object its ``str``.
    """
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(_plain(record), allow_nan=False) + "\n"  # allow_nan=False: never a non-strict line


class WritePredictions(BasePredictionWriter):
    """Append each predict batch's output to ``path`` as JSON lines, one per sequence.

    A tagger writes ``{"index": i, "prediction": [tag, ...]}``, a classifier ``{"index": i, "prediction": label}``
    (``index``: the sequence's position in the split); a language model writes one line per batch of windows
    with its per-token negative log-likelihoods (``null`` where a position has no target). Every line is strict JSON
    (see :func:`_plain`). Under DDP, rank ``r > 0`` writes ``path`` + ``.rank{r}``.

    Args:
        path: output file (overwritten at the start of each predict run).
    """

    def __init__(self, path: str) -> None:
        super().__init__(write_interval="batch")
        self.path = path

    def _file(self, trainer: L.Trainer) -> Path:
        rank = trainer.global_rank
        return Path(self.path if rank == 0 else f"{self.path}.rank{rank}")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._file(trainer).parent.mkdir(parents=True, exist_ok=True)
        self._file(trainer).write_text("")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        with self._file(trainer).open("a") as f:
            if isinstance(prediction, list):  # one entry per sequence
                indices = batch_indices if batch_indices else [None] * len(prediction)
                for index, row in zip(indices, prediction):
                    f.write(_line({"index": index, "prediction": row}))
            else:
                f.write(_line({"batch": batch_idx, "prediction": prediction}))
