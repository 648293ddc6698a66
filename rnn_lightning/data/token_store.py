"""The on-disk token store: a corpus tokenized once, a chunk at a time, into flat token files every process maps.

A store folder holds::

    tokenizer.json   the HF tokenizer the ids come from
    <split>.bin      the split's ids (every line as <bos> ids <eos>, concatenated): uint16 while the vocabulary
                     fits in 65,536 ids, else uint32
    manifest.json    format version, fingerprint, dtype, vocabulary size, tokens per split; written last, so a
                     folder without it is an unfinished build (built again)

Every file is written under a temporary name and renamed into place, so processes that build the same store at
once (every node's rank zero on shared storage) leave the same complete files. The folder is named by the
fingerprint of the source and the tokenizer settings: another source or setting gets another folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from rnn_lightning.data.mapped_pages import MappedFiles
from rnn_lightning.data.tokenization import encode_lines, is_whitespace_word_level, vocabulary_by_id

FORMAT_VERSION = 1  # bump when the layout or the encoding of the files changes: old stores are then rebuilt
CHUNK_ROWS = 20_000  # lines read, counted or encoded at a time: bounds the memory of a build, whatever the corpus
MERGE_EVERY = 16  # chunk results (e.g. word counts) held before they are merged into one
MANIFEST, TOKENIZER = "manifest.json", "tokenizer.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding ids ``0 .. vocab_size - 1``: uint16 up to 65,536 ids, else uint32.

    Example:
        >>> token_dtype(65_536).name, token_dtype(65_537).name
        ('uint16', 'uint32')
    """
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


# -- chunked passes over a split (optionally in several processes) --
_WORKER: dict[str, Any] = {}  # a forked worker's dataset, column, chunk function and mappings to release


def _init_worker(data: Dataset, column: str, fn: Callable[[pa.ChunkedArray], Any], mapped: MappedFiles) -> None:
    _WORKER.update(data=data, column=column, fn=fn, mapped=mapped)


def _run_chunk(bounds: tuple[int, int]) -> Any:
    return _chunk_result(_WORKER["data"], _WORKER["column"], _WORKER["fn"], _WORKER["mapped"], bounds)


def _chunk_result(data: Dataset, column: str, fn: Callable[[pa.ChunkedArray], Any], mapped: MappedFiles,
                  bounds: tuple[int, int]) -> Any:
    start, stop = bounds
    texts = data[start:stop].column(column)  # data in arrow format: rows in the dataset's own order
    result = fn(texts)
    mapped.release(texts)  # the chunk's pages of the Arrow cache leave this process's resident memory
    return result


def map_chunks(data: Dataset, column: str, fn: Callable[[pa.ChunkedArray], Any], *, num_proc: int = 1,
               desc: str = "") -> Iterator[Any]:
    """``fn`` of each chunk of ``CHUNK_ROWS`` lines of ``data[column]``, in order, with a progress bar.

    With ``num_proc > 1`` the chunks go to that many forked processes (``fn`` must be a module-level function or
    a ``functools.partial`` of one). Each process unmaps the pages of the ``datasets`` cache files it has read
    after each chunk, so its resident memory stays that of one chunk, whatever the corpus
    (:class:`~rnn_lightning.data.mapped_pages.MappedFiles`).
    """
    view = data.select_columns(column).with_format("arrow")
    mapped = MappedFiles(cache["filename"] for cache in view.cache_files)  # lives with `view`, which maps them
    chunks = [(start, min(start + CHUNK_ROWS, len(view))) for start in range(0, len(view), CHUNK_ROWS)]
    bar = tqdm(total=len(view), desc=desc, unit=" lines", disable=None)
    if num_proc <= 1:
        results: Iterator[Any] = (_chunk_result(view, column, fn, mapped, bounds) for bounds in chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(num_proc, mp_context=get_context("fork"), initializer=_init_worker,
                                   initargs=(view, column, fn, mapped))
        results = pool.map(_run_chunk, chunks)
    try:
        for (start, stop), result in zip(chunks, results):
            bar.update(stop - start)
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def reduce_chunks(data: Dataset, column: str, fn: Callable[[pa.ChunkedArray], Any],
                  merge: Callable[[list[Any]], Any], *, num_proc: int = 1, desc: str = "") -> Any:
    """``merge`` of ``fn`` over the chunks of ``data[column]``, merging every few chunks to keep memory bounded
    (e.g. word counts: :func:`~rnn_lightning.data.tokenization.line_word_counts` and ``merge_counts``)."""
    parts: list[Any] = []
    for part in map_chunks(data, column, fn, num_proc=num_proc, desc=desc):
        parts.append(part)
        if len(parts) == MERGE_EVERY:
            parts = [merge(parts)]
    return merge(parts)


def _encode_chunk(texts: pa.ChunkedArray, *, tokenizer: Tokenizer, by_id: pa.Array | None,
                  dtype: np.dtype) -> np.ndarray:
    """(lines,) -> (tokens,) ``dtype``: each line as ``<bos> ids <eos>``, concatenated."""
    return encode_lines(tokenizer, texts, by_id).values.to_numpy().astype(dtype)


# -- the store --
class TokenStore:
    """A built store folder: its manifest, tokenizer and memory-mapped token files.

    Args:
        folder: the store's folder (holding a ``manifest.json``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"the token store {self.folder} has format {self.manifest.get('format')!r}, this version reads "
                f"format {FORMAT_VERSION}. Delete the folder {self.folder} and run again to rebuild it."
            )
        self.dtype = np.dtype(self.manifest["dtype"])

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / MANIFEST).is_file()

    @property
    def splits(self) -> dict[str, int]:
        """Tokens per split."""
        return self.manifest["splits"]

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_file(str(self.folder / TOKENIZER))

    def tokens(self, split: str) -> np.memmap:
        """``split``'s ids (M,), memory-mapped read-only; a file whose size disagrees with the manifest is refused."""
        if split not in self.splits:
            raise ValueError(f"the token store {self.folder} has no {split!r} split (it has {sorted(self.splits)}).")
        path, count = self.folder / f"{split}.bin", self.splits[split]
        expected = count * self.dtype.itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != expected:
            found = "is missing" if size is None else f"holds {size:,} bytes"
            raise ValueError(
                f"the token file {path} {found}, but its manifest says {count:,} {self.dtype.name} tokens "
                f"({expected:,} bytes): the store is damaged (an interrupted copy or a full disk?). Delete the folder "
                f"{self.folder} and run again to rebuild it."
            )
        if count == 0:
            return np.zeros(0, dtype=self.dtype)  # mmap cannot map an empty file
        return np.memmap(path, dtype=self.dtype, mode="r", shape=(count,))


def build_store(folder: str | Path, splits: dict[str, Dataset], *, column: str, tokenizer: Tokenizer,
                fingerprint: str, num_proc: int = 1) -> TokenStore:
    """Tokenize every split of ``splits`` a chunk at a time into ``folder`` (see the module) and open the store.

    Args:
        folder: where the store goes (created if missing).
        splits: the corpus, split name -> dataset.
        column: the text column.
        tokenizer: the tokenizer to encode with (saved beside the tokens).
        fingerprint: names the source and settings (kept in the manifest).
        num_proc: processes that encode chunks.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    if not (folder / TOKENIZER).is_file():
        write_atomic(folder / TOKENIZER, lambda tmp: tokenizer.save(str(tmp)))
    by_id = vocabulary_by_id(tokenizer) if is_whitespace_word_level(tokenizer) else None
    counts = {}
    for split, data in splits.items():
        def write(tmp: Path, data: Dataset = data, split: str = split) -> None:
            encode = partial(_encode_chunk, tokenizer=tokenizer, by_id=by_id, dtype=dtype)
            with open(tmp, "wb") as out:
                for ids in map_chunks(data, column, encode, num_proc=num_proc, desc=f"Tokenizing {split}"):
                    out.write(ids.tobytes())
                    counts[split] += len(ids)
        counts[split] = 0
        write_atomic(folder / f"{split}.bin", write)
    manifest = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "dtype": dtype.name, "vocab_size": vocab_size,
                "splits": counts}
    write_atomic(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1) + "\n"))
    return TokenStore(folder)
