"""Corpora larger than memory: the token store's build and a training process's memory, from 10M to 1B tokens.

For each size a synthetic corpus of Zipf-distributed words (vocabulary ``--vocab``, 20-word lines, words of 2-5
characters: about 4 bytes of text per token) is written, a chunk at a time, to a temporary folder (``--workdir``);
each measurement then runs in a fresh Python process:

* ``build``: ``LanguageModelingDataModule(path="text", ...)``: ``load`` (``datasets`` turns the text into its
  Arrow cache), then ``prepare_data`` (``store``: the vocabulary counted and every split tokenized, a chunk at a
  time, into the token files). The headline is the process's peak resident memory as ``top`` counts it: the
  kernel's high-water mark of RSS (``VmHWM``: anonymous memory and the pages of files mapped into the process,
  such as ``datasets``' memory-mapped Arrow cache); beside it the peak of its anonymous memory alone
  (``RssAnon``, sampled every 20 ms).
* ``steady``: a new process that sets the data up from the built store (``setup("fit")``) and draws 100 training
  windows (batch 20, bptt 35): time to the first batch, and its resident memory after the 100th (total and
  anonymous).
* ``former``: at the smallest size (up to 20M tokens), the loader before the store (the whole train split through
  ``datasets.map`` into one Arrow column, flattened into one int64 tensor; a copy of its code is below), for the
  speed per token and memory of the build.

Disk: about 4 bytes of text per token, a little more for ``datasets``' Arrow copy, 2 bytes per token of store (4
past 65,536 words, as at the default 100,000): about 1.4 GB at 100M tokens and 14 GB at 1B, one size at a time
(each is deleted before the next). Targets (issue 14): build peak <= 2 GB at every size; steady memory within 10%
between sizes; store build at least as fast per token as the former loader.

Usage: ``python benchmarks/bench_corpus_scale.py [--sizes 10M 100M 1B] [--quick] [--workdir DIR] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks.common` when run as a script

NAME = "bench_corpus_scale"
WORDS_PER_LINE = 20
EVAL_TOKENS = 200_000  # validation and test: small and fixed, so sizes differ in train alone
BATCH, BPTT, WINDOWS = 20, 35, 100
FORMER_MAX = 20_000_000  # the former loader holds about 30 bytes per token: measured at the smallest size only


def parse_size(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}
    return int(float(text[:-1]) * scale[text[-1].upper()]) if text[-1].upper() in scale else int(text)


# -- the corpus --
def write_corpus(folder: Path, train_tokens: int, vocab: int, seed: int = 0) -> dict[str, str]:
    """Zipf-distributed words (p(rank k) ~ 1/k), in 20-word lines, written ten million tokens at a time."""
    rng = np.random.default_rng(seed)
    words = [f"w{np.base_repr(k, 36).lower()}" for k in range(vocab)]  # 2-5 characters
    lengths = np.array([len(w) for w in words])
    padded = np.array([(w + " ").encode() for w in words])  # (V,) fixed-width bytes: word, space, zero padding
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1))
    cdf /= cdf[-1]
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, tokens in (("train", train_tokens), ("validation", EVAL_TOKENS), ("test", EVAL_TOKENS)):
        path = folder / f"{split}.txt"
        with open(path, "wb") as out:
            for start in range(0, tokens, 10_000_000):
                n = min(10_000_000, tokens - start) // WORDS_PER_LINE * WORDS_PER_LINE
                drawn = np.searchsorted(cdf, rng.random(n))  # (n,) word ranks
                text = padded[drawn].view(np.uint8).reshape(n, -1).copy()  # (n, width)
                ends = np.arange(WORDS_PER_LINE - 1, n, WORDS_PER_LINE)  # the last word of each line
                text[ends, lengths[drawn[ends]]] = ord("\n")
                out.write(text[text != 0].tobytes())
        files[split] = str(path)
    return files


# -- measuring a process --
class Memory:
    """This process's resident memory: the high-water mark and a sampled peak of anonymous memory, in MB."""

    def __init__(self) -> None:
        self.peak_anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def status() -> dict[str, float]:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024  # kB -> MB
        return fields

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_anon = max(self.peak_anon, self.status()["RssAnon"])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        now = self.status()
        return {"peak_rss_mb": now["VmHWM"], "peak_anon_mb": max(self.peak_anon, now["RssAnon"]),
                "rss_mb": now["VmRSS"], "anon_mb": now["RssAnon"]}


def child(job: str, files: dict[str, str], cache: str, num_proc: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    memory = Memory()
    from rnn_lightning import LanguageModelingDataModule

    dm = LanguageModelingDataModule(path="text", data_files=files, cache_dir=cache, batch_size=BATCH, bptt=BPTT,
                                    num_proc=num_proc)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if job == "build":
        dm.raw  # noqa: B018
        t1 = time.perf_counter()
        dm.prepare_data()
        t2 = time.perf_counter()
        out.update(load_s=t1 - t0, store_s=t2 - t1, encoded=sum(dm.store.splits.values()), vocab=dm.vocab_size,
                   dtype=dm.store.manifest["dtype"],
                   store_gb=sum(p.stat().st_size for p in dm.store_folder.iterdir()) / 1e9)
    elif job == "steady":
        dm.setup("fit")
        loader = iter(dm.train_dataloader())
        next(loader)
        out["first_batch_s"] = time.perf_counter() - t0
        for _ in range(WINDOWS - 1):
            next(loader)
    else:  # former
        dm.raw  # noqa: B018
        t1 = time.perf_counter()
        ids = former_token_ids(dm)
        t2 = time.perf_counter()
        out.update(load_s=t1 - t0, store_s=t2 - t1, encoded=int(ids.numel()))
    return {**out, **memory.stop()}


def former_token_ids(dm: Any) -> Any:
    """The loader before the store (its code, less the caching of the tokenizer): the vocabulary from one Arrow
    column of the whole train split, ``datasets.map`` encoding into one column, one int64 tensor per split."""
    import pyarrow as pa
    import torch

    from rnn_lightning.data.base import arrow_column
    from rnn_lightning.data.tokenization import encode_lines, train_word_tokenizer

    train = dm.raw["train"]
    tokenizer = train_word_tokenizer(arrow_column(train, "text"))

    def encode(batch: pa.Table) -> pa.Table:
        return pa.table({"input_ids": encode_lines(tokenizer, batch.column("text"))})

    encoded = train.with_format("arrow").map(encode, batched=True, batch_size=100_000, remove_columns=["text"])
    return torch.from_numpy(encoded.data.column("input_ids").combine_chunks().flatten().to_numpy().astype("int64"))


def measure(job: str, files: dict[str, str], cache: Path, num_proc: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", job, "--files", json.dumps(files), "--cache", str(cache),
               "--num-proc", str(num_proc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on ``rows``."""
    builds = [r for r in rows if r["job"] == "build"]
    steady = [r for r in rows if r["job"] == "steady"]
    former = next((r for r in rows if r["job"] == "former"), None)
    return {
        "build_peak_anon_under_2gb": all(r["peak_anon_mb"] <= 2048 for r in builds),
        "build_peak_rss_under_2gb": all(r["peak_rss_mb"] <= 2048 for r in builds),
        "steady_anon_spread": max(r["anon_mb"] for r in steady) / min(r["anon_mb"] for r in steady) - 1,
        "steady_rss_spread": max(r["rss_mb"] for r in steady) / min(r["rss_mb"] for r in steady) - 1,
        "store_vs_former_per_token": (builds[0]["us_per_token"] / former["us_per_token"]) if former else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["10M", "100M"], help="train tokens per corpus, e.g. 10M 1B")
    parser.add_argument("--vocab", type=int, default=100_000, help="distinct words of the Zipf distribution")
    parser.add_argument("--quick", action="store_true", help="two small corpora (300K and 1M tokens)")
    parser.add_argument("--num-proc", type=int, default=1, help="processes that tokenize")
    parser.add_argument("--workdir", default=None, help="where the corpora and stores go (default: a temp folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--also", default=None, help="a results JSON of an earlier run whose rows to include")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.files), args.cache, args.num_proc)))
        return

    from benchmarks.common import print_table, write_json

    sizes = [300_000, 1_000_000] if args.quick else [parse_size(s) for s in args.sizes]
    vocab = 20_000 if args.quick else args.vocab
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_corpus_scale-"))
    rows = []
    try:
        for i, size in enumerate(sizes):
            t0 = time.perf_counter()
            files = write_corpus(workdir / f"corpus-{size}", size, vocab)
            text_gb = sum(Path(f).stat().st_size for f in files.values()) / 1e9
            print(f"{size:,} tokens: {text_gb:.2f} GB of text written in {time.perf_counter() - t0:.0f} s", flush=True)
            jobs = ["build", "steady"] + (["former"] if i == 0 and size <= FORMER_MAX else [])
            for job in jobs:
                cache = workdir / f"cache-{size}" if job != "former" else workdir / f"former-{size}"
                result = measure(job, files, cache, args.num_proc)
                encoded = result.get("encoded")  # every split's tokens for the store, train's for the former
                rows.append({"tokens": size, "loader": "former" if job == "former" else "store", "job": job,
                             "text_gb": round(text_gb, 3), **result,
                             **({"us_per_token": 1e6 * result["store_s"] / encoded} if encoded else {})})
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(workdir / f"former-{size}", ignore_errors=True)
            shutil.rmtree(workdir / f"corpus-{size}", ignore_errors=True)
            shutil.rmtree(workdir / f"cache-{size}", ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.also:  # rows of an earlier run (e.g. 1B alone), summarized with these
        rows = sorted(json.loads(Path(args.also).read_text())["rows"] + rows, key=lambda r: r["tokens"])
    checks = summarize(rows)
    keys = ("tokens", "loader", "job", "load_s", "store_s", "us_per_token", "first_batch_s", "peak_rss_mb",
            "peak_anon_mb", "rss_mb", "anon_mb")
    print_table(f"Corpus scale (vocabulary {vocab:,}, batch {BATCH}, bptt {BPTT}, {args.num_proc} tokenizing "
                "process(es))", [{k: r.get(k, "") for k in keys} for r in rows])
    print(json.dumps(checks, indent=1))
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, checks=checks, vocab=vocab, num_proc=args.num_proc,
               workdir_free_gb=shutil.disk_usage(workdir.parent).free / 1e9)


if __name__ == "__main__":
    main()
