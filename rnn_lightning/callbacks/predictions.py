"""WritePredictions: what ``rnn-lightning predict`` computes, written as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


def _plain(value: Any) -> Any:
    """Tensors (and containers of them) as JSON-ready lists and numbers."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class WritePredictions(BasePredictionWriter):
    """Append each predict batch's output to ``path`` as JSON lines, one per sequence.

    A tagger writes ``{"index": i, "prediction": [tag, ...]}``, a classifier ``{"index": i, "prediction": label}``
    (``index``: the sequence's position in the split); a language model writes one line per batch of windows
    with its per-token negative log-likelihoods. Under DDP, rank ``r > 0`` writes ``path`` + ``.rank{r}``.

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
                    f.write(json.dumps({"index": index, "prediction": _plain(row)}) + "\n")
            else:
                f.write(json.dumps({"batch": batch_idx, "prediction": _plain(prediction)}) + "\n")
