"""Deep recurrent stacks with and without direct connections: does the lower layers' gradient vanish, and does
the model learn? Character-level language models on tiny-shakespeare, in the Trainer, one run per connection.

For each cell (simple tanh RNN, LSTM) and each ``connection`` (none, residual, dense, highway) of a ``layers``-deep
stack: the first layer's gradient norm at initialisation (the mean over 4 batches), then ``steps`` Adam steps of
``LanguageModel`` in the Trainer, then the validation loss in bits per character and the training time per step
(a connected stack runs its layers one by one instead of one fused call). Same seed, data and steps for every run.

Usage:
    python benchmarks/deep_stacks.py [--out DIR] [--layers 6] [--steps 400] [--quick] [--data FILE]
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
import torch.nn.functional as F

if __package__ in (None, ""):  # run as `python benchmarks/deep_stacks.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CORPORA, print_table, write_json  # noqa: E402
from rnn_lightning import LanguageModel, LanguageModelingDataModule  # noqa: E402
from rnn_lightning.constants import IGNORE_INDEX  # noqa: E402
from rnn_lightning.nn.stack import CONNECTIONS  # noqa: E402

NAME = "deep_stacks"
DATA = CORPORA / "tinyshakespeare" / "input.txt"


def data_module(path: Path, quick: bool) -> LanguageModelingDataModule:
    holdout = {"validation": 0.05, "test": 0.05}
    dm = LanguageModelingDataModule(path="text", data_files=str(path), holdout=holdout, tokenizer="char",
                                    batch_size=32, eval_batch_size=16, bptt=32 if quick else 64)
    dm.setup("fit")
    return dm


def first_layer_grad_norm(model: LanguageModel, dm: LanguageModelingDataModule, batches: int = 4) -> float:
    """Mean norm of the first recurrent layer's input-weight gradient over the first ``batches`` windows."""
    stack = model.net.encoder.rnn
    weight = (stack if model.hparams.connection == "none" else stack.layers[0]).weight_ih_l0
    norms = []
    for index, batch in enumerate(dm.train_dataloader()):
        if index == batches:
            break
        inputs, targets = batch  # (B, T), (B, T)
        model.zero_grad()
        logits, _ = model(inputs)  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX).backward()
        norms.append(weight.grad.norm().item())
    model.zero_grad()
    return sum(norms) / len(norms)


def run(cell: str, connection: str, args: argparse.Namespace, dm: LanguageModelingDataModule) -> dict[str, Any]:
    L.seed_everything(0, verbose=False)
    model = LanguageModel(vocab_size=dm.vocab_size, pad_id=dm.pad_id, embedding_dim=args.hidden,
                          hidden_size=args.hidden, num_layers=args.layers, cell=cell, dropout_embedding=0.0,
                          dropout_between=0.1, dropout_output=0.1, connection=connection,
                          optimizer=lambda params: torch.optim.Adam(params, lr=2e-3))
    grad_at_init = first_layer_grad_norm(model, dm)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, gradient_clip_val=1.0,
                            limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
        start = time.perf_counter()
        trainer.fit(model, dm)
        seconds = time.perf_counter() - start
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=root)
        val_loss = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    return {
        "cell": cell,
        "connection": connection,
        "first_layer_grad_at_init": grad_at_init,
        "val_bits_per_char": val_loss / math.log(2),
        "ms_per_step": 1000 * seconds / args.steps,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for deep_stacks.json")
    parser.add_argument("--data", default=str(DATA), help="a plain text file (tiny-shakespeare's input.txt)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cells", default="rnn_tanh,lstm", help="comma-separated cells")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 layers of 32, 20 steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.steps = 3, 32, 20
    if not Path(args.data).is_file():
        parser.error(f"--data: {args.data} not found; pass a text file (e.g. tiny-shakespeare's input.txt)")
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    dm = data_module(Path(args.data), args.quick)
    rows = []
    for cell in args.cells.split(","):
        for connection in CONNECTIONS:
            row = run(cell, connection, args, dm)
            rows.append(row)
            print(f"  {cell} {connection}: {row}", flush=True)
        plain = rows[-len(CONNECTIONS)]
        for row in rows[-len(CONNECTIONS):]:
            row["grad_vs_none"] = row["first_layer_grad_at_init"] / plain["first_layer_grad_at_init"]
            row["time_vs_none"] = row["ms_per_step"] / plain["ms_per_step"]
    print_table(f"{args.layers}-layer stacks, {args.hidden} units, {args.steps} steps, tiny-shakespeare chars", rows)
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, layers=args.layers, hidden=args.hidden,
               steps=args.steps, data=args.data, quick=args.quick)
    return rows


if __name__ == "__main__":
    main()
