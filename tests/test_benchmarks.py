"""The benchmark scripts run (``--quick``, CPU) and their built-in checks hold.

A GPU session is short and rare: a script that broke since the last one would waste it. Each script compares
against a peer in the same run; these tests assert the comparison's correctness part (equal losses, values,
paths), never its timings.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WIKITEXT2 = ROOT.parent / "shared" / "data" / "wikitext-2"


def run_benchmark(script: str, tmp_path: Path, *args: str) -> None:
    command = [sys.executable, f"benchmarks/{script}.py", "--out", str(tmp_path), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def rows(tmp_path: Path, name: str) -> list[dict]:
    return json.loads((tmp_path / f"{name}.json").read_text())["rows"]


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_language_model_in_the_trainer_trains_exactly_like_the_hand_written_loop(tmp_path, precision):
    run_benchmark("bench_training", tmp_path, "--quick", "--device", "cpu", "--precision", precision,
                  "--repeats", "1", "--no-demo", "--steps", "15", "--warmup", "2")
    name = "bench_training" if precision == "32" else "bench_training_bf16"
    ours = [row for row in rows(tmp_path, name) if row["contender"] != "raw loop"]
    assert len(ours) == 6  # 2 shapes x (LanguageModel, a plain LightningModule, LanguageModel with host reads)
    assert all(row["max_loss_diff"] == 0.0 for row in ours), ours


def test_perplexity_benchmark_values_match_float64_and_stay_finite_in_half_precision(tmp_path):
    run_benchmark("bench_perplexity", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    ours = [row for row in rows(tmp_path, "bench_perplexity") if row["method"] == "ours"]
    assert {row["dtype"] for row in ours} == {"fp32", "bf16", "fp16"}
    assert all(row["finite"] and row["rel_err"] < 1e-5 for row in ours), ours


def test_generation_benchmark_carried_state_gives_the_ids_of_rerunning_the_prefix(tmp_path):
    run_benchmark("bench_generation", tmp_path, "--quick", "--device", "cpu")
    same = [row["same_ids"] for row in rows(tmp_path, "bench_generation")]
    assert same and all(a == b for a, b in (s.split("/") for s in same)), same


def test_crf_benchmark_matches_pytorch_crf(tmp_path):
    run_benchmark("bench_crf", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    checks = [row["check"] for row in rows(tmp_path, "crf")]
    assert any("viterbi" == row["op"] for row in rows(tmp_path, "crf"))
    for check in checks:
        if "paths" in check:
            assert check == "100% paths equal", check
        else:
            assert float(re.search(r"nll diff (\S+);", check).group(1)) <= 1e-5, check


def test_span_f1_benchmark_equals_seqeval(tmp_path):
    run_benchmark("bench_span_f1", tmp_path, "--quick")  # exits non-zero if any value differs from seqeval's
    assert rows(tmp_path, "span_f1")


def test_tagging_benchmark_times_the_same_training_with_lengths_on_host_or_device(tmp_path):
    run_benchmark("bench_tagging", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    timed = rows(tmp_path, "bench_tagging")
    assert len(timed) == 4 and {row["model"] for row in timed} == {"word BiLSTM + softmax", "word + char BiLSTM-CRF"}
    assert all(row["max_loss_diff"] == 0.0 for row in timed), timed


def test_recipe_runner_records_every_validation_and_the_test_of_the_kept_checkpoint(tmp_path):
    out = tmp_path / "runs.json"
    before = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    command = [sys.executable, "benchmarks/run_recipes.py", "quickstart", "--out", str(out), "--runs",
               str(tmp_path / "runs"), "--", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "20"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(out.read_text())["runs"]["quickstart"]
    assert [v["epoch"] for v in run["validations"]] == [0.0, 1.0] and run["checkpoint"] == "last.ckpt"
    assert run["test"]["test/ppl"] == pytest.approx(math.exp(run["test"]["test/loss"]), rel=1e-5)
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt").exists()
    after = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    assert after == before  # the recipes' own checkpoint folders are left alone


def test_recipe_runner_tests_where_the_data_has_a_labelled_test_split():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_recipes import data_fragment, has_test_split

    fragments = {recipe: data_fragment(recipe) for recipe in
                 ("classification/sst2_bilstm", "lm/tinyshakespeare_char_lstm", "tagging/conll2003_ner_bilstm",
                  "lm/wikitext2_rnn_tanh", "quickstart")}
    assert fragments["lm/tinyshakespeare_char_lstm"] == "recipes/data/tinyshakespeare_local.yaml"
    # GLUE's test labels are hidden; tiny-shakespeare's test is carved off by `holdout`; the others name a file
    assert {r: has_test_split(f) for r, f in fragments.items()} == {
        "classification/sst2_bilstm": False, "lm/tinyshakespeare_char_lstm": True,
        "tagging/conll2003_ner_bilstm": True, "lm/wikitext2_rnn_tanh": True, "quickstart": True}


def test_profile_script_profiles_both_contenders(tmp_path):
    run_benchmark("profile_training", tmp_path, "--quick", "--device", "cpu", "--steps", "5")
    profiled = rows(tmp_path, "profile_training_small")
    assert [row["contender"] for row in profiled] == ["raw loop", "LanguageModel+Trainer"]
    assert all(row["wall_ms_per_step (profiled)"] > 0 for row in profiled)


@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="needs ../shared/data/wikitext-2")
def test_data_benchmark_reads_the_plain_readers_tokens(tmp_path):
    run_benchmark("bench_data", tmp_path, "--quick", "--repeats", "1")
    record = json.loads((tmp_path / "bench_data.json").read_text())
    text = json.dumps(record)
    assert '"same_tokens": true' in text and '"same_tokens": false' not in text


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "tinyshakespeare").is_dir(),
                    reason="needs ../shared/data/tinyshakespeare")
def test_deep_stacks_benchmark_trains_every_connection(tmp_path):
    run_benchmark("deep_stacks", tmp_path, "--quick")
    runs = rows(tmp_path, "deep_stacks")
    assert [(row["cell"], row["connection"]) for row in runs] == [
        (cell, connection) for cell in ("rnn_tanh", "lstm") for connection in ("none", "residual", "dense", "highway")
    ]
    for row in runs:  # 20 steps move every model off the uniform guess over ~68 symbols (6.1 bits)
        assert row["val_bits_per_char"] < 5.9, row


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT2.exists(), reason="../shared/data not present")
def test_lm_gpu_script_fits_and_tests_both_parts_at_a_tiny_size_on_cpu(tmp_path):
    """``SMOKE=1 bash benchmarks/run_lm_gpu.sh OUT``: each part fits, tests its kept checkpoint and writes its logs."""
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/run_lm_gpu.sh", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for part in ("wikitext2_lstm_650x2_tied_fast", "awd_lstm_wikitext2_budget"):
        ppl = re.search(r"test/ppl\s+│?\s*([\d.]+)", (tmp_path / part / "test.txt").read_text())
        assert ppl and math.isfinite(float(ppl.group(1))), part
        assert list((tmp_path / part).rglob("metrics.csv")), part
