"""``benchmarks/bench_weight_drop.py`` runs (``--quick``, CPU) and its built-in check holds (timings not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a subprocess that imports torch and the library
def test_weight_drop_benchmark_runs_and_both_models_agree_where_weight_drop_is_off(tmp_path):
    command = [sys.executable, "benchmarks/bench_weight_drop.py", "--out", str(tmp_path), "--quick", "--device",
               "cpu", "--repeats", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    rows = json.loads((tmp_path / "bench_weight_drop.json").read_text())["rows"]
    assert [(row["shape"], row["path"]) for row in rows] == [("small", "module"),
                                                             ("small", "LanguageModel in the Trainer")]
    assert rows[0]["check"] == "same loss in eval and at p=0" and rows[0]["throughput_ratio"] > 0
    assert rows[1]["check"] == "weight drop only where asked" and rows[1]["throughput_ratio"] > 0
