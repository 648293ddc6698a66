"""LightningDataModule for language modeling over HF ``datasets``: load -> token store (on disk) -> streams."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import torch
from datasets import DatasetDict
from tokenizers import Tokenizer

from rnn_lightning.compat import dataset_fingerprint
from rnn_lightning.data.base import CorpusDataModule
from rnn_lightning.data.corpus import files_note, local_files
from rnn_lightning.data.streams import BackwardIds, StreamLoader, StreamWindows, TokenStreams
from rnn_lightning.data.token_store import (
    FORMAT_VERSION,
    TOKENIZER,
    TokenStore,
    build_store,
    reduce_chunks,
    write_atomic,
)
from rnn_lightning.data.tokenization import (
    BOS,
    EOS,
    SPECIAL_TOKENS,
    char_tokenizer_from_chars,
    line_chars,
    line_word_counts,
    load_tokenizer,
    merge_counts,
    word_tokenizer_from_counts,
)
from rnn_lightning.nn.checks import check_direction, check_flag

_ENCODER_VERSION = "lines-bos-eos-v2"  # bump when `encode_lines` changes output, to invalidate stores
STORE_FOLDER = "rnn_lightning-store"
ARROW_BATCH_ROWS = 100_000  # lines per record batch of the `datasets` cache a corpus is loaded into (see `_load`)


def _union(parts: list[set[str]]) -> set[str]:
    return set().union(*parts)


def reverse_lines(ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The text read backwards, each line keeping its frame: ``ids`` (M,) holds lines ``<bos> x1 .. xn <eos>`` starting
    at ``offsets`` (L + 1,); returns the lines in reverse order, each as ``<bos> xn .. x1 <eos>``.

    A backward model trained on this stream predicts each token from the text to its right, with the same targets
    counted as the forward stream (every token and ``<eos>``), and generates from ``<bos>`` as a forward model does.

    Example:
        >>> reverse_lines(np.array([2, 7, 8, 3, 2, 9, 3]), np.array([0, 4, 7])).tolist()
        [2, 9, 3, 2, 8, 7, 3]
    """
    flipped = ids[::-1].copy()  # lines in reverse order, each <eos> xn .. x1 <bos>
    lengths = np.diff(offsets)[::-1]
    ends = np.cumsum(lengths)  # (L,) one past each line of the flipped stream
    starts = ends - lengths
    flipped[starts], flipped[ends - 1] = flipped[ends - 1], flipped[starts].copy()  # the frame back in place
    return flipped


class LanguageModelingDataModule(CorpusDataModule):
    """Text corpus -> contiguous token streams cut into ``bptt`` windows, for truncated BPTT.

    The corpus comes from the HF hub (``path="wikitext", name="wikitext-2-v1"``), from local files through a
    ``datasets`` builder (``path="text", data_files={"train": "train.txt", ...}``; also ``csv``, ``json``,
    ``parquet``), or from an in-memory ``DatasetDict`` (``dataset=...``). Each line is encoded as
    ``<bos> tokens <eos>``; the split is concatenated and cut into ``batch_size`` streams per device.

    ``prepare_data`` (once per node) tokenizes the corpus a chunk at a time into a token store
    (:mod:`rnn_lightning.data.token_store`: a flat uint16/uint32 file per split, the tokenizer, a manifest), in a
    folder named by the fingerprint of the source and the tokenizer settings under ``cache_dir`` (else beside the
    ``datasets`` cache; an in-memory corpus gets a temporary one). ``setup`` memory-maps it, and each window reads
    only its own slices, so memory does not grow with the corpus and each DDP rank reads only its own streams.
    A store whose fingerprint matches is reused; another source or setting builds another. Over local files a
    later process finds the store from a stat of the files and never loads the corpus.

    Args:
        path: hub dataset name or builder name, as for ``datasets.load_dataset``.
        name: dataset configuration, e.g. ``"wikitext-2-v1"``.
        data_files: files per split for a builder, e.g. ``{"train": "train.txt", "validation": "valid.txt"}``.
        dataset: an in-memory ``DatasetDict`` with ``train``/``validation``/``test`` splits (Python API only).
        text_column: the column holding the text lines.
        tokenizer: ``"word"`` (whitespace words, vocabulary from the train split), ``"char"``, or a path to a
            ``tokenizer.json``.
        min_frequency: word tokenizer: words seen fewer times in train become ``<unk>``.
        max_vocab_size: word tokenizer: keep at most this many entries (``None``: the whole vocabulary).
        batch_size: streams per device for training.
        eval_batch_size: streams per device for validation and test.
        bptt: window length: steps of backpropagation through time.
        num_workers: DataLoader workers (windows are tensor slices: 0 is usually fastest).
        cache_dir: ``datasets`` cache folder; the token store goes in its ``rnn_lightning-store/``. On a cluster,
            a folder on storage every node reads lets one build serve all (set ``prepare_data_per_node = False``
            on the datamodule so only global rank zero builds it).
        holdout: splits to carve off the end of train, in order, as fractions of its rows, for a corpus that
            lacks them, e.g. ``{"validation": 0.05, "test": 0.05}``.
        variable_bptt: training windows of varying length, AWD-LSTM's rule (``bptt`` with probability 0.95 else
            ``bptt / 2``, plus Normal(0, 5), at least 5), a new cut each epoch; each batch then carries its
            ``length / bptt``, by which :class:`~rnn_lightning.LanguageModel` scales that step's learning rate.
            Evaluation keeps ``bptt``-long windows.
        bptt_seed: seed of the variable windows (with the epoch); the same on every rank, as it must be.
        direction: ``"backward"`` serves the text read from its end: the lines in reverse order, each reversed
            (its ``<bos>`` first and ``<eos>`` last, see :func:`reverse_lines`), for a backward language model (the
            CLI passes it to :class:`~rnn_lightning.LanguageModel`'s ``direction``). ``"forward"``: as written.
        csv_delimiter: field separator for the ``csv`` builder (``"\\t"`` for GLUE's .tsv files, whose
            ``text_column`` is ``sentence``: a classification corpus read as language-model text).
        num_proc: processes that count the vocabulary and tokenize the corpus when the store is built.

    Example:
        >>> from datasets import Dataset, DatasetDict
        >>> lines = Dataset.from_dict({"text": ["a b c d", "b c a"] * 20})
        >>> dm = LanguageModelingDataModule(dataset=DatasetDict(train=lines, validation=lines), batch_size=2, bptt=5)
        >>> dm.vocab_size, dm.pad_id
        (8, 0)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), dm.tokenizer.decode(x[0].tolist())
        ((2, 5), '<bos> a b c d')
    """

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        *,
        data_files: dict[str, str | list[str]] | str | None = None,
        dataset: DatasetDict | None = None,
        text_column: str = "text",
        tokenizer: Literal["word", "char"] | str = "word",
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        batch_size: int = 20,
        eval_batch_size: int = 10,
        bptt: int = 35,
        num_workers: int = 0,
        cache_dir: str | None = None,
        holdout: dict[str, float] | None = None,
        variable_bptt: bool = False,
        bptt_seed: int = 0,
        direction: Literal["forward", "backward"] = "forward",
        csv_delimiter: str | None = None,
        num_proc: int = 1,
    ) -> None:
        super().__init__(
            path, name, data_files=data_files, dataset=dataset, text_column=text_column, tokenizer=tokenizer,
            min_frequency=min_frequency, max_vocab_size=max_vocab_size, batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, cache_dir=cache_dir, holdout=holdout,
        )
        if not isinstance(bptt, int) or bptt < 1:
            raise ValueError(f"`bptt` must be a positive integer, got {bptt!r}.")
        check_flag("variable_bptt", variable_bptt)
        check_direction(direction)
        if not isinstance(num_proc, int) or num_proc < 1:
            raise ValueError(f"`num_proc` must be a positive integer (processes that tokenize), got {num_proc!r}.")
        self.bptt, self.variable_bptt, self.bptt_seed, self.direction = bptt, variable_bptt, bptt_seed, direction
        self.csv_delimiter, self.num_proc = csv_delimiter, num_proc
        self._streams: dict[str, StreamWindows] = {}
        self._store: TokenStore | None = None
        self._store_root: Path | None = None

    def _load(self, **kwargs: Any) -> DatasetDict:
        # Opening an Arrow cache reads each record batch's header through the memory map, and each read maps the
        # pages around it into the process: in batches of 1,000 lines (the default) that is most of the file, in
        # batches of ARROW_BATCH_ROWS almost none (a builder's own batches, e.g. the text builder's, stay smaller).
        return super()._load(writer_batch_size=ARROW_BATCH_ROWS, **kwargs)

    # -- the token store --
    @property
    def fingerprint(self) -> str:
        """Names the source and the settings the store is built from: ``datasets``' own fingerprint of each split
        (for local files it derives from their paths and modification times: a stat, no read, and the same test by
        which ``datasets`` decides to re-read them), the tokenizer settings, the encoder and the store format."""
        spec = self.tokenizer_spec
        if spec not in ("word", "char"):  # a tokenizer file: its content
            spec = "file:" + hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()
        key = {"splits": {split: dataset_fingerprint(data) for split, data in sorted(self.raw.items())},
               "tokenizer": spec, "min_frequency": self.min_frequency, "max_vocab_size": self.max_vocab_size,
               "text_column": self.text_column, "encoder": _ENCODER_VERSION, "format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def store_folder(self) -> Path:
        """This corpus's store: ``<cache_dir>/rnn_lightning-store/<fingerprint>``, else beside the ``datasets``
        cache; an in-memory corpus (no cache files, no stable fingerprint) gets a temporary folder, removed with
        the datamodule."""
        if self._store_root is None:
            cached = next((d.cache_files[0]["filename"] for d in self.raw.values() if d.cache_files), None)
            if cached is None:
                self._store_root = Path(tempfile.mkdtemp(prefix="rnn_lightning-store-"))
                weakref.finalize(self, shutil.rmtree, self._store_root, True)
            elif self.cache_dir is not None:
                self._store_root = Path(self.cache_dir) / STORE_FOLDER
            else:
                self._store_root = Path(cached).parent / STORE_FOLDER
        return self._store_root / self.fingerprint

    def _source_key(self) -> str | None:
        """A key of a local-file corpus from a stat of its files (paths, sizes, modification times) and every
        setting the store depends on, to find its built store without loading the corpus (``datasets`` holds
        memory in proportion to a loaded corpus); ``None`` for a hub or in-memory corpus."""
        files = local_files(self.data_files) if self.path is not None else []
        spec = self.tokenizer_spec if self.tokenizer_spec in ("word", "char") else ("text_file", self.tokenizer_spec)
        paths = [path for _, path in files] + ([spec[1]] if isinstance(spec, tuple) else [])
        if not files or not all(Path(path).is_file() for path in paths):
            return None  # a hub name, a glob or a remote file: only `datasets` knows
        stats = [[str(Path(p).resolve()), st.st_size, st.st_mtime_ns] for p in paths for st in [Path(p).stat()]]
        key = {"path": self.path, "name": self.name, "splits": [split for split, _ in files], "files": stats,
               "holdout": self.holdout, "tokenizer": spec, "min_frequency": self.min_frequency,
               "max_vocab_size": self.max_vocab_size, "text_column": self.text_column, "encoder": _ENCODER_VERSION,
               "format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def _index_entry(self) -> Path | None:
        """Where the folder of this local-file corpus's store is noted, by :meth:`_source_key`."""
        key = self._source_key()
        root = Path(self.cache_dir) if self.cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
        return None if key is None else root / STORE_FOLDER / "sources" / f"{key}.json"

    def _indexed_folder(self) -> Path | None:
        """The built store of this local-file corpus, found from a stat of its files (``None``: load to know)."""
        entry = self._index_entry()
        if entry is None or not entry.is_file():
            return None
        folder = Path(json.loads(entry.read_text())["folder"])
        return folder if TokenStore.exists(folder) else None

    @property
    def store(self) -> TokenStore:
        """The corpus's token store, built (every split, a chunk at a time) if it is not there yet."""
        if self._store is None and (indexed := self._indexed_folder()) is not None:
            self._store = TokenStore(indexed)  # the same files and settings as when it was built
        if self._store is None:
            folder, fingerprint = self.store_folder, self.fingerprint
            if not TokenStore.exists(folder):
                usable = {split: data for split, data in self.raw.items()
                          if len(data) and self.text_column in data.column_names}  # the others fail when asked for
                build_store(folder, usable, column=self.text_column, tokenizer=self.tokenizer,
                            fingerprint=fingerprint, num_proc=self.num_proc)
            self._store = TokenStore(folder)
            if self._store.manifest["fingerprint"] != fingerprint:
                raise ValueError(
                    f"the token store {folder} was built from another source (fingerprint "
                    f"{self._store.manifest['fingerprint']}, expected {fingerprint}). Delete the folder {folder} "
                    "and run again to rebuild it."
                )
            entry = self._index_entry()
            if entry is not None:
                entry.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(entry, lambda tmp: tmp.write_text(json.dumps({"folder": str(folder.resolve())})))
        return self._store

    @property
    def tokenizer(self) -> Tokenizer:
        """The HF tokenizer: counted from the train split a chunk at a time on first use (kept in the store), or
        loaded from a file."""
        if self._tokenizer is None:
            kind = self.tokenizer_spec
            if kind not in ("word", "char"):
                self._tokenizer = load_tokenizer(kind)
                return self._tokenizer
            saved = (self._indexed_folder() or self.store_folder) / TOKENIZER
            if saved.is_file():
                self._tokenizer = Tokenizer.from_file(str(saved))
                return self._tokenizer
            train = self._split("train")
            count, merge = (line_word_counts, merge_counts) if kind == "word" else (line_chars, _union)
            counts = reduce_chunks(train, self.text_column, count, merge, num_proc=self.num_proc,
                                   desc="Counting the vocabulary")
            if kind == "word":
                self._tokenizer = word_tokenizer_from_counts(counts, self.min_frequency, self.max_vocab_size)
            else:
                self._tokenizer = char_tokenizer_from_chars(counts)
            self._check_real_tokens(len(train))
            saved.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(saved, lambda tmp: self._tokenizer.save(str(tmp)))  # concurrent ranks: whole files only
        return self._tokenizer

    def _check_real_tokens(self, rows: int) -> None:
        """Refuse a vocabulary of the special tokens alone: every line would be ``<bos> <eos>`` and a model would
        train on line ends only."""
        if self._tokenizer.get_vocab_size() > len(SPECIAL_TOKENS):
            return
        unit = "word" if self.tokenizer_spec == "word" else "character"
        rare = f" seen `min_frequency`={self.min_frequency} times" if self.min_frequency > 1 else ""
        raise ValueError(
            f"the 'train' split holds no {unit}{rare}{files_note(self.data_files, 'train')}: its {rows} rows of "
            f"`text_column` {self.text_column!r} are blank, so the vocabulary is the special tokens alone and a "
            "model would learn only line ends. Point `data_files` at the corpus with text"
            + (", or lower `min_frequency`." if rare else ".")
        )

    def _check_split(self, split: str) -> None:
        """Refuse a missing or empty split, or one without the text column, with the fix (the store holds only
        splits that passed; a split it holds needs no look at the corpus)."""
        if split not in self.store.splits:
            self._split(split)

    def prepare_data(self) -> None:
        """Load the corpus and build its token store (Lightning calls it on rank zero of each node)."""
        if self._indexed_folder() is None:
            super().prepare_data()
        self.store  # noqa: B018

    # -- streams --
    def token_ids(self, split: str) -> torch.Tensor:
        """All ids of ``split`` concatenated, (M,) int64: every line as ``<bos> ids <eos>`` (read backwards, lines and
        ids reversed, for ``direction="backward"``), read into memory."""
        self._check_split(split)
        return torch.from_numpy(np.array(self._ids(split), dtype=np.int64))

    def _ids(self, split: str) -> np.ndarray | BackwardIds:
        """(M,) the split's ids as the streams read them: the memory-mapped token file, or its backward view."""
        ids = self.store.tokens(split)
        if self.direction == "backward":
            return BackwardIds(ids, bos_id=self.tokenizer.token_to_id(BOS), eos_id=self.tokenizer.token_to_id(EOS))
        return ids

    def windows(self, split: str) -> StreamWindows:
        """``split`` as this process's block of ``bptt`` windows (re-cut if the number of processes changed)."""
        rank, world = self._rank_world()
        if split not in self._streams or (self._streams[split].rank, self._streams[split].world_size) != (rank, world):
            per_device = self.batch_size if split == "train" else self.eval_batch_size
            self._check_split(split)
            ids = self._ids(split)  # (M,) memory-mapped
            needed = per_device * world * (self.bptt + 1) if split == "train" else per_device * world + 1
            if len(ids) < needed:
                what = "batch_size * devices * (bptt + 1)" if split == "train" else "eval_batch_size * devices + 1"
                raise ValueError(
                    f"the {split!r} split has {len(ids)} tokens (with <bos>/<eos>), fewer than {what} = "
                    f"{needed} (batch_size={self.batch_size}, eval_batch_size={self.eval_batch_size}, "
                    f"bptt={self.bptt}, devices={world}). Lower the batch size or bptt, or use more text."
                )
            streams = TokenStreams(ids, per_device * world, pad_id=self.pad_id, drop_remainder=split == "train",
                                   ignore_ids=(self.tokenizer.token_to_id(BOS),))
            variable_seed = self.bptt_seed if self.variable_bptt and split == "train" else None
            self._streams[split] = StreamWindows(streams, self.bptt, rank=rank, world_size=world,
                                                 variable_seed=variable_seed)
        return self._streams[split]

    def _dataset(self, split: str) -> StreamWindows:
        return self.windows(split)

    def _loader(self, split: str) -> StreamLoader:
        # Windows are already batched (streams x bptt); the loader's state lets a run resume mid-epoch.
        return StreamLoader(self.windows(split), num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
