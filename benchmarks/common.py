"""Shared benchmark helpers: repeated timing with medians, a markdown table, and a JSON record."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# The corpora, in the README's layout (``data/<corpus>/`` in the checkout); each script takes ``--data`` for another.
CORPORA = Path(__file__).resolve().parents[1] / "data"


def first_lines(source: Path, fraction: float, target: Path) -> Path:
    """Write the first ``fraction`` of ``source``'s lines to ``target``: a smaller training split of the same text."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text("".join(lines[: int(len(lines) * fraction)]), encoding="utf-8")
    return target


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs (CUDA synchronized)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def round_robin(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each ``fn`` over ``repeats`` samples taken in turn (one warm-up call each), so that a
    change of the machine's load falls on every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(median_seconds(fn, repeats=1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def hardware() -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` (dicts with the same keys) as a markdown table."""
    if not rows:
        return
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\n### {title}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(fmt(row[k]) for k in keys) + " |")


def write_json(path: str | Path, name: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Write ``{"benchmark": name, "hardware": ..., "rows": rows, **extra}`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "hardware": hardware(), "rows": rows, **extra}, indent=2))
