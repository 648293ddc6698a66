"""WikiText-2 preparation, text files -> batched stream tensors: ``LanguageModelingDataModule`` vs a plain reader.

Three ways to turn ``train/valid/test.txt`` into (streams, length) id tensors, all timed in this run:

* ``plain``: the pytorch/examples ``word_language_model/data.py`` reader (read lines, ``line.split() + ['<eos>']``,
  dict lookups building the vocabulary, ``torch.tensor`` per line, ``torch.cat``, then ``batchify`` into
  (batch, -1) with ``narrow``/``view``), written inline below. This is the baseline.
* ``ours cold``: ``LanguageModelingDataModule(path="text", data_files=..., cache_dir=<fresh dir>)``, then
  ``prepare_data()``, ``setup("fit")`` and ``setup("test")`` without a trainer (load_dataset -> vocabulary
  counted -> the token store written -> memory-mapped streams), a new empty cache every repeat.
* ``ours warm``: the same, with a new DataModule each repeat but a cache filled by an earlier run, so the
  ``datasets`` cache (the arrow copy of the text) and the token store are reused.

Train batch 20, validation/test batch 10. Targets: cold <= 0.5x and warm <= 0.1x the plain reader's time.
The ``ours`` rows also give the median time of each stage (``load``: ``load_dataset``; ``tokenizer``: word
vocabulary counting (or reading the store's tokenizer); ``store``: ``prepare_data``, tokenizing every split into
the token store (or finding it); ``streams``: ``setup``, memory-mapping the token files into ``StreamWindows``).

Usage: ``python benchmarks/bench_data.py [--data DIR] [--out DIR] [--quick] [--repeats N] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import CORPORA, median_seconds, print_table, write_json  # noqa: E402

NAME = "bench_data"
FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
TRAIN_BATCH, EVAL_BATCH = 20, 10
EXPECTED_TRAIN_TARGETS = 2_088_628  # words + one <eos> per line, the pytorch/examples count
TARGETS = {"ours cold": 0.5, "ours warm": 0.1}  # ours / plain, from the issue
STAGES = ("load", "tokenizer", "store", "streams")


# -- baseline: pytorch/examples word_language_model/data.py, inline --------------------------------------------
class Dictionary:
    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]


def plain_tokenize(path: Path, dictionary: Dictionary) -> torch.Tensor:
    """Two passes over the file, as in pytorch/examples: add the words, then look them up."""
    with open(path, encoding="utf8") as f:
        for line in f:
            for word in line.split() + ["<eos>"]:
                dictionary.add_word(word)
    with open(path, encoding="utf8") as f:
        idss = []
        for line in f:
            ids = [dictionary.word2idx[word] for word in line.split() + ["<eos>"]]
            idss.append(torch.tensor(ids, dtype=torch.int64))
    return torch.cat(idss)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(M,) -> (batch, M // batch): drop the remainder, one contiguous stream per row."""
    nbatch = data.size(0) // batch_size
    return data.narrow(0, 0, nbatch * batch_size).view(batch_size, -1).contiguous()


def plain_reader(data: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Dictionary]:
    """All three splits: the flat ids and the batchified streams."""
    dictionary = Dictionary()
    flat = {split: plain_tokenize(data / name, dictionary) for split, name in FILES.items()}
    streams = {split: batchify(ids, TRAIN_BATCH if split == "train" else EVAL_BATCH) for split, ids in flat.items()}
    return flat, streams, dictionary


# -- ours ------------------------------------------------------------------------------------------------------
def ours(data: Path, cache_dir: str, stages: dict[str, float] | None = None) -> Any:
    """A fresh DataModule over the text files, set up for fit and test; ``stages`` gets each stage's seconds."""
    from rnn_lightning.data.language_modeling import LanguageModelingDataModule

    t0 = time.perf_counter()
    dm = LanguageModelingDataModule(
        path="text",
        data_files={split: str(data / name) for split, name in FILES.items()},
        batch_size=TRAIN_BATCH,
        eval_batch_size=EVAL_BATCH,
        cache_dir=cache_dir,
    )
    dm.raw  # noqa: B018  (load_dataset)
    t1 = time.perf_counter()
    dm.tokenizer  # noqa: B018  (word vocabulary from train)
    t2 = time.perf_counter()
    dm.prepare_data()  # the token store: built, or found and reused
    t3 = time.perf_counter()
    dm.setup("fit")
    dm.setup("test")
    t4 = time.perf_counter()
    if stages is not None:
        stages.update(load=t1 - t0, tokenizer=t2 - t1, store=t3 - t2, streams=t4 - t3)
    return dm


def timed_with_stages(fn: Callable[[dict[str, float]], Any], repeats: int) -> tuple[float, dict[str, float]]:
    """Median total seconds (``median_seconds``, one warmup) and the median of each stage over the timed runs."""
    records: list[dict[str, float]] = []

    def call() -> None:
        stages: dict[str, float] = {}
        fn(stages)
        records.append(stages)

    seconds = median_seconds(call, repeats=repeats, warmup=1)
    timed = records[1:]  # drop the warmup
    return seconds, {k: statistics.median(r[k] for r in timed) for k in STAGES}


def check_same_tokens(dm: Any, flat: dict[str, torch.Tensor], dictionary: Dictionary) -> dict[str, Any]:
    """Ours without ``<bos>`` must be the plain reader's word sequence, split by split."""
    import numpy as np

    from rnn_lightning.data.tokenization import BOS

    bos = dm.tokenizer.token_to_id(BOS)
    vocab = dm.tokenizer.get_vocab()
    ours_words = np.empty(len(vocab), dtype=object)
    for word, i in vocab.items():
        ours_words[i] = word
    plain_words = np.array(dictionary.idx2word, dtype=object)
    out: dict[str, Any] = {}
    for split in FILES:
        ids = dm.token_ids(split)
        targets = ids[ids != bos]  # <bos> is an input only; every other id is a target
        a, b = ours_words[targets.numpy()], plain_words[flat[split].numpy()]
        n = min(len(a), len(b))
        differ = np.flatnonzero(a[:n] != b[:n])
        first = int(differ[0]) if len(differ) else (n if len(a) != len(b) else None)
        out[split] = {
            "ours_targets": len(a),
            "plain_tokens": len(b),
            "same_tokens": first is None,
            "first_difference": None
            if first is None
            else {"position": first, "ours": a[first : first + 3].tolist(), "plain": b[first : first + 3].tolist()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--data", default=str(CORPORA / "wikitext-2"),
                        help="the folder of WikiText-2's train.txt, valid.txt, test.txt")
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5 (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5; quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    data = Path(args.data)
    missing = [name for name in FILES.values() if not (data / name).is_file()]
    if missing:
        sys.exit(
            f"bench_data: WikiText-2 text files {missing} not found in {data}. Put train.txt, valid.txt "
            "and test.txt (the pytorch/examples word_language_model/data/wikitext-2 files) there, or pass --data."
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)

    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    plain_seconds = median_seconds(lambda: plain_reader(data), repeats=repeats, warmup=1)
    flat, plain_streams, dictionary = plain_reader(data)

    with tempfile.TemporaryDirectory(prefix="bench_data_") as root:
        counter = iter(range(10**6))

        def cold(stages: dict[str, float]) -> None:
            ours(data, str(Path(root) / f"cold{next(counter)}"), stages)  # a new, empty cache every call

        cold_seconds, cold_stages = timed_with_stages(cold, repeats)
        warm_dir = str(Path(root) / "warm")  # filled by the warmup call of `timed_with_stages`
        warm_seconds, warm_stages = timed_with_stages(lambda stages: ours(data, warm_dir, stages), repeats)
        dm = ours(data, warm_dir)
        checks = check_same_tokens(dm, flat, dictionary)
        shapes = {
            split: {"ours": list(dm._streams[split].inputs.shape), "plain": list(plain_streams[split].shape)}
            for split in FILES
        }

    rows: list[dict[str, Any]] = []
    for method, seconds, stages in (
        ("plain", plain_seconds, None),
        ("ours cold", cold_seconds, cold_stages),
        ("ours warm", warm_seconds, warm_stages),
    ):
        target = TARGETS.get(method)
        ratio = seconds / plain_seconds
        rows.append(
            {
                "method": method,
                "seconds": seconds,
                "ratio_vs_plain": ratio,
                "target": "-" if target is None else f"<= {target}",
                "met": "-" if target is None else ("yes" if ratio <= target else "NO"),
                **{f"{k}_s": "-" if stages is None else stages[k] for k in STAGES},
            }
        )
    train = checks["train"]
    count_ok = train["ours_targets"] == train["plain_tokens"] == EXPECTED_TRAIN_TARGETS
    print(
        f"train targets: ours {train['ours_targets']:,} (ids minus one <bos> per line), plain "
        f"{train['plain_tokens']:,}, expected {EXPECTED_TRAIN_TARGETS:,}: {'OK' if count_ok else 'MISMATCH'}"
    )
    for split, check in checks.items():
        print(
            f"{split}: same word sequence as the plain reader: {check['same_tokens']} (ours "
            f"{check['ours_targets']:,} targets, plain {check['plain_tokens']:,}); streams ours "
            f"{shapes[split]['ours']} vs plain {shapes[split]['plain']}"
        )
        if not check["same_tokens"]:
            print(
                f"  WARNING: first difference at target {check['first_difference']['position']:,}: ours "
                f"{check['first_difference']['ours']} vs plain {check['first_difference']['plain']}"
            )
    print_table(f"WikiText-2 text -> stream tensors (median of {repeats}, seconds)", rows)
    for row in rows[1:]:
        print(
            f"{row['method']}: {row['ratio_vs_plain']:.3f}x the plain reader, target {row['target']}: "
            f"{'met' if row['met'] == 'yes' else 'NOT met'}"
        )
    write_json(
        Path(args.out) / f"{NAME}.json",
        NAME,
        rows,
        repeats=repeats,
        checks=checks,
        shapes=shapes,
        train_count_ok=count_ok,
        targets=TARGETS,
    )
    if not count_ok:
        sys.exit("bench_data: ours and the plain reader disagree on the number of train targets (see above).")


if __name__ == "__main__":
    main()
