"""Interpolated Kneser-Ney 3-gram and 5-gram on WikiText-2: build time and perplexity, the RNN's baseline.

The models count the train split exactly as ``LanguageModelingDataModule(tokenizer="word")`` encodes it and are
scored with ``Perplexity`` over the same validation and test targets ``LanguageModel`` is scored on (every token
once, ``<bos>`` never), so their numbers sit beside an LSTM recipe's ``test/ppl``.

Usage:
    python benchmarks/ngram_wikitext2.py [--data data/wikitext-2] [--orders 3 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/ngram_wikitext2.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CORPORA, print_table, write_json  # noqa: E402
from rnn_lightning import LanguageModelingDataModule, Perplexity  # noqa: E402
from rnn_lightning.constants import IGNORE_INDEX  # noqa: E402
from rnn_lightning.data.tokenization import BOS  # noqa: E402
from rnn_lightning.ngram import KneserNey  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = {
    "Mikolov 2012 (thesis), PTB test, KN 5-gram": 141.2,
    "this project, WikiText-2 test, wikitext2_rnn_tanh 1 epoch (benchmarks/results/recipe_runs.json)": 366.86,
    "this project, WikiText-2 test, LSTM 650x2 tied, 2 min 45 s on an H100 (benchmarks/results/gpu_h100)": 117.87,
}


def perplexity(lm: KneserNey, dm: LanguageModelingDataModule, split: str, bos: int) -> tuple[float, int]:
    nll_sum, count = lm.nll_sum_and_count(dm.token_ids(split), skip_targets=(bos,))
    lstm_count = int((dm.windows(split).targets != IGNORE_INDEX).sum())  # what LanguageModel's metric counts
    assert int(count) == lstm_count, f"{split}: the n-gram scores {int(count)} targets, the LSTM {lstm_count}"
    metric = Perplexity()
    metric.update(nll_sum=nll_sum, count=count)
    return float(metric.compute()), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CORPORA / "wikitext-2"),
                        help="the folder of train.txt, valid.txt, test.txt")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    files = {split: str(Path(args.data) / f"{name}.txt")
             for split, name in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    start = time.perf_counter()
    dm = LanguageModelingDataModule(path="text", data_files=files, tokenizer="word")
    train, bos = dm.token_ids("train"), dm.tokenizer.token_to_id(BOS)
    load_s = time.perf_counter() - start
    rows = []
    for order in args.orders:
        start = time.perf_counter()
        lm = KneserNey.fit(train, order=order, vocab_size=dm.vocab_size, skip_targets=(bos,))
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        valid_ppl, _ = perplexity(lm, dm, "validation", bos)
        test_ppl, test_tokens = perplexity(lm, dm, "test", bos)
        rows.append({"order": order, "build_s": round(build_s, 2), "score_s": round(time.perf_counter() - start, 2),
                     "valid_ppl": round(valid_ppl, 2), "test_ppl": round(test_ppl, 2), "test_tokens": test_tokens,
                     "discounts": [round(d, 4) for d in lm.discounts]})
    print(f"WikiText-2: {train.numel()} train ids (with <bos>/<eos>), vocabulary {dm.vocab_size}, "
          f"loaded and tokenized in {load_s:.1f} s")
    print_table("Interpolated Kneser-Ney on WikiText-2 (word tokenizer, local files)", rows)
    write_json(Path(args.out) / "ngram_wikitext2.json", "ngram_wikitext2", rows, train_ids=int(train.numel()),
               vocab_size=dm.vocab_size, load_s=round(load_s, 2), references=REFERENCES)


if __name__ == "__main__":
    main()
