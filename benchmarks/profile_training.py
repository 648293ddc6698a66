"""Where a training step's time goes: the raw loop vs ``LanguageModel`` in the Trainer, under ``torch.profiler``.

``bench_training.py`` says how much slower the Trainer is; this says why. For each contender it profiles ``steps``
steady-state steps (after ``warmup``) and reports per step: GPU kernel time (summed over streams: cuDNN runs an
LSTM's layers on several streams at once, so it can exceed the wall time), kernel launches, synchronizing CUDA
runtime calls, copies, the host operations that cost most, and every operation the two call a different number
of times. The profiler slows the host, so its wall times are not the benchmark's: compare counts and kernel time.

Usage:
    python benchmarks/profile_training.py [--device cuda] [--precision 32|bf16-mixed] [--shape small|large]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

if __package__ in (None, ""):  # run as `python benchmarks/profile_training.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_training import fit_in_trainer, raw_loop, shapes  # noqa: E402
from benchmarks.common import print_table, write_json  # noqa: E402

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaHostAlloc",
         "cudaFreeHost", "cudaMalloc", "cudaFree")


class _Profiled:
    """A profiler over steps ``warmup .. warmup + steps - 1``, advanced once per step."""

    def __init__(self, device: str, warmup: int, steps: int) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        self.device, self.warmup, self.steps = device, warmup, steps
        self.prof = profile(activities=activities, schedule=torch.profiler.schedule(
            wait=warmup - 1, warmup=1, active=steps, repeat=1))
        self.start = self.end = 0.0

    def step(self, index: int) -> None:  # call at the end of step `index`
        if index == self.warmup - 1:
            _sync(self.device)
            self.start = time.perf_counter()
        if index == self.warmup + self.steps - 1:
            _sync(self.device)
            self.end = time.perf_counter()
        self.prof.step()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def profile_raw(shape, device: str, precision: str, seed: int, prof: _Profiled) -> None:
    with prof.prof:
        raw_loop(shape, device, precision, seed, lambda i: i > 0 and prof.step(i - 1))  # at the end of step i - 1


class _StepProfiler(L.Callback):
    def __init__(self, prof: _Profiled) -> None:
        self.prof = prof

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.prof.step(batch_idx)


def profile_trainer(shape, device: str, precision: str, seed: int, prof: _Profiled) -> None:
    with prof.prof:
        fit_in_trainer("lightning", shape, device, precision, seed, _StepProfiler(prof))


def summarize(name: str, prof: _Profiled, top: int) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, float]]:
    events = prof.prof.key_averages()
    n = prof.steps
    by_name = {e.key: e for e in events}
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    count = lambda key: by_name[key].count / n if key in by_name else 0.0  # noqa: E731
    row = {
        "contender": name,
        "wall_ms_per_step (profiled)": 1000 * (prof.end - prof.start) / n,
        "gpu_kernel_ms_per_step (all streams)": kernel_us / 1000 / n,
        "kernel_launches_per_step": count("cudaLaunchKernel") + count("cuLaunchKernel") + count("cudaLaunchKernelExC"),
        "memcpy_per_step": count("cudaMemcpyAsync"),
        **{f"{s}_per_step": count(s) for s in SYNCS if count(s)},
    }
    host = sorted((e for e in events if e.self_cpu_time_total > 0), key=lambda e: -e.self_cpu_time_total)[:top]
    ops = [{"contender": name, "op": e.key[:60], "calls_per_step": e.count / n,
            "self_cpu_us_per_step": e.self_cpu_time_total / n} for e in host]
    return row, ops, {e.key: e.count / n for e in events}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32")
    parser.add_argument("--shape", choices=("small", "large"), default="small")
    parser.add_argument("--quick", action="store_true", help="tiny network (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    shape = shapes(args.quick, args.device, args.steps, 10, False)[0 if args.shape == "small" else 1]
    rows, ops, counts = [], [], []
    for name, fn in (("raw loop", profile_raw), ("LanguageModel+Trainer", profile_trainer)):
        prof = _Profiled(args.device, shape.warmup, shape.steps)
        fn(shape, args.device, args.precision, 0, prof)
        row, top, calls = summarize(name, prof, args.top)
        rows.append(row)
        ops.extend(top)
        counts.append(calls)
    extra = [{"op": key[:70], "raw loop": counts[0].get(key, 0.0), "LanguageModel+Trainer": counts[1].get(key, 0.0)}
             for key in sorted(set(counts[0]) | set(counts[1]))
             if abs(counts[0].get(key, 0.0) - counts[1].get(key, 0.0)) > 0.5 and not key.startswith("ProfilerStep")]
    title = f"{shape.name}, {args.device}, precision {args.precision}, {shape.steps} profiled steps"
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k != "contender", k))
    rows = [{k: row.get(k, 0.0) for k in keys} for row in rows]
    print_table(f"Per step: {title}", rows)
    print_table("Host operations with the most self CPU time", ops)
    print_table("Operations called a different number of times per step", extra)
    suffix = f"{args.shape}{'' if args.precision == '32' else '_bf16'}"
    write_json(Path(args.out) / f"profile_training_{suffix}.json", "profile_training", rows, ops=ops,
               different_counts=extra, shape=shape.__dict__, precision=args.precision, device=args.device)


if __name__ == "__main__":
    main()
