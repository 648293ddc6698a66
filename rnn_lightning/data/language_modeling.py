"""LightningDataModule for language modeling over HF ``datasets``: load -> tokenize (cached) -> streams."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer

from rnn_lightning.compat import dataset_fingerprint
from rnn_lightning.data.base import CorpusDataModule, arrow_column
from rnn_lightning.data.streams import StreamLoader, StreamWindows, split_streams
from rnn_lightning.data.tokenization import (
    BOS,
    encode_lines,
    is_whitespace_word_level,
    load_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
    vocabulary_by_id,
)
from rnn_lightning.nn.checks import check_direction

_ENCODER_VERSION = "lines-bos-eos-v2"  # bump when `encode_lines` changes output, to invalidate caches


def _encode_batch(
    batch: pa.Table, tokenizer: Tokenizer, text_column: str, by_id: Callable[[], pa.Array | None]
) -> pa.Table:
    """``datasets.map`` function: one row per line, ``input_ids`` = ``<bos> ids... <eos>``.

    ``by_id`` is called only when the map runs (a cache hit needs no vocabulary array).
    """
    return pa.table({"input_ids": encode_lines(tokenizer, batch.column(text_column), by_id())})


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
    ) -> None:
        super().__init__(
            path, name, data_files=data_files, dataset=dataset, text_column=text_column, tokenizer=tokenizer,
            min_frequency=min_frequency, max_vocab_size=max_vocab_size, batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, cache_dir=cache_dir, holdout=holdout,
        )
        if not isinstance(bptt, int) or bptt < 1:
            raise ValueError(f"`bptt` must be a positive integer, got {bptt!r}.")
        if not isinstance(variable_bptt, bool):
            raise ValueError(f"`variable_bptt` must be True or False, got {variable_bptt!r}.")
        check_direction(direction)
        self.bptt, self.variable_bptt, self.bptt_seed, self.direction = bptt, variable_bptt, bptt_seed, direction
        self.csv_delimiter = csv_delimiter
        self._streams: dict[str, StreamWindows] = {}
        self._vocab_by_id: pa.Array | None = None

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
            texts = arrow_column(train, self.text_column)
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
        key = (f"{dataset_fingerprint(train)}|{self.tokenizer_spec}|{self.min_frequency}|{self.max_vocab_size}|"
               f"{self.text_column}|{_ENCODER_VERSION}")
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return Path(train.cache_files[0]["filename"]).parent / f"rnn_lightning-tokenizer-{digest}.json"

    # -- tokenization (cached by datasets) and streams --
    def token_ids(self, split: str) -> torch.Tensor:
        """All ids of ``split`` concatenated, (M,): every line as ``<bos> ids <eos>`` (read backwards, lines and ids
        reversed, for ``direction="backward"``)."""
        data = self._split(split)
        digest = hashlib.sha256(
            f"{dataset_fingerprint(data)}|{self.tokenizer.to_str()}|{self.text_column}|{_ENCODER_VERSION}".encode()
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
        lines = encoded.data.column("input_ids").combine_chunks()
        flat = lines.flatten().to_numpy().astype("int64")
        if self.direction == "backward":
            offsets = lines.offsets.to_numpy()
            flat = reverse_lines(flat, offsets - offsets[0])
        return torch.from_numpy(flat)

    def _by_id(self) -> pa.Array | None:
        """The vocabulary array of the fast word-level encoder: built once, not once per split."""
        if self._vocab_by_id is None and is_whitespace_word_level(self.tokenizer):
            self._vocab_by_id = vocabulary_by_id(self.tokenizer)
        return self._vocab_by_id

    def windows(self, split: str) -> StreamWindows:
        """``split`` as this process's block of ``bptt`` windows (re-cut if the number of processes changed)."""
        rank, world = self._rank_world()
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
            variable_seed = self.bptt_seed if self.variable_bptt and split == "train" else None
            self._streams[split] = StreamWindows(inputs, targets, self.bptt, rank, world, variable_seed=variable_seed)
        return self._streams[split]

    def _dataset(self, split: str) -> StreamWindows:
        return self.windows(split)

    def _loader(self, split: str) -> StreamLoader:
        # Windows are already batched (streams x bptt); the loader's state lets a run resume mid-epoch.
        return StreamLoader(self.windows(split), self.num_workers, pin_memory=torch.cuda.is_available())
