"""``benchmarks/bench_adaptive_softmax.py`` runs (``--quick``, CPU) and its exactness check holds (timings not
asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a subprocess that imports torch and the library and trains a 50k-vocabulary model
def test_adaptive_softmax_benchmark_runs_and_its_distribution_is_exact(tmp_path):
    command = [sys.executable, "benchmarks/bench_adaptive_softmax.py", "--out", str(tmp_path), "--quick",
               "--device", "cpu", "--repeats", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (row,) = json.loads((tmp_path / "bench_adaptive_softmax_quick.json").read_text())["rows"]
    assert row["check"] == "exact" and row["V"] == 50_000 and row["full_ms"] > 0 and row["adaptive_ms"] > 0
    assert row["adaptive_params_M"] < row["full_params_M"]  # the tail clusters' projections are narrower
    assert 0.5 < row["head_targets"] < 1  # Zipf tokens: most targets are among the head's frequent ids
