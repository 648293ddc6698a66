"""Run recipes as a user would (``rnn-lightning fit``, then ``test`` on the best checkpoint) and record the results.

For each recipe: ``rnn-lightning fit -c recipes/<recipe>.yaml -c <data fragment> [extra args]`` with its checkpoints
and a CSV log written under ``--runs DIR/<name>`` (the recipe's own ``checkpoints/`` folder is left alone), then
``rnn-lightning test`` with the checkpoint its monitored ``ModelCheckpoint`` kept (``last.ckpt`` if it monitors
nothing). Every validation, the test metrics, the wall times and the commands go into ``--out`` (a JSON file that
keeps the runs of other recipes): what the README's results table quotes.

Usage:
    python benchmarks/run_recipes.py tagging/ud_ewt_upos_bilstm [RECIPE ...] [--data DIR] [--out FILE] [--runs DIR]
        [-- ARGS]

A recipe's data fragment is ``recipes/data/<dataset>_local.yaml``, picked by the recipe's name; it reads the corpus
from ``data/<corpus>/`` as the README lays it out, or from ``--data DIR`` with the same layout. ARGS after ``--`` go
to ``fit`` (e.g. ``--trainer.max_epochs 1``), and those of them that set ``--data.*`` also to ``test``. Data without
a labelled test split (SST-2) is not tested.

Chains run in one ``--runs`` folder, in one call or several: the CLI runs in that folder, where each run's checkpoints
are also ``checkpoints/<name>``, so a later stage's ``init_from: checkpoints/<earlier stage>/best.ckpt`` finds
them, e.g. ``run_recipes.py lm/wikitext2_lstm_400x2_budget lm/sst2_lm_finetune_budget
classification/sst2_ulmfit_budget``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = {"quickstart": None, "recall": None, "wikitext2": "wikitext2", "wikitext103": "wikitext103", "ptb": "ptb",
        "tinyshakespeare": "tinyshakespeare", "ud_ewt": "ud_ewt", "conll2003": "conll2003", "sst2": "sst2"}


def data_fragment(recipe: str) -> str | None:
    """The local-data fragment for ``recipe`` (e.g. tagging/ud_ewt_upos_bilstm -> recipes/data/ud_ewt_local.yaml)."""
    name = Path(recipe).name
    for corpus, dataset in DATA.items():
        if corpus in name:  # ud_ewt_upos_bilstm, awd_lstm_wikitext2_budget, ...
            return None if dataset is None else f"recipes/data/{dataset}_local.yaml"
    raise ValueError(f"no data fragment known for recipe {recipe!r}; its name names none of {sorted(DATA)}")


def data_config(fragment: str | None, data_root: Path, run_dir: Path) -> Path | None:
    """The data fragment with its ``data/...`` files moved under ``data_root`` (written to ``run_dir/data.yaml``)."""
    if fragment is None:
        return None
    config = yaml.safe_load((ROOT / fragment).read_text())
    init = config["data"]["init_args"]

    def moved(path: str) -> str:
        if not path.startswith("data/"):
            raise ValueError(f"{fragment} names {path!r}; expected a path under data/ that --data can relocate")
        return str(data_root / path.removeprefix("data/"))

    files = init["data_files"]
    init["data_files"] = {split: moved(p) for split, p in files.items()} if isinstance(files, dict) else moved(files)
    path = run_dir / "data.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_config(recipe: str, run_dir: Path) -> Path:
    """The recipe with its checkpoints in ``run_dir`` and a CSV log there (written to ``run_dir/recipe.yaml``)."""
    config = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    trainer = config.setdefault("trainer", {})
    for callback in trainer.get("callbacks") or []:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback.setdefault("init_args", {})["dirpath"] = str(run_dir / "checkpoints")
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir), "name": "log", "version": "fit"}}
    path = run_dir / "recipe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_folder(runs: Path, recipe: str) -> Path:
    """Where ``recipe``'s checkpoints, logs and configs go under the ``runs`` folder."""
    return runs / recipe.replace("/", "_")


def link_checkpoints(run_dir: Path, name: str) -> None:
    """Make ``run_dir``'s checkpoints the runs folder's ``checkpoints/<name>``: where later stages of a chain look."""
    link = run_dir.parent / "checkpoints" / name
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(Path("..") / run_dir.name / "checkpoints", target_is_directory=True)


def cli(subcommand: str, config: Path, data: Path | None, *args: str, runs: Path) -> float:
    """Run ``rnn-lightning SUBCOMMAND`` in the ``runs`` folder (a recipe's relative ``checkpoints/`` paths are the
    runs'); return its wall time (raises if it fails)."""
    command = [sys.executable, "-m", "rnn_lightning.cli", subcommand, "-c", str(config)]
    command += ["-c", str(data)] if data else []
    command += list(args)
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run(command, cwd=runs, env=env, check=True)
    return time.perf_counter() - start


def data_overrides(extra: list[str]) -> list[str]:
    """The ``--data.*`` settings among a fit's ``extra`` arguments: test must build the data as fit did (the same
    vocabulary), while the model's settings come back from the checkpoint."""
    kept = []
    for i, arg in enumerate(extra):
        if arg.startswith("--data."):
            kept += [arg] if "=" in arg else [arg, *extra[i + 1: i + 2]]
    return kept


def has_test_split(fragment: str | None) -> bool:
    """Whether the data has a labelled test split: named in ``data_files`` or carved off by ``holdout`` (SST-2's
    local fragment leaves GLUE's unlabelled test out; the hub datasets of the recipes without a fragment have one)."""
    if fragment is None:
        return True
    init = yaml.safe_load((ROOT / fragment).read_text())["data"]["init_args"]
    files, holdout = init.get("data_files"), init.get("holdout") or {}
    return "test" in holdout or (isinstance(files, dict) and "test" in files)


def best_checkpoint(run_dir: Path, config: Path) -> Path:
    """The monitored ModelCheckpoint's file (save_top_k=1 keeps one), else ``last.ckpt``."""
    monitored = any(c["class_path"].endswith("ModelCheckpoint") and (c.get("init_args") or {}).get("monitor")
                    for c in yaml.safe_load(config.read_text())["trainer"].get("callbacks") or [])
    files = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    best = [f for f in files if not f.name.startswith("last")]
    if monitored and len(best) == 1:
        return best[0]
    return run_dir / "checkpoints" / "last.ckpt"


def logged(path: Path, prefix: str) -> list[dict[str, float]]:
    """Rows of a CSVLogger ``metrics.csv`` that hold ``prefix`` metrics (one per validation or test)."""
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            values = {k: float(v) for k, v in row.items() if v not in ("", None) and (k.startswith(prefix)
                                                                                      or k in ("epoch", "step"))}
            if any(k.startswith(prefix) for k in values):
                rows.append(values)
    return rows


def run(recipe: str, runs: Path, extra: list[str], fit_seconds: float | None = None, *,
        data_root: Path = ROOT / "data") -> dict[str, Any]:
    """Fit and test ``recipe`` on the corpora in ``data_root``; with ``fit_seconds`` given, test the run already in
    ``runs`` (no new fit)."""
    run_dir = run_folder(runs, recipe)
    if fit_seconds is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
    link_checkpoints(run_dir, Path(recipe).name)
    config, fragment = run_config(recipe, run_dir), data_fragment(recipe)
    data = data_config(fragment, data_root, run_dir)
    if fit_seconds is None:
        fit_seconds = cli("fit", config, data, *extra, runs=runs)
    checkpoint = best_checkpoint(run_dir, config)
    test, test_seconds = [], 0.0
    if has_test_split(fragment):
        test_seconds = cli("test", config, data, "--ckpt_path", str(checkpoint), *data_overrides(extra),
                           "--trainer.logger.init_args.version", "test", runs=runs)
        test = logged(run_dir / "log" / "test" / "metrics.csv", "test/")
    validations = logged(run_dir / "log" / "fit" / "metrics.csv", "val/")
    with_data = f" -c {fragment}" if fragment else ""
    return {
        "command": f"rnn-lightning fit -c recipes/{recipe}.yaml{with_data}{' ' if extra else ''}{' '.join(extra)}",
        "test_command": f"rnn-lightning test -c recipes/{recipe}.yaml{with_data} --ckpt_path "
                        f"checkpoints/{Path(recipe).name}/{checkpoint.name}",
        "checkpoint": checkpoint.name,
        "fit_seconds": round(fit_seconds),
        "test_seconds": round(test_seconds),
        "validations": validations,
        "test": {k: v for k, v in (test[-1] if test else {}).items() if k.startswith("test/")},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", help="recipe names under recipes/, e.g. tagging/ud_ewt_upos_bilstm")
    parser.add_argument("--data", default=str(ROOT / "data"),
                        help="the corpora, in the README's layout (default: data/ in the repository)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/recipe_runs.json"))
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="checkpoints and logs, one folder per recipe")
    parser.add_argument("--test-only", action="store_true",
                        help="test the runs already in --runs again (their fit time is kept from --out)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    for recipe in args.recipes:
        fit_seconds = record["runs"][Path(recipe).name]["fit_seconds"] if args.test_only else None
        result = run(recipe, Path(args.runs).resolve(), extra, fit_seconds, data_root=Path(args.data).resolve())
        record = json.loads(out.read_text()) if out.exists() else record  # other runs may have written meanwhile
        record["runs"][Path(recipe).name] = {
            **result, "date": date.today().isoformat(),
            "hardware": f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
                        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}"
                        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items() if math.isfinite(v))
        print(f"{recipe}: fit {result['fit_seconds']} s; test ({result['checkpoint']}): {metrics}", flush=True)
    return record


if __name__ == "__main__":
    main()
