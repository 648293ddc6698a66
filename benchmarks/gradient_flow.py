"""Vanishing and exploding gradients through time: recall accuracy and gradient decay against distance, and clipping.

Vanishing: ``RecallDataModule`` (a key, ``distance`` random distractors, the label is the key) at each distance, for
a simple tanh RNN, a GRU, an LSTM with ``forget_bias`` (every forget gate starts open) and the same LSTM with
torch's initialisation (forget bias around 0). Each is a one-layer ``SequenceClassifier`` (left to right, final
state), trained the same number of Adam steps with the same settings in the Trainer; per (cell, distance): the test
accuracy, and the decay rate of ||d loss_T / d h_t|| against the distance T-1-t (``measure_gradient_flow`` on one
test batch) at initialisation and after training. A ``GradientFlowMonitor`` rides along in each run and records the
rate during training.

Exploding: a simple ReLU RNN language model on the quickstart's synthetic Markov corpus, SGD lr 20, without and with
gradient clipping by norm: the training loss per step (the run without clipping stops at the first non-finite
gradient, as every rnn_lightning task does) and how often the clipping acted.

Writes ``gradient_flow.json`` to ``--out`` and, with matplotlib installed, three PNG figures to ``--figures``.

Usage:
    python benchmarks/gradient_flow.py [--out DIR] [--figures DIR] [--steps 1000] [--distances 5 10 20 50 100]
        [--models lstm gru] [--forget-bias 3] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

if __package__ in (None, ""):  # run as `python benchmarks/gradient_flow.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning import (  # noqa: E402
    GradientFlowMonitor,
    LanguageModel,
    MarkovCorpusDataModule,
    RecallDataModule,
    SequenceClassifier,
)
from rnn_lightning.functional import measure_gradient_flow  # noqa: E402

NAME = "gradient_flow"
EXPLODE_EVERY = 5  # steps between the exploding runs' measurements (clipping counts)
MODELS = {"rnn_tanh": "rnn_tanh", "gru": "gru", "lstm": "lstm", "lstm, torch init": "lstm"}  # name -> cell
OPEN_FORGET_GATE = "lstm"  # the model that gets --forget-bias


def trainer(steps: int, root: str, **kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=root, **kwargs)


def flow(model: L.LightningModule, batch: Any) -> tuple[float, list[float]]:
    """The decay rate and the curve of the (one) recurrent layer on ``batch``."""
    measured = measure_gradient_flow(model, model.recurrent_encoder(), lambda: model.last_step_losses(batch))
    return measured.decay_rates[0], measured.norms[0].tolist()


def accuracy(model: SequenceClassifier, dm: RecallDataModule) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            right += int((model(batch["tokens"], batch["lengths"]).argmax(-1) == batch["label"]).sum())
            total += len(batch["label"])
    model.train()
    return right / total


def recall_run(name: str, distance: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one model on recall at ``distance``: its table row and its curves."""
    dm = RecallDataModule(distance, num_classes=args.classes, train_size=args.train_size, validation_size=1,
                          test_size=args.test_size, batch_size=args.batch_size, eval_batch_size=args.test_size)
    dm.setup("fit")
    dm.setup("test")
    probe = next(iter(dm.test_dataloader()))  # the batch every measurement uses
    L.seed_everything(0, verbose=False)
    forget_bias = args.forget_bias if name == OPEN_FORGET_GATE else None
    model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, embedding_dim=32,
                               hidden_size=args.hidden, num_layers=1, bidirectional=False, dropout=0.0,
                               cell=MODELS[name], forget_bias=forget_bias, pooling="final",
                               optimizer=lambda p: torch.optim.Adam(p, lr=args.lr))
    rate_init, curve_init = flow(model, probe)
    monitor = GradientFlowMonitor(every_n_steps=max(1, args.steps // 4))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        trainer(args.steps, root, gradient_clip_val=args.clip, callbacks=[monitor]).fit(model, dm)
    seconds = time.perf_counter() - start
    rate, curve = flow(model, probe)
    row = {"model": name, "distance": distance, "test_acc": accuracy(model, dm), "chance": dm.chance_accuracy,
           "decay_rate_init": rate_init, "decay_rate_trained": rate, "train_s": seconds}
    during = [(m["step"], m["scalars"]["gradflow/decay_rate/layer0"]) for m in monitor.history]
    return row, {"init": curve_init, "trained": curve, "decay_rate_during_training": during}


def vanishing(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, curves = [], {}
    for name in args.models:
        for distance in args.distances:
            row, curves[f"{name} @ {distance}"] = recall_run(name, distance, args)
            rows.append(row)
            print(f"  {row}", flush=True)
    return rows, curves


def accuracy_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: its test accuracy and trained decay rate at each distance."""
    table = {}
    for row in rows:
        entry = table.setdefault(row["model"], {"model": row["model"]})
        entry[f"acc @ {row['distance']}"] = row["test_acc"]
    for row in rows:
        table[row["model"]][f"rate @ {row['distance']}"] = row["decay_rate_trained"]
    return list(table.values())


class LossPerStep(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def exploding(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    dm = MarkovCorpusDataModule(num_words=50, branching=8, train_tokens=40_000, validation_tokens=2_000,
                                test_tokens=500, batch_size=16, bptt=35)
    rows, losses = [], {}
    for clip in (None, 0.25):
        L.seed_everything(0, verbose=False)
        model = LanguageModel(vocab_size=dm.vocab_size, pad_id=dm.pad_id, embedding_dim=64, hidden_size=64,
                              num_layers=1, cell="rnn_relu", dropout_embedding=0.0, dropout_between=0.0,
                              dropout_output=0.0, optimizer=lambda p: torch.optim.SGD(p, lr=20.0))
        record, monitor = LossPerStep(), GradientFlowMonitor(every_n_steps=EXPLODE_EVERY)
        stopped = ""
        with tempfile.TemporaryDirectory() as root:
            try:
                trainer(args.explode_steps, root, gradient_clip_val=clip, callbacks=[record, monitor]).fit(model, dm)
            except FloatingPointError as error:
                stopped = str(error).split(":")[0]
        clipped = sum(m["scalars"].get("gradflow/clipped_steps", 0) for m in monitor.history)
        counted = EXPLODE_EVERY * (len(monitor.history) - 1)  # the steps before the last measurement
        name = f"clip {clip}" if clip else "no clipping"
        losses[name] = record.losses
        finite = [x for x in record.losses if math.isfinite(x)]
        rows.append({"run": name, "steps_done": len(record.losses), "first_loss": record.losses[0],
                     "max_loss": max(finite), "last_loss": record.losses[-1],
                     "clipped_fraction": clipped / counted if clip and counted else math.nan,
                     "stopped": stopped or "-"})
        print(f"  {rows[-1]}", flush=True)
    return rows, losses


def figures(rows: list[dict[str, Any]], curves: dict[str, Any], losses: dict[str, list[float]],
            folder: Path) -> list[Path]:
    """The gradient-norm curves per model, accuracy against distance and the exploding losses as PNGs ([] without
    matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    distances = sorted({row["distance"] for row in rows})
    models = list(dict.fromkeys(row["model"] for row in rows))
    paths = [folder / "gradient_flow_curves.png", folder / "accuracy_vs_distance.png", folder / "exploding.png"]

    figure = Figure(figsize=(3.2 * len(models), 3.4))
    for ax, name in zip(figure.subplots(1, len(models), sharey=True, squeeze=False)[0], models):
        for distance in distances:
            ax.semilogy(curves[f"{name} @ {distance}"]["trained"], label=f"trained, distance {distance}")
        ax.semilogy(curves[f"{name} @ {distances[-1]}"]["init"], "k--", label="at initialisation")
        ax.set(title=name, xlabel="distance T-1-t (steps)")
    figure.axes[0].set_ylabel("||d loss_T / d h_t||")
    figure.axes[0].legend(fontsize=6)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(paths[0]))

    figure = Figure(figsize=(5, 3.5))
    ax = figure.subplots()
    for name in models:
        ax.plot(distances, [r["test_acc"] for r in rows if r["model"] == name], "o-", label=name)
    ax.axhline(rows[0]["chance"], color="gray", linestyle=":", label="chance")
    ax.set(xscale="log", xlabel="distance from the key to the last step", ylabel="test accuracy", ylim=(0, 1.05))
    ax.set_xticks(distances, [str(d) for d in distances])
    ax.legend(fontsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(paths[1]))

    figure = Figure(figsize=(5, 3.5))
    ax = figure.subplots()
    for name, values in losses.items():
        ax.plot(values, label=name)
    ax.set(title="simple ReLU RNN LM, SGD lr 20", xlabel="step", ylabel="training loss", yscale="log")
    ax.legend(fontsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(paths[2]))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for gradient_flow.json")
    parser.add_argument("--figures", default="docs/figures", help="folder for the PNG figures")
    parser.add_argument("--distances", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per (model, distance)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping on the recall runs")
    parser.add_argument("--forget-bias", type=float, default=3.0, help="the LSTM's initial forget-gate bias")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8, help="keys to recall (chance: 1 / classes)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--explode-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a few steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.distances, args.steps, args.hidden, args.train_size, args.test_size = [3, 6], 8, 8, 200, 50
        args.explode_steps = 20
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    start = time.perf_counter()
    rows, curves = vanishing(args)
    print_table(f"Recall: test accuracy and trained gradient decay rate (ln units per step; > 0 vanishing) after "
                f"{args.steps} steps", accuracy_table(rows))
    print_table("Recall: every run", rows)
    explode_rows, losses = exploding(args)
    print_table("Simple ReLU RNN LM, SGD lr 20: without and with clipping", explode_rows)
    settings = {key: getattr(args, key) for key in ("distances", "steps", "lr", "clip", "forget_bias", "hidden",
                                                     "classes", "batch_size", "train_size", "test_size",
                                                     "explode_steps", "quick")}
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, table=accuracy_table(rows), exploding=explode_rows,
               curves=curves, losses=losses, settings=settings, total_s=time.perf_counter() - start)
    for path in figures(rows, curves, losses, Path(args.figures)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
