"""LightningDataModule for language modeling over HF ``datasets``: load -> tokenize (cached) -> streams."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import pyarrow as pa
import torch
from datasets import Dataset, DatasetDict, load_dataset
from tokenizers import Tokenizer

from rnn_lightning.data.corpus import files_note, load_corpus
from rnn_lightning.data.streams import StreamLoader, StreamWindows, split_streams
from rnn_lightning.data.tokenization import (
    BOS,
    PAD,
    encode_lines,
    is_whitespace_word_level,
    load_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
    vocabulary_by_id,
)

_ENCODER_VERSION = "lines-bos-eos-v2"  # bump when `encode_lines` changes output, to invalidate caches


def _encode_batch(
    batch: pa.Table, tokenizer: Tokenizer, text_column: str, by_id: Callable[[], pa.Array | None]
) -> pa.Table:
    """``datasets.map`` function: one row per line, ``input_ids`` = ``<bos> ids... <eos>``.

    ``by_id`` is called only when the map runs (a cache hit needs no vocabulary array).
    """
    return pa.table({"input_ids": encode_lines(tokenizer, batch.column(text_column), by_id())})


class LanguageModelingDataModule(L.LightningDataModule):
    """Text corpus -> contiguous token streams cut into ``bptt`` windows, for truncated BPTT.

    The corpus comes from the HF hub (``path="wikitext", name="wikitext-2-v1"``), from local files through a
    ``datasets`` builder (``path="text", data_files={"train": "train.txt", ...}``; also ``csv``, ``json``,
    ``parquet``), or from an in-memory ``DatasetDict`` (``dataset=...``). Each line is encoded as
    ``<bos> tokens <eos>``; the split is concatenated and cut into ``batch_size`` streams per device.

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
        cache_dir: ``datasets`` cache folder.
        holdout: splits to carve off the end of train, in order, as fractions of its rows, for a corpus that
            lacks them, e.g. ``{"validation": 0.05, "test": 0.05}``.

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
        data_files: dict[str, str | list[str]] | str | None = None,
        dataset: Any = None,
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["dataset"])
        if (path is None) == (dataset is None):
            raise ValueError(
                "give exactly one corpus: `path` (a hub name such as 'wikitext', or a builder such as 'text' "
                f"with `data_files`) or `dataset` (a DatasetDict); got path={path!r}, dataset={type(dataset)}."
            )
        if dataset is not None and not isinstance(dataset, DatasetDict):
            raise TypeError(f"`dataset` must be a datasets.DatasetDict, got {type(dataset).__name__}.")
        for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("bptt", bptt)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer, got {value!r}.")
        self.path, self.name, self.data_files, self.cache_dir = path, name, data_files, cache_dir
        self.text_column, self.tokenizer_spec = text_column, tokenizer
        self.min_frequency, self.max_vocab_size = min_frequency, max_vocab_size
        self.batch_size, self.eval_batch_size, self.bptt = batch_size, eval_batch_size, bptt
        self.num_workers, self.holdout = num_workers, holdout
        self._raw: DatasetDict | None = dataset
        self._tokenizer: Tokenizer | None = None
        self._streams: dict[str, StreamWindows] = {}
        self._vocab_by_id: pa.Array | None = None

    # -- corpus and tokenizer (lazy: LightningCLI reads `vocab_size` right after __init__) --
    @property
    def raw(self) -> DatasetDict:
        """The corpus as loaded, before tokenization."""
        if self._raw is None:
            self._raw = load_corpus(
                lambda: load_dataset(self.path, self.name, data_files=self.data_files, cache_dir=self.cache_dir),
                self.data_files,
                self.holdout,
            )
        return self._raw

    def _split(self, split: str) -> Dataset:
        if split not in self.raw:
            raise ValueError(
                f"the corpus has no {split!r} split (it has {sorted(self.raw)}). Name the files per split, "
                f"e.g. data_files={{'train': ..., 'validation': ..., 'test': ...}}."
            )
        data = self.raw[split]
        if len(data) == 0:
            raise ValueError(
                f"the {split!r} split is empty (0 rows){files_note(self.data_files, split)}. Give it a non-empty "
                "file, or carve it off train with `holdout`."
            )
        if self.text_column not in data.column_names:
            raise ValueError(
                f"`text_column` {self.text_column!r} is not a column of the {split!r} split; its columns "
                f"are {data.column_names}. Set `text_column` to the one holding the text."
            )
        return data

    @property
    def tokenizer(self) -> Tokenizer:
        """The HF tokenizer: built from the train split on first use (cached beside it), or loaded from a file."""
        if self._tokenizer is None:
            kind = self.tokenizer_spec
            if kind not in ("word", "char"):
                self._tokenizer = load_tokenizer(kind)
                return self._tokenizer
            train = self._split("train")
            cached = self._tokenizer_cache(train)
            if cached is not None and cached.exists():
                self._tokenizer = Tokenizer.from_file(str(cached))
                return self._tokenizer
            texts = train.data.column(self.text_column)
            if kind == "word":
                self._tokenizer = train_word_tokenizer(texts, self.min_frequency, self.max_vocab_size)
            else:
                self._tokenizer = train_char_tokenizer(texts)
            if cached is not None:
                tmp = cached.with_suffix(f".{os.getpid()}.tmp")
                self._tokenizer.save(str(tmp))
                os.replace(tmp, cached)  # atomic: concurrent ranks never read a half-written file
        return self._tokenizer

    def _tokenizer_cache(self, train: Dataset) -> Path | None:
        """Where a tokenizer trained on ``train`` with these settings is kept (beside its datasets cache)."""
        if not train.cache_files:  # an in-memory dataset: nothing to cache beside
            return None
        key = (f"{train._fingerprint}|{self.tokenizer_spec}|{self.min_frequency}|{self.max_vocab_size}|"
               f"{self.text_column}|{_ENCODER_VERSION}")
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return Path(train.cache_files[0]["filename"]).parent / f"rnn_lightning-tokenizer-{digest}.json"

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return self.tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return self.tokenizer.token_to_id(PAD)

    # -- tokenization (cached by datasets) and streams --
    def token_ids(self, split: str) -> torch.Tensor:
        """All ids of ``split`` concatenated, (M,): every line as ``<bos> ids <eos>``."""
        data = self._split(split)
        digest = hashlib.sha256(
            f"{data._fingerprint}|{self.tokenizer.to_str()}|{self.text_column}|{_ENCODER_VERSION}".encode()
        ).hexdigest()[:32]
        encoded = data.with_format("arrow").map(
            _encode_batch,
            batched=True,
            batch_size=100_000,
            fn_kwargs={"tokenizer": self.tokenizer, "text_column": self.text_column, "by_id": self._by_id},
            remove_columns=data.column_names,
            new_fingerprint=digest,
            desc=f"Tokenizing {split}",
        )
        flat = encoded.data.column("input_ids").combine_chunks().flatten().to_numpy()
        return torch.from_numpy(flat.astype("int64"))

    def _by_id(self) -> pa.Array | None:
        """The vocabulary array of the fast word-level encoder: built once, not once per split."""
        if self._vocab_by_id is None and is_whitespace_word_level(self.tokenizer):
            self._vocab_by_id = vocabulary_by_id(self.tokenizer)
        return self._vocab_by_id

    def __str__(self) -> str:
        # Lightning's default builds every dataloader (for a summary); jsonargparse calls str() when it skips a
        # link the class lacks, before any trainer is attached. Keep it cheap and free of side effects.
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r}, data_files={self.data_files!r})"

    def _windows(self, split: str) -> StreamWindows:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if split not in self._streams or (self._streams[split].rank, self._streams[split].world_size) != (rank, world):
            per_device = self.batch_size if split == "train" else self.eval_batch_size
            ids = self.token_ids(split)
            needed = per_device * world * (self.bptt + 1) if split == "train" else per_device * world + 1
            if ids.numel() < needed:
                what = "batch_size * devices * (bptt + 1)" if split == "train" else "eval_batch_size * devices + 1"
                raise ValueError(
                    f"the {split!r} split has {ids.numel()} tokens (with <bos>/<eos>), fewer than {what} = "
                    f"{needed} (batch_size={self.batch_size}, eval_batch_size={self.eval_batch_size}, "
                    f"bptt={self.bptt}, devices={world}). Lower the batch size or bptt, or use more text."
                )
            inputs, targets = split_streams(
                ids,
                per_device * world,
                pad_id=self.pad_id,
                drop_remainder=split == "train",
                ignore_ids=(self.tokenizer.token_to_id(BOS),),
            )
            self._streams[split] = StreamWindows(inputs, targets, self.bptt, rank, world)
        return self._streams[split]

    def prepare_data(self) -> None:
        self.raw  # noqa: B018  (downloads a hub dataset once, on rank zero)

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",),
                  "predict": ("test",)}[stage]
        for split in needed:
            self._windows(split)

    def _loader(self, split: str) -> StreamLoader:
        # Windows are already batched (streams x bptt); the loader's state lets a run resume mid-epoch.
        return StreamLoader(self._windows(split), self.num_workers, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> StreamLoader:
        return self._loader("train")

    def val_dataloader(self) -> StreamLoader:
        return self._loader("validation")

    def test_dataloader(self) -> StreamLoader:
        return self._loader("test")

    def predict_dataloader(self) -> StreamLoader:
        return self._loader("test")
