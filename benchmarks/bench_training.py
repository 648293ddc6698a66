"""Training throughput: ``LanguageModel`` inside ``lightning.Trainer`` vs a hand-written PyTorch loop.

Both sides train the identical network (``RNNLanguageModelNet``, same init seed, same dropout stream), on the
identical data (synthetic random ids cut by ``TokenStreams`` into ``StreamWindows``), with SGD lr 20, gradient
clipping by norm 0.25 and truncated BPTT (state carried and detached between windows, loss = summed
cross-entropy / token count over float32 logits), for the same number of steps. The per-step losses of the two
are compared, so the script also checks that it times the same computation.

Timing is steady state: the clock starts at the beginning of step ``warmup`` and stops at the end of the last
step (CUDA synchronized), so Trainer startup and the first steps are excluded. Contenders are interleaved, in a
rotating order, ``repeats`` times; the table shows medians.

Rows:
    raw loop               the hand-written loop (the reference, ratio 1).
    LanguageModel+Trainer  ``rnn_lightning.LanguageModel`` in ``lightning.Trainer`` (what this library ships).
    plain LightningModule  the same network in a minimal LightningModule (loss, carried state, SGD; no logging, no
                           checks): the floor of Lightning's own per-step cost. Default: on GPU and --quick.
    per-step host reads    ``LanguageModel`` as it was before its steps became sync-free: the loss on the progress bar
                           (Lightning reads progress-bar values with ``.item()`` every step) and the gradient norm's
                           finiteness read on the host every step. Each read waits for the GPU to finish the step,
                           so the host cannot queue the next one. Default: on GPU and --quick.
    demo LightningLSTM     ``lightning.pytorch.demos.LightningLSTM``: Lightning's own LSTM language model (a
                           different network: 4x512 untied LSTM, 0.2 dropout; run on the same data, clip and
                           optimizer), i.e. what Lightning users get today. No raw twin, so no ratio.
On CPU (full run) the batch-64 shape runs only the raw loop and LanguageModel, to keep the run short
(``--extras-everywhere`` adds the other rows there). ``--quick`` uses a tiny network, where the step is a few
ms: it mostly measures the Trainer's fixed per-step cost (``overhead_ms_per_step``).

Usage:
    python benchmarks/bench_training.py [--out DIR] [--quick] [--device cpu|cuda] [--precision 32|bf16-mixed]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

if __package__ in (None, ""):  # run as `python benchmarks/bench_training.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning import LanguageModel  # noqa: E402
from rnn_lightning.constants import IGNORE_INDEX  # noqa: E402
from rnn_lightning.data.streams import StreamWindows, TokenStreams  # noqa: E402
from rnn_lightning.nn import EncoderConfig, RNNLanguageModelNet, detach_state  # noqa: E402
from rnn_lightning.tasks import common as task_common  # noqa: E402

NAME = "bench_training"
LR = 20.0
CLIP = 0.25
PAD_ID = 0

try:  # Lightning's demo LSTM language model (lightning >= 2.1)
    from lightning.pytorch.demos import LightningLSTM, SimpleLSTM
except ImportError:  # pragma: no cover - depends on the installed lightning
    LightningLSTM = SimpleLSTM = None


@dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    dim: int  # embedding = hidden
    layers: int
    batch: int
    bptt: int
    warmup: int
    steps: int
    dropout: float = 0.5
    demo_dim: int = 512  # LightningLSTM's own sizes (SimpleLSTM defaults)
    demo_layers: int = 4
    extras: bool = True  # also run the variant and demo rows at this shape

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.bptt


def shapes(quick: bool, device: str, steps: int | None, warmup: int | None, extras: bool) -> list[Shape]:
    """pytorch/examples word_language_model (650x2 tied LSTM, batch 20, bptt 35) and a larger batch/window."""
    if quick:  # tiny network: seconds in all; mostly measures the fixed per-step cost of the Trainer
        base = [Shape("quick b8 t16", 1000, 64, 2, 8, 16, 5, 50), Shape("quick b16 t32", 1000, 64, 2, 16, 32, 5, 50)]
        base = [replace(s, demo_dim=64, demo_layers=2) for s in base]
    elif device == "cuda":
        base = [Shape("650x2 b20 t35", 33_278, 650, 2, 20, 35, 20, 200),
                Shape("650x2 b64 t70", 33_278, 650, 2, 64, 70, 10, 100)]
    else:  # CPU steps take seconds (the LSTM dominates): to keep a full run short, the batch-64 shape runs the
        # raw loop and LanguageModel only (the Trainer's per-step overhead is noise there)
        base = [Shape("650x2 b20 t35", 33_278, 650, 2, 20, 35, 1, 3),
                Shape("650x2 b64 t70", 33_278, 650, 2, 64, 70, 1, 2, extras=False)]
    return [replace(s, steps=steps or s.steps, warmup=s.warmup if warmup is None else warmup,
                    extras=s.extras or extras) for s in base]


def make_loader(shape: Shape, device: str, seed: int) -> DataLoader:
    """Exactly ``warmup + steps`` full windows of synthetic ids, as the LanguageModelingDataModule serves them."""
    num_windows = shape.warmup + shape.steps
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, shape.vocab, (shape.batch * shape.bptt * num_windows + 1,), generator=g)
    windows = StreamWindows(TokenStreams(ids, shape.batch, pad_id=PAD_ID, drop_remainder=True), shape.bptt)
    assert len(windows) == num_windows
    return DataLoader(windows, batch_size=None, pin_memory=device == "cuda")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Run:
    seconds: float
    losses: list[float] = field(default_factory=list)


# -- the reference: a hand-written loop ---------------------------------------------------------------------------
def raw_loop(shape: Shape, device: str, precision: str, seed: int, at_step: Callable[[int], Any]) -> list[Tensor]:
    """Train with the hand-written loop; return each step's loss. ``at_step(i)`` runs once step ``i``'s batch is
    on the device, before its computation, and ``at_step(warmup + steps)`` after the last step."""
    torch.manual_seed(seed)
    encoder = EncoderConfig(embedding_dim=shape.dim, hidden_size=shape.dim, num_layers=shape.layers, cell="lstm",
                            dropout=shape.dropout, pad_id=PAD_ID)
    net = RNNLanguageModelNet(shape.vocab, encoder=encoder, tie_weights=True).to(device)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    bf16 = precision == "bf16-mixed"
    state, losses = None, []
    for i, (inputs, targets) in enumerate(make_loader(shape, device, seed)):
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if i == 0:
            torch.manual_seed(seed + 1)  # the dropout stream, reseeded at the same point on both sides
        at_step(i)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits, state = net(inputs, state)
            state = detach_state(state)
            nll_sum = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            loss = nll_sum / (targets != IGNORE_INDEX).sum().clamp(min=1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.detach())
    at_step(len(losses))
    return losses


def run_raw(shape: Shape, device: str, precision: str, seed: int) -> Run:
    clock: dict[int, float] = {}
    end = shape.warmup + shape.steps

    def at_step(i: int) -> None:
        if i in (shape.warmup, end):
            _sync(device)
            clock[i] = time.perf_counter()

    losses = raw_loop(shape, device, precision, seed, at_step)
    assert len(losses) == end
    return Run(clock[end] - clock[shape.warmup], [float(x) for x in losses])


# -- the Trainer side ----------------------------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Clock from ``on_train_batch_start`` of step ``warmup`` to ``on_train_batch_end`` of the last step."""

    def __init__(self, warmup: int, last: int, seed: int, device: str) -> None:
        self.warmup, self.last, self.seed, self.device = warmup, last, seed, device
        self.start = self.end = None
        self.losses: list[Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            torch.manual_seed(self.seed + 1)  # the dropout stream, reseeded at the same point as the raw loop
        if batch_idx == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"] if isinstance(outputs, dict) else outputs)
        if batch_idx == self.last:
            _sync(self.device)
            self.end = time.perf_counter()


class PerStepHostReadsLanguageModel(LanguageModel):
    """``LanguageModel`` with the two per-step host reads it had before (benchmark only, not library code).

    ``train/loss`` on the progress bar: Lightning converts every progress-bar value with ``.item()`` at every batch
    end (``_ResultCollection.metrics``), even with the bar disabled. And ``bool(isfinite(norm))`` before the optimizer
    step. Each is a device-to-host copy that waits for the whole queued step.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finite_guard = _ImmediateFiniteCheck()

    def log_train_loss(self, loss: Tensor, **kwargs: Any) -> None:
        self._last_loss = loss.detach()
        self.log("train/loss", self._last_loss, prog_bar=True, **kwargs)


class PlainLanguageModel(L.LightningModule):
    """The least a LightningModule needs for this training: the network, the carried state and the loss."""

    def __init__(self, net: RNNLanguageModelNet) -> None:
        super().__init__()
        self.net, self.state = net, None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, targets = batch
        logits, state = self.net(inputs, self.state)
        self.state = detach_state(state)
        nll_sum = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return nll_sum / (targets != IGNORE_INDEX).sum().clamp(min=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


class _ImmediateFiniteCheck:
    def check(self, module: L.LightningModule, norm: Tensor, loss: Tensor | None, *args: Any, **kwargs: Any) -> None:
        if not torch.isfinite(norm):
            raise FloatingPointError(f"the gradient is not finite at step {module.global_step}")

    def resolve(self) -> None:
        pass


if LightningLSTM is not None:

    class DemoLSTM(LightningLSTM):
        """``LightningLSTM`` fed with our loader (its own loader downloads WikiText-2), otherwise unchanged."""

        def __init__(self, shape: Shape, loader: DataLoader) -> None:
            super().__init__(vocab_size=shape.vocab)
            if (shape.demo_dim, shape.demo_layers) != (512, 4):  # quick mode: shrink it like our network
                self.model = SimpleLSTM(shape.vocab, shape.demo_dim, shape.demo_dim, shape.demo_layers)
            self._loader = loader

        def prepare_data(self) -> None:
            pass

        def train_dataloader(self) -> DataLoader:
            return self._loader

        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return tuple(t.contiguous() for t in batch)  # its `target.view(-1)` needs contiguous windows


def build_module(kind: str, shape: Shape, loader: DataLoader) -> L.LightningModule:
    if kind == "demo":
        return DemoLSTM(shape, loader)
    cls = PerStepHostReadsLanguageModel if kind == "per_step_host_reads" else LanguageModel
    module = cls(
        vocab_size=shape.vocab, pad_id=PAD_ID, embedding_dim=shape.dim, hidden_size=shape.dim,
        num_layers=shape.layers, cell="lstm", dropout_embedding=shape.dropout, dropout_between=shape.dropout,
        dropout_output=shape.dropout, tie_weights=True, optimizer=lambda params: torch.optim.SGD(params, lr=LR),
    )  # the raw loop's optimizer
    return PlainLanguageModel(module.net) if kind == "plain" else module


def fit_in_trainer(kind: str, shape: Shape, device: str, precision: str, seed: int, callback: L.Callback) -> None:
    """Train contender ``kind`` for ``warmup + steps`` steps in ``lightning.Trainer``, with ``callback``."""
    torch.manual_seed(seed)  # same init as the raw loop (the network is built first in LanguageModel.__init__)
    loader = make_loader(shape, device, seed)
    module = build_module(kind, shape, loader)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator=device, devices=1, precision="32-true" if precision == "32" else precision,
            max_epochs=1, max_steps=shape.warmup + shape.steps, gradient_clip_val=CLIP,
            gradient_clip_algorithm="norm", callbacks=[callback], enable_progress_bar=False, logger=False,
            enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
            default_root_dir=root,
        )
        if kind == "demo":
            trainer.fit(module)
        else:
            trainer.fit(module, train_dataloaders=loader)


def run_trainer(kind: str, shape: Shape, device: str, precision: str, seed: int) -> Run:
    timer = StepTimer(shape.warmup, shape.warmup + shape.steps - 1, seed, device)
    fit_in_trainer(kind, shape, device, precision, seed, timer)
    assert timer.start is not None and timer.end is not None, "the timed steps did not run"
    return Run(timer.end - timer.start, [float(x) for x in timer.losses])


CONTENDERS = {
    "raw": "raw loop",
    "lightning": "LanguageModel+Trainer",
    "plain": "plain LightningModule+Trainer (same net, no logging or checks)",
    "per_step_host_reads": "LanguageModel with per-step host reads (loss on bar, finite check)",
    "demo": "demo LightningLSTM+Trainer",
}


def bench_shape(shape: Shape, device: str, precision: str, repeats: int, kinds: list[str], seed: int) -> list[dict]:
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    for r in range(repeats):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]  # rotate to spread drift over contenders
        for kind in order:
            run = run_raw(shape, device, precision, seed) if kind == "raw" else run_trainer(
                kind, shape, device, precision, seed
            )
            runs[kind].append(run)
            print(f"  [{shape.name}] repeat {r + 1}/{repeats} {kind}: {run.seconds:.3f} s", flush=True)
    raw_s = statistics.median(run.seconds for run in runs["raw"])
    raw_losses = runs["raw"][0].losses
    rows = []
    for kind in kinds:
        seconds = statistics.median(run.seconds for run in runs[kind])
        same_net = kind != "demo"
        diff = max(abs(a - b) for a, b in zip(runs[kind][0].losses, raw_losses)) if same_net else None
        rows.append({
            "shape": shape.name,
            "contender": CONTENDERS[kind],
            "steps": shape.steps,
            "median_s": seconds,
            "ms_per_step": 1000 * seconds / shape.steps,
            "tokens_per_s": shape.tokens_per_step * shape.steps / seconds,
            "ratio_vs_raw": raw_s / seconds if same_net else "n/a (other net)",
            "overhead_ms_per_step": 1000 * (seconds - raw_s) / shape.steps if same_net else "n/a",
            "max_loss_diff": diff if same_net else "n/a",
            "all_s": [round(run.seconds, 4) for run in runs[kind]],
        })
    return rows


def targets(device: str, shape: Shape, quick: bool) -> float | None:
    """Ratio targets from the issue (none for the tiny quick shapes)."""
    if quick:
        return None
    if device == "cpu":
        return 0.95
    return 0.97 if shape.batch >= 64 else 0.90


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results",
                        help="folder for bench_training.json (bench_training_bf16.json with bf16-mixed)")
    parser.add_argument("--quick", action="store_true", help="tiny network, few steps: a smoke test")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3, quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default per shape)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per run (default per shape)")
    parser.add_argument("--variants", choices=("none", "all"), default=None,
                        help="extra rows (all: a plain LightningModule, and LanguageModel with the per-step host "
                        "reads it had before; default: all on cuda or --quick, else none)")
    parser.add_argument("--extras-everywhere", action="store_true",
                        help="CPU: also run the variant and demo rows at the batch-64 shape (slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-demo", action="store_true", help="skip Lightning's demo LightningLSTM row")
    parser.add_argument("--shape", choices=("all", "small", "large"), default="all",
                        help="run both shapes (default), or only the first (small) or second (large)")
    parser.add_argument("--gpu-logging", action="store_true",
                        help="on CPU, log as LanguageModel does on a GPU (train/loss on logging steps only): the "
                        "GPU path's host cost, measured on a CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.gpu_logging:  # what decides the logging path: a GPU tensor is not free to read on the host
        task_common.host_reads_are_free = lambda tensor: False
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*__len__.*")
    warnings.filterwarnings("ignore", ".*logger=True.*no logger configured.*")
    warnings.filterwarnings("ignore", ".*validation_step.*no `val_dataloader`.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # same math on both sides, whatever the defaults
        torch.backends.cudnn.allow_tf32 = False

    kinds = ["raw", "lightning"]
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants or ("all" if args.quick or args.device == "cuda" else "none")
    kinds += {"none": [], "all": ["plain", "per_step_host_reads"]}[variants]
    demo_note = "lightning.pytorch.demos.LightningLSTM (SimpleLSTM 4x512 untied, dropout 0.2, SGD lr 20)"
    if LightningLSTM is None:
        demo_note = "lightning.pytorch.demos has no LightningLSTM in this lightning version: row skipped"
        print(demo_note)
    elif not args.no_demo:
        kinds.append("demo")
    repeats = args.repeats or 3

    rows: list[dict[str, Any]] = []
    run_shapes = shapes(args.quick, args.device, args.steps, args.warmup, args.extras_everywhere)
    run_shapes = {"all": run_shapes, "small": run_shapes[:1], "large": run_shapes[1:]}[args.shape]
    for shape in run_shapes:
        print(f"{shape.name}: vocab {shape.vocab}, {shape.dim}x{shape.layers} LSTM tied, batch {shape.batch}, "
              f"bptt {shape.bptt}, warmup {shape.warmup} + {shape.steps} timed steps", flush=True)
        shape_kinds = kinds if shape.extras else ["raw", "lightning"]
        shape_rows = bench_shape(shape, args.device, args.precision, repeats, shape_kinds, args.seed)
        target = targets(args.device, shape, args.quick)
        for row in shape_rows:
            scored = target is not None and isinstance(row["ratio_vs_raw"], float) and row["contender"] != "raw loop"
            row["target"] = target if scored else ""
            row["met"] = ("yes" if row["ratio_vs_raw"] >= target else "no") if scored else ""
        rows.extend(shape_rows)

    table = [{k: v for k, v in row.items() if k != "all_s"} for row in rows]
    title = f"Training throughput ({args.device}, precision {args.precision}{', quick' if args.quick else ''})"
    print_table(title, table)
    out = Path(args.out) / f"{NAME}{'' if args.precision == '32' else '_bf16'}.json"
    write_json(out, NAME, rows, device=args.device, threads=torch.get_num_threads(), precision=args.precision,
               quick=args.quick, repeats=repeats, shapes=[shape.__dict__ for shape in run_shapes],
               lightning=L.__version__, demo=demo_note, contenders=CONTENDERS)
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
