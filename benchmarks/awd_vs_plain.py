"""AWD-LSTM's regularisers against a plain LSTM of the same size, the same minutes each, on WikiText-2 (CPU).

Both models are AWD-LSTM's network shape (``--layers`` LSTM layers of ``--hidden``, the last of ``--embedding`` so
the tied decoder needs no projection), trained with the same SGD learning rate and gradient clipping through the real
Trainer. The AWD model adds every regulariser of ``recipes/lm/awd_lstm_wikitext2.yaml`` (locked dropouts
0.65 / 0.2 / 0.4, embedding dropout 0.1, weight drop 0.5, AR 2, TAR 1, weight decay 1.2e-6, variable-length BPTT);
the plain one has none (its dropouts are 0). NT-ASGD is left out: it waits for validation to stall, which a budget of
minutes does not reach. Each run trains for ``--minutes`` of training time (evaluation excluded), validating on a
quarter of the validation windows ``--evals`` times along the way and on the whole split at the end; the two runs
go in parallel, one thread each.

Writes ``--out``/awd_vs_plain.json (both curves: training seconds, steps, tokens, validation perplexity) and prints a
markdown table of the curves.

Usage: ``python benchmarks/awd_vs_plain.py --minutes 25 --embedding 100 --hidden 200 --train-fraction 0.05
--figure docs/figures/awd_vs_plain.png`` (the first 5% of the training lines: a corpus the plain
model overfits within the budget, the regime the regularisers are for; on the whole split that takes a GPU)
(``--minutes 1 --embedding 32 --hidden 64 --vocab 5000``: a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import CORPORA, first_lines, print_table, write_json  # noqa: E402

NAME = "awd_vs_plain"
AWD = dict(locked_dropout=True, dropout_embedding=0.65, dropout_between=0.2, dropout_output=0.4, dropout_words=0.1,
           weight_drop=0.5, ar_alpha=2.0, tar_beta=1.0)  # recipes/lm/awd_lstm_wikitext2.yaml
PLAIN = dict(dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0)
WEIGHT_DECAY = 1.2e-6  # AWD's, for the AWD model only


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="training minutes per model")
    parser.add_argument("--data", default=str(CORPORA), help="folder holding wikitext-2/{train,valid,test}.txt")
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="train on the first this fraction of the training lines (validation whole)")
    parser.add_argument("--figure", default=None, help="also draw both curves into this PNG (needs matplotlib)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--embedding", type=int, default=200, help="embedding size = the last layer's size")
    parser.add_argument("--hidden", type=int, default=400, help="the other layers' size")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=None, help="max vocabulary (default: all of WikiText-2's)")
    parser.add_argument("--batch", type=int, default=20, help="training streams")
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--lr", type=float, default=30.0, help="SGD learning rate (AWD-LSTM's 30)")
    parser.add_argument("--evals", type=int, default=6, help="validations (on a quarter of the windows) on the way")
    parser.add_argument("--worker", choices=["awd", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    return parser


def step_seconds(model: Any, dm: Any, steps: int = 3) -> float:
    """Seconds of one training step of ``model`` on a (batch, bptt) window (forward, backward), measured."""
    import torch

    tokens = torch.randint(4, dm.vocab_size, (dm.batch_size, dm.bptt + 1))
    net = model.net.train()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        logits, _ = net(tokens[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
        times.append(time.perf_counter() - start)
    net.zero_grad(set_to_none=True)
    return min(times[1:])


def worker(kind: str, args: argparse.Namespace, out: Path) -> None:
    """Train one model for the budget and write its curve to ``out``."""
    import lightning as L
    import torch

    from rnn_lightning import LanguageModel, LanguageModelingDataModule

    torch.set_num_threads(1)
    L.seed_everything(1882, verbose=False)
    root = Path(args.data) / "wikitext-2"
    files = {"train": str(root / "train.txt"), "validation": str(root / "valid.txt"), "test": str(root / "test.txt")}
    if args.train_fraction < 1.0:  # the first lines of the split: a corpus small enough to overfit in the budget
        files["train"] = str(first_lines(root / "train.txt", args.train_fraction, out.with_suffix(".train.txt")))
    dm = LanguageModelingDataModule("text", data_files=files, batch_size=args.batch, eval_batch_size=10,
                                    bptt=args.bptt, max_vocab_size=args.vocab, variable_bptt=kind == "awd")
    settings = AWD if kind == "awd" else PLAIN
    decay = WEIGHT_DECAY if kind == "awd" else 0.0
    model = LanguageModel(dm.vocab_size, pad_id=dm.pad_id, embedding_dim=args.embedding, hidden_size=args.hidden,
                          num_layers=args.layers, last_hidden_size=args.embedding, tie_weights=True, **settings,
                          optimizer=lambda p: torch.optim.SGD(p, lr=args.lr, weight_decay=decay))
    budget = args.minutes * 60.0
    every = max(1, round(budget / (args.evals + 1) / step_seconds(model, dm)))  # steps between validations
    clock = TrainClock(budget)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=-1, gradient_clip_val=0.25, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        val_check_interval=every, check_val_every_n_epoch=None, limit_val_batches=0.25,
                        num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(model, dm)
    (final,) = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False).validate(model, dm, verbose=False)
    clock.point(trainer, final["val/ppl"], whole=True)
    parameters = sum(p.numel() for p in model.parameters())
    out.write_text(json.dumps({"model": kind, "parameters": parameters, "vocab": dm.vocab_size,
                               "settings": {**settings, "weight_decay": decay, "variable_bptt": kind == "awd"},
                               "curve": clock.curve}, indent=2))


class TrainClock:
    """Counts training time (batches only, evaluation excluded), stops the fit at the budget, records the curve."""

    def __new__(cls, budget_s: float) -> Any:  # a Lightning callback, imported only in the worker
        import lightning as L

        class _Clock(L.Callback):
            def __init__(self) -> None:
                self.budget_s, self.train_s, self.tokens, self.curve = budget_s, 0.0, 0, []
                self._start = 0.0

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                self._start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self.train_s += time.perf_counter() - self._start
                self.tokens += batch[0].numel()
                if self.train_s >= self.budget_s:
                    trainer.should_stop = True

            def on_validation_end(self, trainer, pl_module) -> None:
                if not trainer.sanity_checking and trainer.state.fn == "fit":
                    self.point(trainer, trainer.callback_metrics["val/ppl"], whole=False)

            def point(self, trainer, ppl, whole: bool) -> None:
                self.curve.append({"train_s": round(self.train_s, 1), "step": trainer.global_step,
                                   "tokens": self.tokens, "val_ppl": float(ppl), "whole_split": whole})

        return _Clock()


def main() -> None:
    args = build_parser().parse_args()
    if args.worker:
        worker(args.worker, args, Path(args.worker_out))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    parts = {kind: out / f"{NAME}.{kind}.json" for kind in ("awd", "plain")}
    started = time.perf_counter()
    runs = {kind: subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker", kind, "--worker-out",
                                    str(path)], env=env) for kind, path in parts.items()}
    if any(run.wait() != 0 for run in runs.values()):
        sys.exit("a run failed (see its output above)")
    results = {kind: json.loads(path.read_text()) for kind, path in parts.items()}
    for path in parts.values():
        path.unlink()
        path.with_suffix(".train.txt").unlink(missing_ok=True)
    rows = []
    for kind, result in results.items():
        rows += [{"model": kind, **point} for point in result["curve"]]
    final = {kind: result["curve"][-1]["val_ppl"] for kind, result in results.items()}
    print_table(f"WikiText-2 validation perplexity against training time, {args.minutes:g} min each, CPU 1 thread "
                f"(E={args.embedding}, H={args.hidden}, {args.layers} layers, "
                f"{results['awd']['parameters']:,} parameters)", rows)
    print(f"\nwhole validation split at the end: AWD {final['awd']:.2f}, plain {final['plain']:.2f} "
          f"({'AWD better' if final['awd'] < final['plain'] else 'plain better'}); "
          f"{time.perf_counter() - started:.0f} s in all")
    if args.figure:
        draw(rows, Path(args.figure), title=f"WikiText-2 (first {args.train_fraction:.0%} of train), "
                                            f"{args.minutes:g} min each, CPU")
    write_json(out / f"{NAME}.json", NAME, rows, args={k: v for k, v in vars(args).items() if "worker" not in k},
               models={kind: {k: v for k, v in result.items() if k != "curve"} for kind, result in results.items()},
               final_val_ppl=final)


def draw(rows: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Validation perplexity against training minutes, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, label in (("awd", "AWD regularisers"), ("plain", "plain LSTM")):
        points = [r for r in rows if r["model"] == kind and not r["whole_split"]]
        ax.plot([r["train_s"] / 60 for r in points], [r["val_ppl"] for r in points], marker="o", label=label)
    ax.set(xlabel="training minutes", ylabel="validation perplexity", title=title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
