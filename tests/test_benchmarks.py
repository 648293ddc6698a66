"""The benchmark scripts run (``--quick``, CPU) and their results are what a user would check.

A GPU session is short and rare: a script that broke since the last one would waste it. Each script compares
against a peer in the same run; these tests assert the comparison's correctness part exactly (equal losses,
values, paths) and its ratios only within loose bounds: two contenders timed side by side share the machine's
load, and at ``--quick`` sizes fixed costs dominate. Each script starts a Python with torch and Lightning, hence
``slow`` (run them with ``python -m pytest -q -m slow tests/test_benchmarks.py``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from corpora import CORPORA

ROOT = Path(__file__).resolve().parent.parent
WIKITEXT2 = CORPORA / "wikitext-2"
SPEED_RATIO = (0.2, 5.0)  # ours / peer throughput at --quick sizes: the same order of magnitude, nothing finer


def within(ratio, bounds=SPEED_RATIO) -> bool:
    return isinstance(ratio, float) and math.isfinite(ratio) and bounds[0] < ratio < bounds[1]


def run_benchmark(script: str, tmp_path: Path, *args: str) -> None:
    command = [sys.executable, f"benchmarks/{script}.py", "--out", str(tmp_path), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def record(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


def rows(tmp_path: Path, name: str) -> list[dict]:
    return record(tmp_path, name)["rows"]



def test_benchmarks_read_the_corpora_from_the_readme_layout_unless_told():
    """A script that reads a real corpus defaults to ``data/<corpus>/`` in the checkout (where the README puts the
    corpora) and takes ``--data`` for another place; none reaches for a folder beside the checkout."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import CORPORA

    assert CORPORA == ROOT / "data"
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        text = script.read_text()
        assert '"shared"' not in text and "../shared" not in text, script.name
        if "CORPORA /" in text:
            assert '"--data"' in text, script.name

@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_language_model_in_the_trainer_trains_exactly_like_the_hand_written_loop(tmp_path, precision):
    run_benchmark("bench_training", tmp_path, "--quick", "--device", "cpu", "--precision", precision,
                  "--repeats", "1", "--no-demo", "--steps", "15", "--warmup", "2")
    name = "bench_training" if precision == "32" else "bench_training_bf16"
    ours = [row for row in rows(tmp_path, name) if row["contender"] != "raw loop"]
    assert len(ours) == 6  # 2 shapes x (LanguageModel, a plain LightningModule, LanguageModel with host reads)
    assert all(row["max_loss_diff"] == 0.0 for row in ours), ours
    assert all(within(row["ratio_vs_raw"]) and row["tokens_per_s"] > 0 for row in ours), ours
    raw = [row for row in rows(tmp_path, name) if row["contender"] == "raw loop"]
    assert [row["ratio_vs_raw"] for row in raw] == [1.0, 1.0]


@pytest.mark.slow
def test_perplexity_benchmark_values_match_float64_and_stay_finite_in_half_precision(tmp_path):
    run_benchmark("bench_perplexity", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    table = rows(tmp_path, "bench_perplexity")
    ours = [row for row in table if row["method"] == "ours"]
    assert {(row["method"], row["dtype"]) for row in table} == {
        (method, dtype) for method in ("ours", "torchmetrics") for dtype in ("fp32", "bf16", "fp16")}
    assert all(row["finite"] and row["rel_err"] < 1e-5 for row in ours), ours
    assert all(0 < row["time_vs_tm"] < SPEED_RATIO[1] for row in ours), ours
    # tensor memory is counted allocation by allocation: exact, whatever the load. Ours takes a float32
    # log-softmax where torchmetrics takes a softmax and then its log, never more.
    assert all(0 < row["mem_vs_tm"] <= 1 for row in ours), ours
    assert record(tmp_path, "bench_perplexity")["summary"]["ours"]["finite_in_fp16"] is True


@pytest.mark.slow
def test_generation_benchmark_carried_state_gives_the_ids_of_rerunning_the_prefix(tmp_path):
    run_benchmark("bench_generation", tmp_path, "--quick", "--device", "cpu")
    table = rows(tmp_path, "bench_generation")
    same = [row["same_ids"] for row in table]
    assert len(same) == 4 and all(a == b for a, b in (s.split("/") for s in same)), same
    assert all(row["tokens_per_s"] > 0 for row in table), table
    # one recurrent step per new token against re-running the prefix: never slower by more than noise
    speedups = [row["speedup"] for row in table if row["speedup"] != ""]
    assert len(speedups) == 2 and all(isinstance(s, float) and s > SPEED_RATIO[0] for s in speedups), table


@pytest.mark.slow
def test_crf_benchmark_matches_pytorch_crf(tmp_path):
    run_benchmark("bench_crf", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    table = rows(tmp_path, "crf")
    assert sorted(row["op"] for row in table) == ["nll+backward", "viterbi"]
    for row in table:
        if row["op"] == "viterbi":
            assert row["check"] == "100% paths equal", row
        else:
            assert float(re.search(r"nll diff (\S+);", row["check"]).group(1)) <= 1e-5, row
        assert within(row["ours/theirs"]), row


@pytest.mark.slow
def test_span_f1_benchmark_equals_seqeval(tmp_path):
    # the script exits non-zero unless P, R, F1 and each type's F1 equal seqeval's (micro ==, macro/weighted 1e-12)
    run_benchmark("bench_span_f1", tmp_path, "--quick", "--data", str(CORPORA / "conll2003" / "eng.train"))
    table = {row["method"]: row for row in rows(tmp_path, "span_f1")}
    assert set(table) == {"seqeval", "ours from strings", "ours tensors",
                          "seqeval strict", "ours strict from strings", "ours strict tensors"}
    checks = json.loads((tmp_path / "span_f1.json").read_text())["checks"]  # seqeval's values and ours, per mode
    for mode, name in (("default", ""), ("strict", " strict")):  # seqeval's default mode, then strict (IOB2)
        theirs = checks[mode]["seqeval"]
        assert 0 < theirs["micro"]["f1"] < 1  # the corrupted predictions leave something to count
        assert checks[mode]["ours"]["micro"] == theirs["micro"]
        for average in ("macro", "weighted"):
            for key, value in theirs[average].items():
                assert checks[mode]["ours"][average][key] == pytest.approx(value, abs=1e-12)
        for row in (table[f"ours{name} from strings"], table[f"ours{name} tensors"]):
            assert row["micro_f1"] == theirs["micro"]["f1"], row  # the table reports seqeval's number
            assert row["speedup_vs_seqeval"] > 1, row  # vectorised counts against a Python loop over strings


@pytest.mark.slow
def test_tagging_benchmark_times_the_same_training_with_lengths_on_host_or_device(tmp_path):
    run_benchmark("bench_tagging", tmp_path, "--quick", "--device", "cpu", "--repeats", "1")
    timed = rows(tmp_path, "bench_tagging")
    assert len(timed) == 4 and {row["model"] for row in timed} == {"word BiLSTM + softmax", "word + char BiLSTM-CRF"}
    assert all(row["max_loss_diff"] == 0.0 for row in timed), timed
    assert all(within(row["speedup"]) and row["sentences_per_s"] > 0 for row in timed), timed


@pytest.mark.slow
def test_string_embeddings_benchmark_times_the_tagger_with_and_without_the_lm_features(tmp_path):
    run_benchmark("bench_string_embeddings", tmp_path, "--quick", "--device", "cpu", "--repeats", "1",
                  "--lm-hidden", "64")
    timed = {row["contender"]: row for row in rows(tmp_path, "bench_string_embeddings")}
    assert list(timed) == ["no string embeddings", "string embeddings, frozen LMs",
                           "string embeddings, frozen LMs, cached", "string embeddings, fine-tuned LMs"]
    assert timed["no string embeddings"]["ratio"] == 1.0
    assert all(row["ms_per_step"] > 0 and within(row["ratio"], (0.5, 100.0)) for row in timed.values()), timed
    assert record(tmp_path, "bench_string_embeddings")["lm_hidden"] == 64


@pytest.mark.slow
def test_recipe_runner_records_every_validation_and_the_test_of_the_kept_checkpoint(tmp_path):
    out = tmp_path / "runs.json"
    before = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    command = [sys.executable, "benchmarks/run_recipes.py", "quickstart", "--out", str(out), "--runs",
               str(tmp_path / "runs"), "--", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "20",
               "--data.init_args.num_words", "100"]  # a data setting: test must build the same vocabulary
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(out.read_text())["runs"]["quickstart"]
    assert [v["epoch"] for v in run["validations"]] == [0.0, 1.0] and run["checkpoint"] == "last.ckpt"
    assert run["test"]["test/ppl"] == pytest.approx(math.exp(run["test"]["test/loss"]), rel=1e-5)
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt").exists()
    after = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    assert after == before  # the recipes' own checkpoint folders are left alone


@pytest.mark.slow
@pytest.mark.skipif(not (WIKITEXT2.is_dir() and (CORPORA / "sst2").is_dir()),
                    reason="needs the WikiText-2 and SST-2 files (tests/corpora.py)")
def test_recipe_runner_chains_stages_through_its_runs_folder(tmp_path):
    """Stage 2 (``init_from: checkpoints/wikitext2_lstm_400x2_budget/best.ckpt``) starts from stage 1 of the same
    ``--runs`` folder, in a second call, with no ``checkpoints/`` in the working directory or the repository."""
    runs, out = tmp_path / "runs", tmp_path / "runs.json"
    tiny = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2",
            "--trainer.enable_progress_bar", "false", "--model.init_args.embedding_dim", "8",
            "--model.init_args.hidden_size", "8"]
    before = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    for stage in ("lm/wikitext2_lstm_400x2_budget", "lm/sst2_lm_finetune_budget"):
        command = [sys.executable, str(ROOT / "benchmarks/run_recipes.py"), stage, "--data", str(CORPORA),
                   "--out", str(out), "--runs", str(runs), "--", *tiny]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    stage1 = runs / "lm_wikitext2_lstm_400x2_budget" / "checkpoints"
    assert (runs / "checkpoints" / "wikitext2_lstm_400x2_budget").resolve() == stage1.resolve()
    assert "not in 'checkpoints/wikitext2_lstm_400x2_budget/best.ckpt''s vocabulary" in done.stderr  # stage 1's rows
    record = json.loads(out.read_text())["runs"]
    assert set(record) == {"wikitext2_lstm_400x2_budget", "sst2_lm_finetune_budget"}
    assert record["sst2_lm_finetune_budget"]["validations"]  # stage 2 trained and validated
    after = sorted((ROOT / "checkpoints").rglob("*")) if (ROOT / "checkpoints").exists() else []
    assert after == before


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


@pytest.mark.slow
def test_profile_script_profiles_both_contenders(tmp_path):
    run_benchmark("profile_training", tmp_path, "--quick", "--device", "cpu", "--steps", "5")
    profiled = rows(tmp_path, "profile_training_small")
    assert [row["contender"] for row in profiled] == ["raw loop", "LanguageModel+Trainer"]
    walls = [row["wall_ms_per_step (profiled)"] for row in profiled]
    assert all(w > 0 for w in walls) and within(walls[0] / walls[1]), profiled


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="needs the WikiText-2 files (tests/corpora.py)")
def test_data_benchmark_reads_the_plain_readers_tokens(tmp_path):
    run_benchmark("bench_data", tmp_path, "--quick", "--repeats", "1", "--data", str(WIKITEXT2))
    result = record(tmp_path, "bench_data")
    assert set(result["checks"]) == {"train", "validation", "test"}
    assert all(check["same_tokens"] for check in result["checks"].values()), result["checks"]
    assert result["train_count_ok"] is True
    ratios = {row["method"]: row["ratio_vs_plain"] for row in result["rows"]}
    assert ratios["plain"] == 1.0
    # arrow compute against a Python loop; the warm run reads the cache: faster, whatever the load
    assert 0 < ratios["ours warm"] < ratios["ours cold"] < 2, ratios


@pytest.mark.slow
@pytest.mark.skipif(not (CORPORA / "tinyshakespeare").is_dir(),
                    reason="needs tinyshakespeare/input.txt (tests/corpora.py)")
def test_deep_stacks_benchmark_trains_every_connection(tmp_path):
    run_benchmark("deep_stacks", tmp_path, "--quick", "--data", str(CORPORA / "tinyshakespeare" / "input.txt"))
    runs = rows(tmp_path, "deep_stacks")
    assert [(row["cell"], row["connection"]) for row in runs] == [
        (cell, connection) for cell in ("rnn_tanh", "lstm") for connection in ("none", "residual", "dense", "highway")
    ]
    for row in runs:  # 20 steps move every model off the uniform guess over ~68 symbols (6.1 bits)
        assert row["val_bits_per_char"] < 5.9, row
        assert math.isfinite(row["grad_vs_none"]) and row["grad_vs_none"] > 0, row
    assert [row["grad_vs_none"] for row in runs if row["connection"] == "none"] == [1.0, 1.0]


@pytest.mark.slow
def test_long_inputs_benchmark_reports_every_measure_with_its_bound(tmp_path):
    run_benchmark("long_inputs", tmp_path, "--quick")  # exits non-zero on a wrong result
    table = rows(tmp_path, "long_inputs")
    assert [(row["job"], row["measure"]) for row in table] == [
        ("language model", "bytes/token (train + validation)"), ("tagger", "training growth MB"),
        ("tagger", "evaluation bytes/token")]
    assert all(row["result_ok"] is True and row["met"] == "-" for row in table), table  # bounds: full sizes only
    assert all(math.isfinite(row["value"]) and row["value"] >= 0 for row in table), table


def test_long_inputs_language_model_job_evaluates_the_whole_split(monkeypatch):
    """The long-input benchmark's language-model job, small: the result behind its memory figure.

    (Its tagger job, a long document trained in pieces and evaluated whole, is
    ``test_tagging.py::test_long_document_trains_in_pieces_and_evaluates_whole``.)
    """
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.long_inputs import language_model

    lm = language_model(20_000)
    # cross-entropy >= the source's entropy (its perplexity, exactly known); 5 steps stay near the uniform guess
    assert 0.95 * lm["source_ppl"] < lm["val_ppl"] < 1.25 * lm["vocab_size"], lm


@pytest.mark.slow
def test_ngram_benchmark_scores_the_language_models_targets(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    lines = [" ".join(f"w{(i * 7 + j * j) % 23}" for j in range(3 + i % 9)) for i in range(300)]
    for name, part in (("train", lines[:240]), ("valid", lines[240:270]), ("test", lines[270:])):
        (data / f"{name}.txt").write_text("\n".join(part) + "\n")
    run_benchmark("ngram_wikitext2", tmp_path, "--data", str(data), "--orders", "2", "3")
    runs = rows(tmp_path, "ngram_wikitext2")  # the script asserts it scores the LSTM's count of targets
    test_words = sum(len(line.split()) + 1 for line in lines[270:])  # each word and one <eos> per line
    assert [row["order"] for row in runs] == [2, 3] and {row["test_tokens"] for row in runs} == {test_words}
    assert all(1.0 < row["test_ppl"] < 23 + 4 for row in runs)  # better than uniform over the vocabulary


@pytest.mark.slow
def test_gradient_flow_benchmark_measures_each_model_at_each_distance_and_clipping_keeps_the_loss_finite(tmp_path):
    run_benchmark("gradient_flow", tmp_path, "--quick", "--figures", str(tmp_path / "figures"))
    record = json.loads((tmp_path / "gradient_flow.json").read_text())
    models = ["rnn_tanh", "gru", "lstm", "lstm, torch init"]
    distances = record["settings"]["distances"]
    assert [(row["model"], row["distance"]) for row in record["rows"]] == [(m, d) for m in models for d in distances]
    for row in record["rows"]:
        assert 0.0 <= row["test_acc"] <= 1.0 and row["chance"] == 1 / record["settings"]["classes"]
        assert math.isfinite(row["decay_rate_init"]) and math.isfinite(row["decay_rate_trained"])
        curves = record["curves"][f"{row['model']} @ {row['distance']}"]
        assert len(curves["init"]) == len(curves["trained"]) == row["distance"] + 1  # key, distractors
    assert [entry["model"] for entry in record["table"]] == models
    assert {entry["model"]: entry[f"acc @ {distances[0]}"] for entry in record["table"]} == {
        row["model"]: row["test_acc"] for row in record["rows"] if row["distance"] == distances[0]}
    unclipped, clipped = record["exploding"]
    assert unclipped["stopped"].startswith("the gradient is not finite")
    assert clipped["stopped"] == "-" and all(math.isfinite(x) for x in record["losses"]["clip 0.25"])
    if importlib.util.find_spec("matplotlib"):
        for name in ("gradient_flow_curves", "accuracy_vs_distance", "exploding"):
            assert (tmp_path / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name


@pytest.mark.slow
@pytest.mark.skipif(not all((CORPORA / name).is_dir() for name in ("wikitext-2", "sst2", "conll2003",
                                                                   "ud-english-ewt")),
                    reason="the corpora are not present (tests/corpora.py)")
def test_lm_gpu_script_fits_and_tests_every_part_at_a_tiny_size_on_cpu(tmp_path):
    """``SMOKE=1 bash benchmarks/run_lm_gpu.sh OUT``: each part fits, evaluates its kept checkpoint and writes its
    logs; the chained parts (sst2 after lstm, taggers after chars) start from the earlier parts' checkpoints."""
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "DATA_ROOT": str(CORPORA),
           "PARTS": "lstm sst2 awd chars taggers"}
    done = subprocess.run(["bash", "benchmarks/run_lm_gpu.sh", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    evaluated = {"wikitext2_lstm_650x2_tied_fast": "test/ppl", "sst2_lm_finetune": "val/ppl", "sst2_ulmfit": "val/acc",
                 "awd_lstm_wikitext2_budget": "test/ppl", "wikitext2_char_lstm_2048_forward": "test/ppl",
                 "wikitext2_char_lstm_2048_backward": "test/ppl", "conll2003_ner_string_embeddings_2048": "test/f1",
                 "ud_ewt_upos_string_embeddings_2048": "test/acc"}
    for part, metric in evaluated.items():
        file = tmp_path / part / ("validate.txt" if metric.startswith("val/") else "test.txt")
        value = re.search(rf"{metric}\s+│?\s*([\d.]+)", file.read_text())
        assert value and math.isfinite(float(value.group(1))), part
        assert list((tmp_path / part).rglob("metrics.csv")), part
    assert "init_from: " in done.stdout + done.stderr  # stage 2 copied stage 1's rows by word


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="WikiText-2 is not present (tests/corpora.py)")
def test_fast_lm_settings_benchmark_trains_both_recipes_as_they_are_written(tmp_path):
    """Both recipes run at a tiny size for the same epochs with the settings each file sets (learning rate, streams),
    and the fast run tested on 10 streams is the same perplexity as on its 32 (only the streams' starts differ)."""
    run_benchmark("fast_lm_settings", tmp_path, "--data", str(CORPORA), "--size", "16", "--train-fraction", "0.01",
                  "--epochs", "2")
    result = record(tmp_path, "fast_lm_settings")
    runs = result["runs"]
    assert [len(runs[name]["validations"]) for name in ("recipe", "fast")] == [2, 2]
    assert {name: runs[name]["lr"][0]["lr-SGD"] for name in runs} == {"recipe": 20.0, "fast": 40.0}
    steps = {name: runs[name]["validations"][0]["step"] + 1 for name in runs}  # one epoch's optimizer steps
    assert abs(steps["fast"] / steps["recipe"] - 20 / 64) < 0.1, steps
    assert [row["recipe val ppl"] for row in result["rows"]] == [
        round(v["val/ppl"], 2) for v in runs["recipe"]["validations"]]
    on_10, on_32 = runs["fast"]["test_on_10_streams"]["test/ppl"], result["test_ppl"]["fast"]
    assert math.isfinite(on_32) and abs(on_10 / on_32 - 1) < 0.01, (on_10, on_32)


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="WikiText-2 is not present (tests/corpora.py)")
def test_awd_vs_plain_benchmark_trains_both_models_with_their_settings_for_the_budget(tmp_path):
    """Both models train for the budget and end on the whole validation split; the AWD one carries the recipe's
    regularisers and the plain one none, at the same size."""
    run_benchmark("awd_vs_plain", tmp_path, "--data", str(CORPORA), "--minutes", "0.1", "--embedding", "16",
                  "--hidden", "16", "--vocab", "2000", "--train-fraction", "0.01", "--evals", "1")
    result = record(tmp_path, "awd_vs_plain")
    models = result["models"]
    assert models["awd"]["parameters"] == models["plain"]["parameters"]
    assert models["awd"]["settings"]["weight_drop"] == 0.5 and models["awd"]["settings"]["variable_bptt"]
    assert models["plain"]["settings"] == {"dropout_embedding": 0.0, "dropout_between": 0.0, "dropout_output": 0.0,
                                           "weight_decay": 0.0, "variable_bptt": False}
    for kind in ("awd", "plain"):
        curve = [row for row in result["rows"] if row["model"] == kind]
        assert curve[-1]["whole_split"] and curve[-1]["train_s"] >= 6.0, curve
        assert result["final_val_ppl"][kind] == curve[-1]["val_ppl"] and math.isfinite(curve[-1]["val_ppl"])


@pytest.mark.slow
def test_corpus_scale_benchmark_builds_the_store_in_bounded_memory(tmp_path):
    """Two small synthetic corpora: every split tokenized into the store, its memory well under the target, the
    steady memory of a training process the same at both sizes, and the former loader measured alongside."""
    run_benchmark("bench_corpus_scale", tmp_path, "--quick")
    result = record(tmp_path, "bench_corpus_scale")
    by_job = {(row["tokens"], row["job"]): row for row in result["rows"]}
    assert set(by_job) == {(300_000, "build"), (300_000, "steady"), (300_000, "former"), (1_000_000, "build"),
                           (1_000_000, "steady")}
    for size in (300_000, 1_000_000):  # 20-word lines: one <bos> and one <eos> per 20 words, three splits
        assert by_job[size, "build"]["encoded"] == (size + 400_000) * 22 // 20
        assert by_job[size, "build"]["dtype"] == "uint16" and by_job[size, "steady"]["first_batch_s"] > 0
    assert by_job[300_000, "former"]["encoded"] == 300_000 * 22 // 20
    checks = result["checks"]
    assert checks["build_peak_rss_under_2gb"] and abs(checks["steady_anon_spread"]) < 0.1, checks
    assert within(checks["store_vs_former_per_token"]), checks
