"""WritePredictions: what ``rnn-lightning predict`` computes, written as JSON lines."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from rnn_lightning.nn.checks import check_flag, check_output_file, check_top_k


def _plain(value: Any) -> Any:
    """Tensors, numpy values and containers of them as strict-JSON values: lists, finite numbers, strings.

    A non-finite number (a language model's NaN where a position has no target, an infinite score) becomes ``null``:
    strict JSON has no NaN or Infinity, and Python's ``json`` would write them as bare ``NaN`` that other readers
    refuse. Keys become strings; a dataclass instance (a ``TaggedSentence``) its fields; any other object its ``str``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
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


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON (see :func:`_plain`), newline included."""
    return json.dumps(_plain(record), allow_nan=False) + "\n"  # allow_nan=False: never a non-strict line


@runtime_checkable
class ScoresPredictions(Protocol):
    """A task whose ``predict_step`` passes ``prediction_options`` (``scores``, ``top_k``) to its predictions, as
    :class:`~rnn_lightning.SequenceTagger` and :class:`~rnn_lightning.SequenceClassifier` do."""

    prediction_options: dict[str, Any]


class WritePredictions(BasePredictionWriter):
    """Append each predict batch's output to ``path`` as JSON lines, one per sequence.

    A tagger writes ``{"index": i, "prediction": [tag, ...]}``, a classifier ``{"index": i, "prediction": label}``
    (``index``: the sequence's position in the split); a language model writes one line per batch of windows
    with its per-token negative log-likelihoods (``null`` where a position has no target). Every line is strict JSON
    (see :func:`_plain`). Under DDP, rank ``r > 0`` writes ``path`` + ``.rank{r}``.

    With ``scores`` (or ``top_k``) the prediction is what ``tag(..., return_scores=True, top_k=...)`` /
    ``classify(..., return_probabilities=True)`` return, as an object: a tagger's ``{"tags", "probabilities",
    "spans": [{"start", "end", "label", "probability"}], "best_paths": [{"tags", "probability"}]}``, a classifier's
    ``{"label", "probabilities": {label: p}}``. The task computes them in its ``predict_step``, from the
    ``prediction_options`` this callback sets for the run.

    Args:
        path: output file (overwritten at the start of each predict run).
        scores: write each prediction's confidences (a tagger or a classifier).
        top_k: also the k best tag paths with their probabilities (a CRF tagger; implies ``scores``).
    """

    def __init__(self, path: str, *, scores: bool = False, top_k: int | None = None) -> None:
        super().__init__(write_interval="batch")
        check_flag("scores", scores)
        check_top_k(top_k)
        check_output_file(path, "`path`", contents="the predictions")
        self.path = path
        self.options = {"scores": scores, "top_k": top_k} if scores or top_k is not None else {}
        self._previous: dict[str, Any] | None = None

    def _file(self, trainer: L.Trainer) -> Path:
        rank = trainer.global_rank
        return Path(self.path if rank == 0 else f"{self.path}.rank{rank}")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.options:
            if not isinstance(pl_module, ScoresPredictions):
                asked = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v not in (False, None))
                raise ValueError(
                    f"WritePredictions({asked}) asks the task for confidences, which {type(pl_module).__name__}'s "
                    "predict_step does not give (a SequenceTagger or SequenceClassifier does; a LanguageModel's "
                    "lines already hold each token's NLL). Drop `scores` and `top_k` for this task."
                )
            self._previous = pl_module.prediction_options
            pl_module.prediction_options = self.options
        out = check_output_file(self._file(trainer), "`path`", contents="the predictions")  # this rank's file, now
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore(pl_module)

    def _restore(self, pl_module: L.LightningModule) -> None:
        """Give the task back its own ``prediction_options`` (``tag()`` and later runs are unaffected)."""
        if self._previous is not None:
            pl_module.prediction_options, self._previous = self._previous, None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        with self._file(trainer).open("a") as f:
            if isinstance(prediction, list):  # one entry per sequence
                indices = batch_indices if batch_indices else [None] * len(prediction)
                for index, row in zip(indices, prediction):
                    f.write(json_line({"index": index, "prediction": row}))
            else:
                f.write(json_line({"batch": batch_idx, "prediction": prediction}))
