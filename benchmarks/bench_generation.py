"""Generation speed: ``sample_tokens`` (carried recurrent state) vs re-running the whole prefix per new token.

``sample_tokens`` feeds the context once (``net(context, None, last_only=True)``: only the last position is
decoded) and then makes one recurrent step per further token, none after the last one, so its cost per new token
should not depend on how long the prefix is. The baseline (written here) keeps no state: for every new token it
calls ``net(seq, None, last_only=True)`` on the whole sequence so far, i.e. runs the embedding and the recurrent
encoder over it and decodes the last position only (the cheapest way to generate without a cache; decoding
every position as ``net(seq)`` does would only add to its cost), so its cost per token grows linearly with the
prefix.

Both decode greedily from the same network and context, and the script checks that they emit the same ids.

Per-token cost is the marginal cost of a new token at that prefix length: ``(T(n) - T(1)) / (n - 1)``, where
``T(n)`` is the median time to produce ``n`` tokens from the prefix, so the one-off pass over the prefix is
excluded (it is reported separately as ``first_token_ms``: the time to produce 1 token, i.e. the latency
before the first new token: one pass over the prefix for both methods). Each sample times ``n`` tokens right
after 1 token; samples go round robin over prefixes and methods, ``repeats`` times, and the medians are taken
over repeats.

Usage:
    python benchmarks/bench_generation.py [--out DIR] [--quick] [--device cpu|cuda] [--precision 32|bf16-mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

if __package__ in (None, ""):  # run as `python benchmarks/bench_generation.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_seconds, print_table, write_json  # noqa: E402
from rnn_lightning.nn import EncoderConfig, RNNLanguageModelNet  # noqa: E402
from rnn_lightning.nn.sampling import sample_tokens  # noqa: E402

NAME = "bench_generation"
CHECK_TOKENS = 8  # the first ids both methods must agree on


@dataclass(frozen=True)
class Config:
    vocab: int
    dim: int
    layers: int
    prefixes: tuple[int, ...]
    new_tokens: int  # tokens per timed call of sample_tokens
    baseline_new_tokens: int  # tokens per timed call of the baseline (each costs a pass over the prefix)
    repeats: int


def config(quick: bool, device: str) -> Config:
    if quick:
        return Config(1000, 64, 2, (16, 64), 64, 16, 5)
    if device == "cuda":
        return Config(33_278, 650, 2, (16, 64, 256, 1024), 128, 16, 5)
    return Config(33_278, 650, 2, (16, 64, 256, 1024), 64, 8, 5)


@torch.no_grad()
def recompute_generate(net: RNNLanguageModelNet, context: Tensor, max_new_tokens: int) -> list[int]:
    """Greedy decoding without a carried state: every new token re-encodes the whole sequence so far."""
    seq = context.unsqueeze(0)  # (1, T)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits, _ = net(seq, None, last_only=True)  # (1, 1, V): the whole sequence from a zero state, last decoded
        token = logits[:, -1].float().argmax(-1)  # (1,)
        new.append(int(token))
        seq = torch.cat([seq, token.view(1, 1)], dim=1)
    return new


def incremental_generate(net: RNNLanguageModelNet, context: Tensor, max_new_tokens: int) -> list[int]:
    return sample_tokens(net, context, max_new_tokens=max_new_tokens, greedy=True)


def paired_time(generate, net, context: Tensor, n: int) -> tuple[float, float]:
    """(T(1), T(n) - T(1)): ``n`` tokens timed right after 1 token, so that drifts hit both alike."""
    t1 = median_seconds(partial(generate, net, context, 1), repeats=1, warmup=0)
    tn = median_seconds(partial(generate, net, context, n), repeats=1, warmup=0)
    return t1, tn - t1


METHODS = {
    "sample_tokens (carried state)": (incremental_generate, "new_tokens"),
    "baseline: re-run prefix per token": (recompute_generate, "baseline_new_tokens"),
}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for bench_generation.json")
    parser.add_argument("--quick", action="store_true", help="small model, prefixes 16 and 64: a smoke test")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args.quick, args.device)

    torch.manual_seed(args.seed)
    encoder = EncoderConfig(embedding_dim=cfg.dim, hidden_size=cfg.dim, num_layers=cfg.layers, pad_id=None)
    net = RNNLanguageModelNet(cfg.vocab, encoder=encoder, tie_weights=True).to(args.device)
    net.eval()
    g = torch.Generator().manual_seed(args.seed)
    longest = torch.randint(0, cfg.vocab, (max(cfg.prefixes),), generator=g).to(args.device)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    print(f"LSTM {cfg.dim}x{cfg.layers} tied, vocab {cfg.vocab}, {args.device}, precision {args.precision}, "
          f"{torch.get_num_threads()} threads; prefixes {cfg.prefixes}", flush=True)
    contexts = {prefix: longest[:prefix] for prefix in cfg.prefixes}
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {}
    with autocast():
        for prefix, context in contexts.items():  # same ids from both methods (greedy); doubles as warmup
            ours = incremental_generate(net, context, CHECK_TOKENS)
            theirs = recompute_generate(net, context, CHECK_TOKENS)
            if ours != theirs:
                raise AssertionError(f"prefix {prefix}: sample_tokens gave {ours}, the baseline {theirs}")
        for r in range(cfg.repeats):  # round robin over prefixes and methods: drifts spread over all cells
            for prefix, context in contexts.items():
                for method, (generate, count_field) in METHODS.items():
                    sample = paired_time(generate, net, context, getattr(cfg, count_field))
                    samples.setdefault((prefix, method), []).append(sample)
            print(f"  repeat {r + 1}/{cfg.repeats} done", flush=True)

    rows: list[dict[str, Any]] = []
    for prefix in cfg.prefixes:
        per_token: dict[str, float] = {}
        for method, (_, count_field) in METHODS.items():
            n = getattr(cfg, count_field)
            ones, diffs = zip(*samples[prefix, method])
            per_token[method] = max(statistics.median(diffs), 0.0) / (n - 1)
            rows.append({
                "prefix": prefix,
                "method": method,
                "new_tokens": n,
                "first_token_ms": 1000 * statistics.median(ones),
                "per_token_ms": 1000 * per_token[method],
                "tokens_per_s": 1 / per_token[method] if per_token[method] > 0 else float("inf"),
                "speedup": "",
                "same_ids": f"{CHECK_TOKENS}/{CHECK_TOKENS}",
            })
        ours_ms, base_ms = per_token.values()
        rows[-2]["speedup"] = base_ms / ours_ms if ours_ms > 0 else float("inf")

    short, long = min(cfg.prefixes), max(cfg.prefixes)
    growth = []
    for method in METHODS:
        by_prefix = {r["prefix"]: r["per_token_ms"] for r in rows if r["method"] == method}
        ratio = by_prefix[long] / by_prefix[short]
        flat = method.startswith("sample_tokens")
        growth.append({
            "method": method,
            f"per_token_ms@{short}": by_prefix[short],
            f"per_token_ms@{long}": by_prefix[long],
            f"ratio {long}/{short}": ratio,
            "target": "~1 (flat: 0.67-1.5)" if flat else f"grows ~linearly (length ratio {long / short:g})",
            "met": ("yes" if 1 / 1.5 <= ratio <= 1.5 else "no (noisy?)" if ratio < 1 else "no") if flat else "",
        })

    title = f"Generation ({args.device}, precision {args.precision}{', quick' if args.quick else ''})"
    print_table(f"{title}: per-token cost by prefix length", rows)
    print_table(f"{title}: per-token cost, longest vs shortest prefix", growth)
    out = Path(args.out) / f"{NAME}.json"
    write_json(out, NAME, rows, growth=growth, device=args.device, precision=args.precision, quick=args.quick,
               threads=torch.get_num_threads(), config=cfg.__dict__)
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
