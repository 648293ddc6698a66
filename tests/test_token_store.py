"""The on-disk token store and the streams that read it: the same windows as the in-memory streams of before,
reuse and rebuild by fingerprint, damaged files refused, the uint16/uint32 boundary, pages read per rank, and
builds on two "nodes" that share only the source files."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from corpora import CORPORA
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModelingDataModule
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data import language_modeling, token_store
from rnn_lightning.data.streams import StreamWindows, TokenStreams
from rnn_lightning.data.token_store import token_dtype

REPO = Path(__file__).resolve().parents[1]
WIKITEXT2 = CORPORA / "wikitext-2"
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


# -- an independent reference: a plain reader and the in-memory streams the library had before the store --
def plain_vocab(lines):
    """Words by decreasing count, ties in code-point order, after the special tokens (Python's Counter and sort)."""
    counts = Counter(w for line in lines for w in line.split() if w not in SPECIALS)  # WikiText writes <unk>
    return {w: i for i, w in enumerate(SPECIALS + sorted(counts, key=lambda w: (-counts[w], w)))}


def plain_ids(lines, vocab):
    ids = []
    for line in lines:
        ids += [vocab["<bos>"], *(vocab.get(w, vocab["<unk>"]) for w in line.split()), vocab["<eos>"]]
    return torch.tensor(ids)


def reference_windows(ids, streams, bptt, rank, world, *, train, pad_id, bos):
    """The windows of the in-memory streams (a copy of the rule before the store): whole (S, L) rows in memory,
    this rank's block of rows, cut every ``bptt`` columns."""
    num_targets = ids.numel() - 1
    if train:
        length = num_targets // streams
        inputs = ids[: streams * length].view(streams, length)
        targets = ids[1: streams * length + 1].view(streams, length).clone()
    else:
        base, extra = divmod(num_targets, streams)
        inputs = ids.new_full((streams, base + (extra > 0)), pad_id)
        targets = ids.new_full(inputs.shape, IGNORE_INDEX)
        cut = extra * (base + 1)
        if extra:
            inputs[:extra] = ids[:cut].view(extra, base + 1)
            targets[:extra] = ids[1: cut + 1].view(extra, base + 1)
        inputs[extra:, :base] = ids[cut:num_targets].view(streams - extra, base)
        targets[extra:, :base] = ids[cut + 1:].view(streams - extra, base)
    targets[targets == bos] = IGNORE_INDEX
    rows = streams // world
    inputs, targets = inputs[rank * rows: (rank + 1) * rows], targets[rank * rows: (rank + 1) * rows]
    return [(inputs[:, c: c + bptt], targets[:, c: c + bptt]) for c in range(0, inputs.size(1), bptt)]


def assert_same_windows(dm, lines, split, *, world):
    vocab = plain_vocab(lines["train"])
    assert dm.tokenizer.get_vocab() == vocab
    ids = plain_ids(lines[split], vocab)
    per_device = dm.batch_size if split == "train" else dm.eval_batch_size
    for rank in range(world):
        dm.trainer = type("T", (), {"global_rank": rank, "world_size": world})()  # what windows() reads
        ours = list(dm.windows(split))
        expected = reference_windows(ids, per_device * world, dm.bptt, rank, world, train=split == "train",
                                     pad_id=vocab["<pad>"], bos=vocab["<bos>"])
        assert len(ours) == len(expected)
        for (x, y), (ex, ey) in zip(ours, expected):
            assert x.dtype == y.dtype == torch.int64
            assert torch.equal(x, ex) and torch.equal(y, ey)
    dm.trainer = None


def write_corpus(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, split_lines in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(split_lines) + "\n", encoding="utf-8")
        files[split] = str(folder / f"{split}.txt")
    return files


def small_corpus(seed=0, words=50, lines=300):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(words)]
    make = lambda n: [" ".join(rng.choice(vocab, size=rng.integers(0, 15))) for _ in range(n)]  # noqa: E731
    return {"train": make(lines), "validation": make(lines // 5), "test": make(lines // 5)}


# -- same windows as before --
@pytest.mark.parametrize("world", [1, 2])
def test_store_streams_give_the_in_memory_streams_windows(tmp_path, world):
    lines = small_corpus()
    dm = LanguageModelingDataModule(path="text", data_files=write_corpus(tmp_path / "src", lines), batch_size=3,
                                    eval_batch_size=2, bptt=7, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    for split in ("train", "validation", "test"):
        assert_same_windows(dm, lines, split, world=world)


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT2.is_dir(), reason="WikiText-2 is not in the corpora folder")
def test_wikitext2_store_streams_give_the_in_memory_streams_windows(tmp_path):
    """The real corpus: the vocabulary, every training window (batch 20, bptt 35) and every validation window
    (10 streams), on one rank and on each of two, equal a plain reader's ids cut by the former in-memory rule."""
    files = {split: str(WIKITEXT2 / f"{name}.txt")
             for split, name in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    lines = {split: Path(path).read_text(encoding="utf-8").split("\n")[:-1] for split, path in files.items()}
    dm = LanguageModelingDataModule(path="text", data_files=files, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert dm.store.manifest["dtype"] == "uint16" and dm.vocab_size == 33_278 + 2  # <pad> and <bos> added
    for world in (1, 2):
        assert_same_windows(dm, lines, "train", world=world)
        assert_same_windows(dm, lines, "validation", world=world)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_build_in_many_chunks_over_many_arrow_batches_writes_the_plain_readers_ids(tmp_path, monkeypatch, num_proc):
    """Chunks of 37 lines over Arrow record batches of 50 (boundaries that never meet), each chunk's cache pages
    unmapped after it is read: every split's token file holds exactly a plain reader's ids."""
    monkeypatch.setattr(token_store, "CHUNK_ROWS", 37)
    monkeypatch.setattr(language_modeling, "ARROW_BATCH_ROWS", 50)
    lines = small_corpus(lines=1_000)
    dm = LanguageModelingDataModule(path="text", data_files=write_corpus(tmp_path / "src", lines),
                                    cache_dir=str(tmp_path / "cache"), num_proc=num_proc)
    dm.prepare_data()
    assert dm.raw["train"].data.column("text").num_chunks == 20
    vocab = plain_vocab(lines["train"])
    assert dm.tokenizer.get_vocab() == vocab
    for split in lines:
        ids = plain_ids(lines[split], vocab).numpy().astype(dm.store.dtype)
        assert dm.store.tokens(split).tobytes() == ids.tobytes()


# -- reuse and rebuild --
def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_an_unchanged_store_is_reused_and_another_source_or_setting_builds_its_own(tmp_path):
    lines = small_corpus()
    files = write_corpus(tmp_path / "src", lines)
    kwargs = dict(path="text", data_files=files, cache_dir=str(tmp_path / "cache"), batch_size=2, bptt=5)
    first = LanguageModelingDataModule(**kwargs)
    first.prepare_data()
    folder, built = first.store_folder, _mtimes(first.store_folder)
    assert sorted(built) == ["manifest.json", "test.bin", "tokenizer.json", "train.bin", "validation.bin"]

    again = LanguageModelingDataModule(**kwargs)  # same source and settings: the same files, not written again
    again.prepare_data()
    assert again.store_folder == folder and _mtimes(folder) == built

    changed = {**lines, "train": lines["train"][:-20] + ["w1 brand new words"] * 20}
    write_corpus(tmp_path / "src", changed)  # the same paths, other text
    rebuilt = LanguageModelingDataModule(**kwargs)
    rebuilt.prepare_data()
    assert rebuilt.store_folder != folder and "brand" in rebuilt.tokenizer.get_vocab()
    assert torch.equal(rebuilt.token_ids("train"), plain_ids(changed["train"], plain_vocab(changed["train"])))
    assert rebuilt.store.manifest["fingerprint"] != first.store.manifest["fingerprint"]

    for setting in ({"min_frequency": 21}, {"max_vocab_size": 20}, {"tokenizer": "char"}):  # "brand": 20 times
        other = LanguageModelingDataModule(**kwargs, **setting)
        other.prepare_data()
        assert other.store_folder not in (folder, rebuilt.store_folder)
        assert "brand" not in other.tokenizer.get_vocab() and other.vocab_size != rebuilt.vocab_size


def test_a_truncated_token_file_is_refused_naming_the_file_and_the_fix(tmp_path):
    kwargs = dict(path="text", data_files=write_corpus(tmp_path / "src", small_corpus()),
                  cache_dir=str(tmp_path / "cache"), batch_size=2, bptt=5)
    dm = LanguageModelingDataModule(**kwargs)
    dm.prepare_data()
    train = dm.store_folder / "train.bin"
    size = train.stat().st_size
    with open(train, "r+b") as f:
        f.truncate(size - 6)  # an interrupted copy
    with pytest.raises(ValueError, match=rf"token file {train} holds {size - 6:,} bytes.*{size:,} bytes.*"
                                         rf"Delete the folder {dm.store_folder} and run again to rebuild it"):
        LanguageModelingDataModule(**kwargs).setup("fit")
    train.unlink()
    with pytest.raises(ValueError, match=rf"token file {train} is missing"):
        LanguageModelingDataModule(**kwargs).token_ids("train")


@pytest.mark.parametrize(("words", "dtype"), [(2**16 - 4, "uint16"), (2**16 - 3, "uint32")])
def test_a_vocabulary_past_65536_ids_switches_the_token_file_to_uint32(words, dtype):
    """65,536 ids (the 4 special tokens and 65,532 words) still fit uint16; one more needs uint32. The ids read
    back equal a plain reader's, the largest included."""
    lines = [" ".join(f"w{i}" for i in range(start, min(start + 500, words))) for start in range(0, words, 500)]
    lines += ["w0 w1 w2"] * 5  # distinct counts: w0..w2 first
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=Dataset.from_dict({"text": lines})))
    assert dm.vocab_size == words + 4 and token_dtype(dm.vocab_size).name == dtype
    assert dm.store.manifest["dtype"] == dtype and dm.store.tokens("train").dtype == np.dtype(dtype)
    ids = dm.token_ids("train")
    assert int(ids.max()) == words + 3
    assert torch.equal(ids, plain_ids(lines, plain_vocab(lines)))


def test_a_rank_reads_only_its_own_streams():
    """Each window gathers only this rank's rows: the positions read from the token array lie inside them."""

    class Recording(np.ndarray):
        read: list = []

        def __getitem__(self, index):
            Recording.read.append(np.asarray(index).ravel())
            return super().__getitem__(index)

    ids = np.arange(1001, dtype=np.uint16).view(Recording)
    streams = TokenStreams(ids, 4, pad_id=0, drop_remainder=True)  # rows of 250: [0, 250), [250, 500), ...
    windows = StreamWindows(streams, bptt=30, rank=1, world_size=2)  # rows 2 and 3: ids [500, 1000]
    Recording.read.clear()
    served = list(windows)
    read = np.concatenate(Recording.read)
    assert read.min() == 500 and read.max() == 1000
    assert torch.equal(torch.cat([x for x, _ in served], 1), torch.arange(500, 1000).view(2, 250))


# -- two nodes, sharing only the source files --
NODE = """
import hashlib, json, sys
from rnn_lightning import LanguageModelingDataModule
files, cache, num_proc = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
dm = LanguageModelingDataModule(path="text", data_files=files, cache_dir=cache, num_proc=num_proc)
dm.prepare_data()
digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dm.store_folder.iterdir())}
print(json.dumps({"manifest": dm.store.manifest, "files": digests, "folder": dm.store_folder.name}))
"""


@pytest.mark.slow
def test_two_nodes_sharing_only_the_source_build_identical_stores(tmp_path):
    """Two processes, each with its own cache folder (one tokenizing in two processes), build from the same
    source files the same manifest fingerprint and byte-identical token files."""
    files = write_corpus(tmp_path / "src", small_corpus(words=300, lines=50_000))
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    nodes = [subprocess.Popen([sys.executable, "-c", NODE, json.dumps(files), str(tmp_path / f"node{i}"), str(i + 1)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    results = []
    for node in nodes:
        out, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    a, b = results
    assert a["manifest"] == b["manifest"] and a["folder"] == b["folder"] == a["manifest"]["fingerprint"]
    assert a["files"] == b["files"] and set(a["files"]) >= {"train.bin", "validation.bin", "test.bin"}
    assert a["manifest"]["splits"]["train"] > 50_000


def test_num_proc_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"`num_proc` must be a positive integer \(processes that tokenize\), got 0"):
        LanguageModelingDataModule(dataset=DatasetDict(train=Dataset.from_dict({"text": ["a b"]})), num_proc=0)


def test_a_process_finds_a_built_store_without_loading_the_corpus(tmp_path):
    """A second process (a new datamodule) over unchanged local files sets up from the store alone: the corpus is
    never loaded (``datasets`` would hold memory in proportion to it), and the windows are the same."""
    lines = small_corpus()
    kwargs = dict(path="text", data_files=write_corpus(tmp_path / "src", lines), cache_dir=str(tmp_path / "cache"),
                  batch_size=3, bptt=7)
    first = LanguageModelingDataModule(**kwargs)
    first.prepare_data()
    again = LanguageModelingDataModule(**kwargs)
    again.prepare_data()
    again.setup("fit")
    assert again._raw is None and again.vocab_size == first.vocab_size
    assert_same_windows(again, lines, "train", world=1)
    assert again._raw is None
    with pytest.raises(ValueError, match=r"no 'nonexistent' split"):  # a split it lacks: the corpus says why
        again.token_ids("nonexistent")
