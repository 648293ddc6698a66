"""Mapped pages out of resident memory: MappedFiles.release unmaps a file's pages (the kernel's own count in
/proc/self/smaps says so) and the data reads the same after; a store build leaves the ``datasets`` Arrow cache of
its corpus unmapped, where a plain pass over the same dataset maps all of it."""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rnn_lightning import LanguageModelingDataModule
from rnn_lightning.data import token_store
from rnn_lightning.data.mapped_pages import MappedFiles

SMAPS = Path("/proc/self/smaps")
pytestmark = pytest.mark.skipif(not SMAPS.is_file(), reason="the kernel lists mappings in /proc/self/smaps (Linux)")


def resident_bytes(path):
    """The kernel's count of ``path``'s pages resident in this process (every mapping of it, summed)."""
    wanted, total, current = os.path.realpath(path), 0, None
    for line in SMAPS.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            current = fields[5] if len(fields) == 6 else None
        elif fields[0] == "Rss:" and current == wanted:
            total += int(fields[1]) * 1024
    return total


def test_release_unmaps_a_files_pages_and_the_data_reads_the_same(tmp_path):
    path = tmp_path / "values.bin"
    reference = np.random.default_rng(0).integers(0, 2**62, size=1 << 20)  # (1M,) 8 MB
    reference.tofile(path)
    data = np.memmap(path, dtype=np.int64, mode="r")
    assert np.array_equal(data, reference)  # every page read
    assert resident_bytes(path) >= 0.9 * path.stat().st_size
    MappedFiles([path]).release()
    assert resident_bytes(path) == 0
    assert np.array_equal(data, reference)  # mapped back from the file


def test_release_of_arrays_unmaps_only_the_pages_under_their_buffers(tmp_path):
    path = tmp_path / "values.bin"
    reference = np.arange(1 << 20, dtype=np.int64)  # (1M,) 8 MB
    reference.tofile(path)
    data = np.memmap(path, dtype=np.int64, mode="r")
    assert np.array_equal(data, reference)
    quarter = len(data) // 4
    first = pa.Array.from_buffers(pa.int64(), quarter, [None, pa.py_buffer(data[:quarter])])  # zero-copy
    MappedFiles([path]).release(first)
    assert resident_bytes(path) == path.stat().st_size - quarter * 8  # the other three quarters stay
    assert first.to_numpy().tolist() == list(range(quarter))


def test_only_read_only_mappings_of_the_named_files_are_released(tmp_path):
    path = tmp_path / "values.bin"
    np.arange(1 << 16, dtype=np.int64).tofile(path)
    writable = np.memmap(path, dtype=np.int64, mode="r+")
    writable[:] += 1  # dirty pages an unmapping would lose
    assert MappedFiles([path]).ranges == []
    assert MappedFiles([tmp_path / "other.bin"]).ranges == [] and MappedFiles([]).ranges == []
    readonly = np.memmap(path, dtype=np.int64, mode="r")
    assert len(MappedFiles([path]).ranges) == 1
    MappedFiles([path]).release()
    assert np.array_equal(readonly, np.arange(1, (1 << 16) + 1)) and np.array_equal(writable, readonly)


def test_a_store_build_keeps_the_corpus_arrow_cache_out_of_resident_memory(tmp_path, monkeypatch):
    """The corpus is loaded (cache written in large record batches: opening it maps little), its vocabulary
    counted and it is encoded in 20 chunks; after each the cache's pages are unmapped. The counterfactual, one
    plain pass over the same dataset, maps nearly the whole file (so the first assertions can fail)."""
    monkeypatch.setattr(token_store, "CHUNK_ROWS", 10_000)
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(1_000)])
    lines = [" ".join(row) for row in words[rng.integers(0, len(words), size=(200_000, 10))]]  # about 8 MB
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    dm = LanguageModelingDataModule(path="text", data_files={"train": str(tmp_path / "train.txt")},
                                    cache_dir=str(tmp_path / "cache"))
    cache = dm.raw["train"].cache_files[0]["filename"]
    size = Path(cache).stat().st_size
    assert resident_bytes(cache) < 0.1 * size  # opened
    dm.prepare_data()
    assert sum(dm.store.splits.values()) == 200_000 * 12  # <bos> 10 words <eos>
    assert resident_bytes(cache) < 0.1 * size  # counted and encoded
    column = dm.raw["train"].with_format("arrow")[:]["text"]
    assert pc.sum(pc.utf8_length(column)).as_py() == sum(map(len, lines))  # a pass that reads every page
    assert resident_bytes(cache) > 0.9 * size
