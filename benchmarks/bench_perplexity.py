"""``rnn_lightning.Perplexity`` vs ``torchmetrics.text.Perplexity``: time, peak memory and accuracy per dtype.

For ``randn * 5`` logits (B, T, V) in fp32/bf16/fp16 and random targets, each row gives the median time of
``reset(); update(); compute()``, the peak memory one ``update`` allocates (see ``peak_bytes``) and the relative
error against a float64 reference. Targets: ours no slower and no more memory than torchmetrics, finite in fp16.

Usage: ``python benchmarks/bench_perplexity.py [--out DIR] [--quick] [--large] [--repeats N] [--threads N]``
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import median_seconds, print_table, write_json  # noqa: E402

NAME = "bench_perplexity"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
VOCABS = (33_278, 128_000)
SCALE = 5.0  # logits = randn * SCALE


# -- measurement helpers --------------------------------------------------------------------------------------
def reference_perplexity(logits: Tensor, target: Tensor, rows: int = 128) -> float:
    """``exp(mean NLL)`` in float64 from ``logits.double()``, ``rows`` rows at a time."""
    flat_logits, flat_target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    total = 0.0
    for start in range(0, flat_target.numel(), rows):
        chunk = flat_logits[start : start + rows].double()
        t = flat_target[start : start + rows]
        total += float((torch.logsumexp(chunk, dim=-1) - chunk.gather(1, t[:, None])[:, 0]).sum())
    return math.exp(total / flat_target.numel())


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by ``fn()`` above what was live before it: its intermediates, not its inputs.

    On CUDA: ``torch.cuda.max_memory_allocated`` above the allocation before ``fn``. On CPU, ``tracemalloc`` and
    RSS do not see (or do not resolve) torch's allocations, so ``fn`` runs once under
    ``torch.profiler.profile(profile_memory=True)``, which records every allocation and free of torch's CPU
    allocator with its size; the peak is the maximum of their running sum. This is exact for tensor memory and
    blind to non-tensor heap use, which is negligible here.
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Every allocation/free of the CPU allocator is a "[memory]" event carrying its signed size.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def measure(metric: Any, logits: Tensor, target: Tensor, repeats: int) -> dict[str, Any]:
    def update_compute() -> None:
        metric.reset()
        metric.update(logits, target)
        metric.compute()

    seconds = median_seconds(update_compute, repeats=repeats, warmup=1)
    metric.reset()
    peak = peak_bytes(lambda: metric.update(logits, target), logits.device)
    value = float(metric.compute())
    return {"seconds": seconds, "peak": peak, "value": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="(20, 35) only, 2 repeats (a smoke test)")
    parser.add_argument("--large", action="store_true", help="add (64, 70) x 128k vocab (2.3 GB fp32 logits)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5; quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    device = torch.device(args.device)

    from torchmetrics.text import Perplexity as TorchmetricsPerplexity

    from rnn_lightning import Perplexity

    shapes = [((20, 35), v) for v in VOCABS]
    if not args.quick:
        shapes.append(((64, 70), VOCABS[0]))
        if args.large:
            shapes.append(((64, 70), VOCABS[1]))

    rows: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(0)
    for (batch, steps), vocab in shapes:
        target = torch.randint(0, vocab, (batch, steps), generator=generator).to(device)
        base = torch.randn(batch, steps, vocab, generator=generator)
        base.mul_(SCALE)
        for dtype_name, dtype in DTYPES.items():
            logits = base.to(device=device, dtype=dtype)  # fp32 on CPU: `base` itself, no copy
            reference = reference_perplexity(logits, target)
            metrics = {"torchmetrics": TorchmetricsPerplexity(), "ours": Perplexity()}
            results = {}
            for method, metric in metrics.items():
                results[method] = measure(metric.to(device), logits, target, repeats)
            baseline = results["torchmetrics"]
            for method, r in results.items():
                rel_err = abs(r["value"] - reference) / reference if math.isfinite(r["value"]) else math.inf
                rows.append(
                    {
                        "B,T": f"{batch},{steps}",
                        "V": vocab,
                        "dtype": dtype_name,
                        "method": method,
                        "ms": r["seconds"] * 1e3,
                        "time_vs_tm": r["seconds"] / baseline["seconds"],
                        "peak_MB": r["peak"] / 2**20,
                        "mem_vs_tm": r["peak"] / baseline["peak"] if baseline["peak"] else math.nan,
                        "value": r["value"],
                        "reference": reference,
                        "rel_err": rel_err,
                        "finite": math.isfinite(r["value"]),
                    }
                )
            del logits
            print(f"done {batch}x{steps}x{vocab} {dtype_name}", file=sys.stderr, flush=True)
        del base

    print_table(f"Perplexity update+compute on {device.type}: median of {repeats} (time), one update (memory)", rows)
    ours = [r for r in rows if r["method"] == "ours"]
    s = {
        "as_fast_as_torchmetrics": all(r["time_vs_tm"] <= 1.0 for r in ours),
        "no_more_peak_memory": all(r["mem_vs_tm"] <= 1.0 for r in ours),
        "finite_in_fp16": all(r["finite"] for r in ours if r["dtype"] == "fp16"),
        "worst_time_vs_tm": max(r["time_vs_tm"] for r in ours),
        "worst_mem_vs_tm": max(r["mem_vs_tm"] for r in ours),
        "worst_rel_err": max(r["rel_err"] for r in ours),
    }
    print(
        f"ours: time <= torchmetrics: {'met' if s['as_fast_as_torchmetrics'] else 'NOT met'} (worst "
        f"{s['worst_time_vs_tm']:.2f}x); peak memory <= torchmetrics: "
        f"{'met' if s['no_more_peak_memory'] else 'NOT met'} (worst {s['worst_mem_vs_tm']:.2f}x); finite in "
        f"fp16: {'met' if s['finite_in_fp16'] else 'NOT met'}; worst relative error {s['worst_rel_err']:.2e}"
    )
    tm_fp16 = [r for r in rows if r["method"] == "torchmetrics" and r["dtype"] == "fp16"]
    print(f"torchmetrics finite in fp16: {all(r['finite'] for r in tm_fp16)}")
    write_json(
        Path(args.out) / f"{NAME}.json",
        NAME,
        rows,
        repeats=repeats,
        device=str(device),
        scale=SCALE,
        summary={"ours": s},
    )


if __name__ == "__main__":
    main()
