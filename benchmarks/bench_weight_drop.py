"""Training-step throughput of a 2-layer LSTM language model with weight drop against the same model without.

Weight drop (``rnn_lightning.nn.weight_drop.WeightDropLSTM``, AWD-LSTM's DropConnect on ``weight_hh``) must keep
the fused LSTM kernel: its only extra work per step is one Bernoulli mask per hidden-to-hidden matrix and, where the
weights sit in one cuDNN buffer, one copy of the weights. The target is a throughput ratio >= 0.9.

Two paths, each with and without weight drop:

- ``module``: embedding (V, E) -> 2-layer LSTM (E -> H) -> linear decoder (H -> V); a step is forward, token-mean
  cross-entropy, backward and an SGD update on a (B, T) window. Both models start from the same weights. ``check``:
  in eval mode both give the same loss (weight drop is off), and in training with ``weight_drop=0`` too.
- ``LanguageModel``: the library's task, ``LanguageModel(weight_drop=0.5)`` against ``weight_drop=0`` (same shape,
  no other regulariser), each training batch in the real Trainer (training step, backward, clipping, SGD step) on a
  synthetic corpus of the same vocabulary; a batch's time is taken from its start to its end hooks. ``check``: the
  weight-drop model's LSTM is the weight-drop class and the other the plain ``torch.nn.LSTM``.

Samples go round robin over the two models; the medians are taken.

Usage: ``python benchmarks/bench_weight_drop.py [--out DIR] [--quick] [--repeats N] [--threads N] [--device D]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import print_table, round_robin, write_json  # noqa: E402
from rnn_lightning.nn.weight_drop import WeightDropLSTM  # noqa: E402

NAME = "bench_weight_drop"
SHAPES = {"small": dict(vocab=2_000, size=200, batch=20, steps=35),  # (V, E = H, B, T)
          "medium": dict(vocab=10_000, size=650, batch=20, steps=35)}
WEIGHT_DROP = 0.5  # AWD-LSTM's value


class LM(nn.Module):
    def __init__(self, vocab: int, size: int, weight_drop: float | None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, size)
        kwargs = dict(num_layers=2, batch_first=True)
        self.rnn = nn.LSTM(size, size, **kwargs) if weight_drop is None else \
            WeightDropLSTM(size, size, **kwargs, weight_drop=weight_drop)
        self.decoder = nn.Linear(size, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embedding(tokens))  # (B, T, H)
        return self.decoder(h)  # (B, T, V)


def loss_of(model: LM, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def make_step(model: LM, tokens: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, tokens).backward()
        optimizer.step()

    return step


def measure(shape: str, device: torch.device, repeats: int) -> dict[str, Any]:
    cfg = SHAPES[shape]
    torch.manual_seed(0)
    plain = LM(cfg["vocab"], cfg["size"], None).to(device)
    dropped = LM(cfg["vocab"], cfg["size"], WEIGHT_DROP).to(device)
    dropped.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["steps"] + 1), device=device)

    with torch.no_grad():  # the same model where weight drop is off
        same_eval = torch.equal(loss_of(plain.eval(), tokens), loss_of(dropped.eval(), tokens))
        dropped.rnn.weight_drop = 0.0
        same_zero = torch.equal(loss_of(plain.train(), tokens), loss_of(dropped.train(), tokens))
        dropped.rnn.weight_drop = WEIGHT_DROP

    steps = {"plain": make_step(plain, tokens), "weight drop": make_step(dropped, tokens)}
    plain_s, dropped_s = round_robin(steps, repeats).values()
    tokens_per_step = cfg["batch"] * cfg["steps"]
    return {"shape": shape, "path": "module", "V,H,B,T": f"{cfg['vocab']},{cfg['size']},{cfg['batch']},{cfg['steps']}",
            "plain_ms": plain_s * 1e3, "weight_drop_ms": dropped_s * 1e3,
            "plain_tok/s": tokens_per_step / plain_s, "weight_drop_tok/s": tokens_per_step / dropped_s,
            "throughput_ratio": plain_s / dropped_s,
            "check": "same loss in eval and at p=0" if same_eval and same_zero else "LOSSES DIFFER"}


class _BatchTimes:
    """Seconds of each training batch, start hook to end hook (CUDA synchronized)."""

    def __new__(cls, times: list[float]) -> Any:
        import lightning as L

        from benchmarks.common import _sync

        class Timer(L.Callback):
            def on_train_batch_start(self, *args: Any) -> None:
                _sync()
                self.start = time.perf_counter()

            def on_train_batch_end(self, *args: Any) -> None:
                _sync()
                times.append(time.perf_counter() - self.start)

        return Timer()


def measure_lightning(shape: str, device: torch.device, repeats: int, steps: int = 6) -> dict[str, Any]:
    """``LanguageModel`` with and without weight drop, ``steps`` timed batches per sample in the real Trainer."""
    import lightning as L

    from rnn_lightning import LanguageModel, MarkovCorpusDataModule

    cfg = SHAPES[shape]
    tokens = cfg["batch"] * (cfg["steps"] + 1) * (steps + 3)
    dm = MarkovCorpusDataModule(cfg["vocab"] - 4, train_tokens=tokens, validation_tokens=500, test_tokens=500,
                                batch_size=cfg["batch"], bptt=cfg["steps"])
    times: dict[str, list[float]] = {"plain": [], "weight drop": []}
    kinds = {}
    for _ in range(repeats):
        for name, weight_drop in (("plain", 0.0), ("weight drop", WEIGHT_DROP)):
            torch.manual_seed(0)
            model = LanguageModel(dm.vocab_size, pad_id=dm.pad_id, embedding_dim=cfg["size"],
                                  hidden_size=cfg["size"], num_layers=2, weight_drop=weight_drop,
                                  dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0)
            kinds[name] = type(model.net.encoder.rnn)
            batches: list[float] = []
            trainer = L.Trainer(accelerator=device.type, devices=1, max_steps=steps + 1, gradient_clip_val=0.25,
                                limit_val_batches=0, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[_BatchTimes(batches)])
            trainer.fit(model, dm)
            times[name].append(statistics.median(batches[1:]))  # the first batch warms up
    plain_s, dropped_s = (statistics.median(times[name]) for name in times)
    tokens_per_step = cfg["batch"] * cfg["steps"]
    right_classes = kinds["plain"] is nn.LSTM and kinds["weight drop"] is WeightDropLSTM
    return {"shape": shape, "path": "LanguageModel in the Trainer",
            "V,H,B,T": f"{cfg['vocab']},{cfg['size']},{cfg['batch']},{cfg['steps']}",
            "plain_ms": plain_s * 1e3, "weight_drop_ms": dropped_s * 1e3,
            "plain_tok/s": tokens_per_step / plain_s, "weight_drop_tok/s": tokens_per_step / dropped_s,
            "throughput_ratio": plain_s / dropped_s,
            "check": "weight drop only where asked" if right_classes else "WRONG LSTM CLASSES"}


OK = ("same loss in eval and at p=0", "weight drop only where asked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="the small shape only, 3 repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per model (default 15; quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", default=None, choices=list(SHAPES), help="default: all; quick: small")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    shapes = args.shapes or (["small"] if args.quick else list(SHAPES))
    device = torch.device(args.device)
    rows = [measure(shape, device, repeats) for shape in shapes]
    rows += [measure_lightning(shape, device, repeats) for shape in shapes]
    print_table(f"2-layer LSTM LM training step, weight drop {WEIGHT_DROP} vs none, on {device.type}: "
                f"median of {repeats}", rows)
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, repeats=repeats, device=str(device),
               weight_drop=WEIGHT_DROP)
    if any(row["check"] not in OK for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
