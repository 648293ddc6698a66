"""Span F1 on CoNLL-2003 train: ``rnn_lightning`` (tensor ops) vs ``seqeval`` (Python loops), time and values.

Gold: the tags of ``eng.train`` (IOB1, last column; ``-DOCSTART-`` and blank lines split sentences: 14,041
sentences, 203,621 tokens), or, if the file is missing, as many synthetic IOB1 sentences. Predictions: the gold
tags with ~10% of tokens replaced by another random label (seeded). Timed, median of ``--repeats`` runs:

* ``seqeval``: ``f1_score(y_true, y_pred)`` + ``classification_report(y_true, y_pred, output_dict=True)`` (default,
  conlleval mode): what a training script calls at the end of an epoch. This is the baseline.
* ``ours from strings``: the same inputs, lists of tag strings: ``label_table`` + ``tags_to_ids`` (label -> id
  lookups and right padding, for gold and predictions) + ``span_counts`` + ``span_f1_from_counts``. The fair
  comparison.
* ``ours tensors``: ``SpanF1.reset(); update(preds, target, mask); compute()`` on the (B, T) id tensors, the
  cost inside a validation loop, where the tagger's outputs already are tensors.

Asserts that precision, recall, F1 and each type's F1 are identical (``==``) to seqeval's. Target: ours from
strings >= 10x faster than seqeval. torch runs on one thread by default, as seqeval does; on a machine whose
cores are busy with other work, two threads make each op over the whole corpus wait for a scheduler slice, which
costs far more than the op itself.

Usage: ``python benchmarks/bench_span_f1.py [--out DIR] [--quick] [--repeats N] [--threads N] [--data FILE]``
"""

from __future__ import annotations

import argparse
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import median_seconds, print_table, write_json  # noqa: E402

NAME = "span_f1"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2003" / "eng.train"
CONLL_TYPES = ("LOC", "MISC", "ORG", "PER")
SENTENCES, TOKENS = 14_041, 203_621  # eng.train without -DOCSTART-
CORRUPT = 0.10  # fraction of predicted tags replaced by another label


def read_conll_tags(path: Path) -> list[list[str]]:
    """The tag (last column) sentences of a CoNLL-2003 file, without the ``-DOCSTART-`` lines."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if current:
                sentences.append(current)
                current = []
            continue
        current.append(fields[-1])
    if current:
        sentences.append(current)
    return sentences


def synthetic_tags(rng: random.Random, sentences: int = SENTENCES, tokens: int = TOKENS) -> list[list[str]]:
    """IOB1 sentences with ~CoNLL-2003's shape: 14,041 sentences, 203,621 tokens, ~17% entity tokens."""
    lengths = [1] * sentences
    for _ in range(tokens - sentences):
        lengths[rng.randrange(sentences)] += 1
    out = []
    for length in lengths:
        tags, previous = [], "O"
        while len(tags) < length:
            if rng.random() < 0.1:
                type_ = rng.choice(CONLL_TYPES)
                width = min(rng.choice((1, 1, 2, 2, 3)), length - len(tags))
                first = "B" if previous == type_ else "I"
                tags += [f"{first}-{type_}"] + [f"I-{type_}"] * (width - 1)
                previous = type_
            else:
                tags.append("O")
                previous = "O"
        out.append(tags)
    return out


def corrupt(sentences: list[list[str]], labels: list[str], rng: random.Random) -> list[list[str]]:
    """Replace each tag with probability ``CORRUPT`` by another label."""
    return [[rng.choice([x for x in labels if x != t]) if rng.random() < CORRUPT else t for t in s] for s in sentences]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="first 1,000 sentences, 2 repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5; quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, like seqeval)")
    parser.add_argument("--data", default=str(DATA), help="CoNLL-2003 file whose last column is the gold tag")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)

    from seqeval.metrics import classification_report, f1_score

    from rnn_lightning.functional.span_f1 import label_table, span_counts, span_f1_from_counts, tags_to_ids
    from rnn_lightning.metrics.span_f1 import SpanF1

    rng = random.Random(0)
    data = Path(args.data)
    y_true = read_conll_tags(data) if data.is_file() else synthetic_tags(rng)
    source = str(data) if data.is_file() else f"synthetic (no {data})"
    if args.quick:
        y_true = y_true[:1000]
    labels = ["O"] + sorted({t for s in y_true for t in s} - {"O"})
    y_pred = corrupt(y_true, labels, rng)
    tokens = sum(map(len, y_true))
    print(f"{source}: {len(y_true)} sentences, {tokens} tokens, labels {labels}", file=sys.stderr)

    def seqeval_run() -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f1 = f1_score(y_true, y_pred)
            report = classification_report(y_true, y_pred, output_dict=True)
        return {"f1": f1, "report": report}

    def ours_from_strings() -> dict[str, Any]:
        prefixes, types, names = label_table(labels)
        target, mask = tags_to_ids(y_true, labels)  # (B, T), (B, T)
        preds, _ = tags_to_ids(y_pred, labels)
        return span_f1_from_counts(span_counts(preds, target, mask, prefixes, types, len(names)), names)

    target, mask = tags_to_ids(y_true, labels)
    preds, _ = tags_to_ids(y_pred, labels)
    metric = SpanF1(labels)

    def ours_tensors() -> torch.Tensor:
        metric.reset()
        metric.update(preds, target, mask)
        return metric.compute()

    timings = {
        "seqeval": median_seconds(seqeval_run, repeats=repeats),
        "ours from strings": median_seconds(ours_from_strings, repeats=repeats),
        "ours tensors": median_seconds(ours_tensors, repeats=repeats),
    }
    theirs, ours = seqeval_run(), ours_from_strings()
    ours_tensors()
    micro = theirs["report"]["micro avg"]
    expected = {"precision": micro["precision"], "recall": micro["recall"], "f1": theirs["f1"]}
    assert micro["f1-score"] == theirs["f1"], (micro["f1-score"], theirs["f1"])
    print(f"seqeval: precision {expected['precision']!r} recall {expected['recall']!r} f1 {expected['f1']!r}")
    print(f"ours:    precision {ours['precision']!r} recall {ours['recall']!r} f1 {ours['f1']!r}")
    print(f"ours (SpanF1.compute, float32): {metric.compute().item()!r}; report: {metric.report()}")
    identical = all(ours[k] == v for k, v in expected.items()) and metric.report() == ours
    per_type = {name: theirs["report"][name]["f1-score"] for name in ours["f1_per_type"] if name in theirs["report"]}
    identical &= all(ours["f1_per_type"][name] == f1 for name, f1 in per_type.items())
    assert identical, f"values differ: seqeval {expected} {per_type}, ours {ours}"

    rows = [
        {
            "method": method,
            "ms": seconds * 1e3,
            "speedup_vs_seqeval": timings["seqeval"] / seconds,
            "Mtokens_per_s": tokens / seconds / 1e6,
            "precision": expected["precision"] if method == "seqeval" else ours["precision"],
            "recall": expected["recall"] if method == "seqeval" else ours["recall"],
            "f1": expected["f1"] if method == "seqeval" else ours["f1"],
        }
        for method, seconds in timings.items()
    ]
    print_table(
        f"Span F1 of {len(y_true)} sentences / {tokens} tokens ({CORRUPT:.0%} corrupted predictions), CPU, "
        f"{torch.get_num_threads()} threads: median of {repeats}",
        rows,
    )
    speedup = timings["seqeval"] / timings["ours from strings"]
    summary = {
        "identical_values": identical,
        "speedup_from_strings": speedup,
        "speedup_tensors": timings["seqeval"] / timings["ours tensors"],
        "target_10x_met": speedup >= 10,
    }
    print(
        f"\nidentical precision/recall/F1/per-type F1: {identical}; from strings {speedup:.1f}x seqeval "
        f"(target >= 10x: {'met' if summary['target_10x_met'] else 'NOT met'}); tensors only "
        f"{summary['speedup_tensors']:.0f}x"
    )
    write_json(
        Path(args.out) / f"{NAME}.json",
        NAME,
        rows,
        data=source,
        sentences=len(y_true),
        tokens=tokens,
        corrupt=CORRUPT,
        repeats=repeats,
        seqeval={**expected, "f1_per_type": per_type},
        ours=ours,
        summary=summary,
    )


if __name__ == "__main__":
    main()
