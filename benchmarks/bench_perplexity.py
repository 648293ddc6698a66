"""``rnn_lightning.Perplexity`` vs ``torchmetrics.text.Perplexity``: time, peak memory and accuracy per dtype.

For logits of shape (B, T, V) (``torch.randn * 5``: a spread where float16 softmax probabilities underflow) and
uniform random targets, each row times ``reset(); update(logits, target); compute()`` (median), measures the
peak extra memory of one ``update``, and compares the value with a float64 reference (``exp`` of the mean NLL
computed from ``logits.double()``, in row chunks to bound its memory).

Rows per configuration:

* ``torchmetrics``: the baseline (softmax in the input dtype, then ``log``).
* ``ours``: ``rnn_lightning.Perplexity`` (``F.cross_entropy`` on logits upcast to float32, NLL summed in float64).
* ``proposal``: a prototype of a chunked ``update``: the same float32 ``cross_entropy`` and float64 sum, but over
  row chunks of at most ``--chunk-elements`` logits (and never more rows than keep the float32 work buffers
  under the size of the logits themselves), so the (B*T, V) float32 upcast and ``log_softmax`` output are never
  materialised whole. It is fed to an ``rnn_lightning.Perplexity`` through ``update(nll_sum=, count=)``.

Peak memory. On CUDA: ``torch.cuda.max_memory_allocated`` above the allocation before ``update``. On CPU,
``tracemalloc`` and RSS do not see (or do not resolve) torch's allocations, so the update runs once under
``torch.profiler.profile(profile_memory=True)``, which records every allocation and free of torch's CPU
allocator with its size; the peak is the maximum of their running sum (the bytes allocated above what was live
before ``update``: intermediates only, the logits themselves are not counted). This is exact for tensor memory
and blind to non-tensor heap use, which is negligible here.

Targets from the issue: ours at least as fast as torchmetrics (time ratio <= 1), no more peak memory (memory
ratio <= 1), and finite in float16.

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
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import median_seconds, print_table, write_json  # noqa: E402

NAME = "bench_perplexity"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
VOCABS = (33_278, 128_000)
SCALE = 5.0  # logits = randn * SCALE


# -- the proposal, prototyped here ----------------------------------------------------------------------------
def chunked_nll_sum_and_count(
    logits: Tensor, target: Tensor, ignore_index: int | None = None, chunk_elements: int = 2**20
) -> tuple[Tensor, Tensor]:
    """``rnn_lightning.functional.nll_sum_and_count`` over row chunks: float32 work buffers stay bounded.

    Each chunk of ``rows`` rows is upcast to float32 (float64 stays float64) and goes through ``F.cross_entropy``
    (``log_softmax`` inside), and its NLL is summed in float64: the same arithmetic per token as the unchunked
    version, so the same result up to float64 summation order. ``rows`` is the smaller of
    ``chunk_elements // V`` (cache-sized work on CPU) and the number of rows whose work buffers (upcast copy +
    ``log_softmax`` output: 8 bytes a logit for float16/bfloat16, 4 for float32) fit in the logits' own size,
    which is what ``torchmetrics`` allocates for its softmax.
    """
    from rnn_lightning.functional.perplexity import _check_logits_and_target

    _check_logits_and_target(logits, target, ignore_index, "chunked_nll_sum_and_count")
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)  # (N, V)
    flat_target = target.reshape(-1).long()  # (N,)
    n = flat_target.numel()
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    work_bytes = compute_dtype.itemsize * (1 if logits.dtype == compute_dtype else 2)  # per logit
    rows = max(1, min(chunk_elements // vocab, n * logits.dtype.itemsize // work_bytes))
    ignore = -100 if ignore_index is None else ignore_index
    nll_sum = torch.zeros((), dtype=torch.float64, device=logits.device)
    for start in range(0, n, rows):
        chunk = flat_logits[start : start + rows].to(compute_dtype)  # (rows, V), a copy only for fp16/bf16
        token_nll = F.cross_entropy(chunk, flat_target[start : start + rows], ignore_index=ignore, reduction="none")
        nll_sum += token_nll.sum(dtype=torch.float64)
    if ignore_index is None:
        count = torch.tensor(n, dtype=torch.int64, device=flat_target.device)
    else:
        count = (flat_target != ignore_index).sum(dtype=torch.int64)
    return nll_sum, count


class ProposalPerplexity:
    """The proposal behind the same metric: ``rnn_lightning.Perplexity`` fed with the chunked NLL sum."""

    def __init__(self, chunk_elements: int) -> None:
        from rnn_lightning import Perplexity

        self.metric = Perplexity()
        self.chunk_elements = chunk_elements

    def reset(self) -> None:
        self.metric.reset()

    def update(self, logits: Tensor, target: Tensor) -> None:
        nll_sum, count = chunked_nll_sum_and_count(logits.detach(), target, chunk_elements=self.chunk_elements)
        self.metric.update(nll_sum=nll_sum, count=count)

    def compute(self) -> Tensor:
        return self.metric.compute()

    def to(self, device: torch.device) -> ProposalPerplexity:
        self.metric.to(device)
        return self


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
    """Peak bytes allocated by ``fn()`` above what was allocated before it (see the module docstring)."""
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
    parser.add_argument("--chunk-elements", type=int, default=2**20, help="proposal: logits per chunk at most")
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
            metrics = {
                "torchmetrics": TorchmetricsPerplexity(),
                "ours": Perplexity(),
                "proposal": ProposalPerplexity(args.chunk_elements),
            }
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
    summary = {}
    for method in ("ours", "proposal"):
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {
            "as_fast_as_torchmetrics": all(r["time_vs_tm"] <= 1.0 for r in mine),
            "no_more_peak_memory": all(r["mem_vs_tm"] <= 1.0 for r in mine),
            "finite_in_fp16": all(r["finite"] for r in mine if r["dtype"] == "fp16"),
            "worst_time_vs_tm": max(r["time_vs_tm"] for r in mine),
            "worst_mem_vs_tm": max(r["mem_vs_tm"] for r in mine),
            "worst_rel_err": max(r["rel_err"] for r in mine),
        }
        s = summary[method]
        print(
            f"{method}: time <= torchmetrics: {'met' if s['as_fast_as_torchmetrics'] else 'NOT met'} (worst "
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
        chunk_elements=args.chunk_elements,
        summary=summary,
    )


if __name__ == "__main__":
    main()
