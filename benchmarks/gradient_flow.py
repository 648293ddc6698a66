"""Vanishing and exploding gradients through time, measured with GradientFlowMonitor's measurement.

Vanishing: a recall task generated here (each text is a key word, ``distance - 1`` random distractor words and a
query word; the label is the key, so the last step must remember the first). For a simple tanh RNN, a GRU and an
LSTM (``SequenceClassifier``, left to right, final-state pooling): the decay rate of ||d loss_T / d h_t|| against
the distance T-1-t per layer, and the spectral radius of W_hh (largest over its gate blocks), at initialisation and
after ``steps`` Adam steps in the Trainer (same validation batch, same seed), and the validation accuracy. A
``GradientFlowMonitor`` rides along in each run and records the curves every ``steps // 4`` steps.

Exploding: a simple ReLU RNN language model on the quickstart's synthetic Markov corpus, SGD lr 20, without and with
gradient clipping by norm: the training loss per step (the run without clipping stops at the first non-finite
gradient, as every rnn_lightning task does) and how often the clipping acted.

Usage:
    python benchmarks/gradient_flow.py [--out DIR] [--steps 500] [--distance 20] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from datasets import Dataset, DatasetDict

if __package__ in (None, ""):  # run as `python benchmarks/gradient_flow.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning import (  # noqa: E402
    GradientFlowMonitor,
    LanguageModel,
    MarkovCorpusDataModule,
    SequenceClassifier,
    TextClassificationDataModule,
)
from rnn_lightning.functional import measure_gradient_flow  # noqa: E402

NAME = "gradient_flow"
KEYS = [f"key{i}" for i in range(4)]  # chance: 25%
DISTRACTORS = [f"w{i}" for i in range(20)]
EXPLODE_EVERY = 5  # steps between the exploding runs' measurements (clipping counts)


def recall_corpus(n: int, distance: int, seed: int) -> Dataset:
    """``n`` texts ``key w.. w.. query`` (``distance`` steps from the key to the query) labelled with their key."""
    rng = random.Random(seed)
    keys = [rng.randrange(len(KEYS)) for _ in range(n)]
    texts = [" ".join([KEYS[k], *rng.choices(DISTRACTORS, k=distance - 1), "query"]) for k in keys]
    return Dataset.from_dict({"sentence": texts, "label": keys})


def trainer(steps: int, root: str, **kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=root, **kwargs)


def summary(model: L.LightningModule, batch: Any) -> tuple[list[float], list[float], list[list[float]]]:
    """Decay rate and largest spectral radius per layer, and the curves, on ``batch``."""
    flow = measure_gradient_flow(model, model.recurrent_encoder(), lambda: model.last_step_losses(batch))
    return flow.decay_rates, [max(r.values()) for r in flow.spectral_radii], [c.tolist() for c in flow.norms]


def accuracy(model: SequenceClassifier, dm: TextClassificationDataModule) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            right += int((model(batch["tokens"], batch["lengths"]).argmax(-1) == batch["label"]).sum())
            total += len(batch["label"])
    model.train()
    return right / total


def vanishing(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = DatasetDict(train=recall_corpus(args.train_texts, args.distance, 0),
                       validation=recall_corpus(500, args.distance, 1))
    dm = TextClassificationDataModule(dataset=data, batch_size=32, eval_batch_size=100)
    dm.setup("fit")
    probe = next(iter(dm.val_dataloader()))  # the batch every measurement uses
    rows, curves = [], {}
    for cell in ("rnn_tanh", "gru", "lstm"):
        L.seed_everything(0, verbose=False)
        model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, embedding_dim=32,
                                   hidden_size=args.hidden, num_layers=2, cell=cell, bidirectional=False,
                                   dropout=0.0, pooling="final", optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
        rates_init, radii_init, curves_init = summary(model, probe)
        monitor = GradientFlowMonitor(every_n_steps=max(1, args.steps // 4))
        with tempfile.TemporaryDirectory() as root:
            trainer(args.steps, root, gradient_clip_val=1.0, callbacks=[monitor]).fit(model, dm)
        rates, radii, curves_trained = summary(model, probe)
        acc = accuracy(model, dm)
        curves[cell] = {"init": curves_init, "trained": curves_trained, "monitor": monitor.history}
        for layer in range(2):
            rows.append({"cell": cell, "layer": layer, "decay_rate_init": rates_init[layer],
                         "decay_rate_trained": rates[layer], "radius_init": radii_init[layer],
                         "radius_trained": radii[layer], "val_acc": acc})
        print(f"  {cell}: {rows[-2:]}", flush=True)
    return rows, curves


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


def plot(curves: dict[str, Any], losses: dict[str, list[float]], path: Path) -> bool:
    """Curves at init and trained per cell, and the exploding case's losses, as a PNG (False without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(11, 3.5))
    axes = figure.subplots(1, 3)
    for stage, ax in zip(("init", "trained"), axes):
        for cell, by_stage in curves.items():
            ax.semilogy(by_stage[stage][0], label=f"{cell} layer 0")
        ax.set(title=f"||d loss_T / d h_t||, {stage}", xlabel="distance T-1-t")
        ax.legend(fontsize=7)
    for name, values in losses.items():
        axes[2].plot(values, label=name)
    axes[2].set(title="simple ReLU RNN, SGD lr 20", xlabel="step", ylabel="training loss", yscale="log")
    axes[2].legend(fontsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for gradient_flow.json (and .png)")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps on the recall task")
    parser.add_argument("--distance", type=int, default=20, help="steps from the key to the query")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--train-texts", type=int, default=4000)
    parser.add_argument("--explode-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a few steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.distance, args.hidden, args.train_texts, args.explode_steps = 8, 8, 16, 300, 20
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    rows, curves = vanishing(args)
    print_table(f"Recall at distance {args.distance}: gradient decay rate per layer (ln units per step; > 0 "
                f"vanishing) at init and after {args.steps} steps", rows)
    explode_rows, losses = exploding(args)
    print_table("Simple ReLU RNN LM, SGD lr 20: without and with clipping", explode_rows)
    out = Path(args.out)
    write_json(out / f"{NAME}.json", NAME, rows, exploding=explode_rows, curves=curves, losses=losses,
               steps=args.steps, distance=args.distance, hidden=args.hidden, quick=args.quick)
    if plot(curves, losses, out / f"{NAME}.png"):
        print(f"wrote {out / f'{NAME}.png'}")


if __name__ == "__main__":
    main()
