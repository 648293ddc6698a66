"""The fast recipe's settings against the recipe's, at equal epochs: do they reach the same perplexity?

``recipes/lm/wikitext2_lstm_650x2_tied_fast.yaml`` trains the 650 x 2 tied LSTM of
``wikitext2_lstm_650x2_tied.yaml`` in bf16-mixed on 64 streams with the learning rate raised from 20 to 40 and
evaluates on 32 streams, so that a GPU gets through the 40 epochs in minutes. Throughput is the GPU's to measure;
whether those settings lose quality per epoch is not, and this script measures it where the full size does not fit:
both recipes, run as a user runs them (``run_recipes.py``: fit, then test the kept checkpoint), with the network
sized down to ``--size`` units over the ``--vocab`` most frequent words and trained on the first
``--train-fraction`` of WikiText-2's training lines for ``--epochs`` epochs (no time limit), validated and tested
on the whole splits. The fast run is also tested on the recipe's 10 evaluation streams, which separates the
evaluation batch from the training settings.

Writes ``--out``/fast_lm_settings.json (every validation of both runs, the learning rate along the way, the test
perplexities, the wall times) and prints a markdown table.

Usage: ``python benchmarks/fast_lm_settings.py`` (128 units over the 10,000 most frequent words, 6 epochs of the whole
corpus, about 45 minutes on 2 CPU cores); ``--size 200 --vocab 0 --train-fraction 0.1 --epochs 15`` (a tenth of the
corpus: a tenth of the steps per epoch); ``--size 16 --train-fraction 0.01 --epochs 1``: a smoke test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.*` when run as a script

from benchmarks import run_recipes  # noqa: E402
from benchmarks.common import CORPORA, first_lines, print_table, write_json  # noqa: E402

NAME = "fast_lm_settings"
RECIPES = {"recipe": "lm/wikitext2_lstm_650x2_tied", "fast": "lm/wikitext2_lstm_650x2_tied_fast"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(CORPORA), help="folder holding wikitext-2/{train,valid,test}.txt")
    parser.add_argument("--size", type=int, default=128, help="embedding and hidden units (the recipes: 650)")
    parser.add_argument("--train-fraction", type=float, default=1.0, help="first this fraction of the train lines")
    parser.add_argument("--vocab", type=int, default=10_000, help="keep the most frequent words (0: all 33,278)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each run (the recipes: 40)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    return parser


def corpus(source: Path, fraction: float, folder: Path) -> Path:
    """A data root whose wikitext-2/ holds the first ``fraction`` of ``source``'s train lines and its whole valid and
    test files."""
    target = folder / "wikitext-2"
    target.mkdir(parents=True)
    first_lines(source / "train.txt", fraction, target / "train.txt")
    for split in ("valid.txt", "test.txt"):
        (target / split).symlink_to((source / split).resolve())
    return folder


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    sized = ["--model.init_args.embedding_dim", str(args.size), "--model.init_args.hidden_size", str(args.size)]
    sized += ["--data.init_args.max_vocab_size", str(args.vocab)] if args.vocab else []
    on_cpu = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    sized += ["--trainer.max_epochs", str(args.epochs), "--trainer.max_time", "null", *on_cpu]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        runs, data = Path(scratch) / "runs", corpus(Path(args.data) / "wikitext-2", args.train_fraction,
                                                    Path(scratch) / "data")
        runs.mkdir()
        for name, recipe in RECIPES.items():
            results[name] = run_recipes.run(recipe, runs, sized, data_root=data)
            log = run_recipes.run_folder(runs, recipe) / "log" / "fit" / "metrics.csv"
            results[name]["lr"] = run_recipes.logged(log, "lr")  # the schedule: a row per logged step
        run_dir = run_recipes.run_folder(runs, RECIPES["fast"])  # the fast checkpoint on the recipe's 10 streams
        config = run_dir / "recipe.yaml"
        run_recipes.cli("test", config, run_dir / "data.yaml", "--ckpt_path",
                        str(run_recipes.best_checkpoint(run_dir, config)), *run_recipes.data_overrides(sized),
                        "--data.init_args.eval_batch_size", "10", *on_cpu,
                        "--trainer.logger.init_args.version", "test10", runs=runs)
        (tested,) = run_recipes.logged(run_dir / "log" / "test10" / "metrics.csv", "test/")
        results["fast"]["test_on_10_streams"] = {k: v for k, v in tested.items() if k.startswith("test/")}
    rows = [{"epoch": int(base["epoch"]) + 1, "recipe val ppl": round(base["val/ppl"], 2),
             "fast val ppl": round(fast["val/ppl"], 2)}
            for base, fast in zip(results["recipe"]["validations"], results["fast"]["validations"])]
    print_table(f"WikiText-2 (first {args.train_fraction:.0%} of train), {args.size} x 2 tied LSTM, validation "
                "perplexity per epoch", rows)
    test = {name: results[name]["test"]["test/ppl"] for name in RECIPES}
    print(f"\ntest ppl (best validation checkpoint): recipe {test['recipe']:.2f} (10 streams), fast {test['fast']:.2f}"
          f" (32 streams; on 10: {results['fast']['test_on_10_streams']['test/ppl']:.2f}); ratio "
          f"{test['fast'] / test['recipe']:.3f}; fit {results['recipe']['fit_seconds']} s / "
          f"{results['fast']['fit_seconds']} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{NAME}.json", NAME, rows, args=vars(args), runs=results, test_ppl=test)
    return {"rows": rows, "runs": results, "test_ppl": test}


if __name__ == "__main__":
    main()
