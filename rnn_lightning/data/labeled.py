"""Shared machinery of the tagging and classification DataModules: vocabularies, label ids, padded-batch loaders.

A subclass says where the words and the labels of a split are (:meth:`_words`, :meth:`_label_values`); this
class builds the word vocabulary and the label list from ``train``, checks every split against them, and serves
padded batches ``{"tokens", "lengths", "tags" | "label"}`` (and ``"chars"`` with character features, ``"words"``
with ``serve_words``).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import ClassLabel, Dataset
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from rnn_lightning.data.base import CorpusDataModule, arrow_column
from rnn_lightning.data.batching import HOST_KEYS, RaggedSequences, pad_batch
from rnn_lightning.data.characters import build_char_vocab, encode_chars
from rnn_lightning.data.resumable import ResumableLoader, ResumableSampler
from rnn_lightning.data.tokenization import (
    UNK,
    encode_words,
    extend_word_tokenizer,
    load_tokenizer,
    train_word_tokenizer,
)
from rnn_lightning.nn.checks import check_flag
from rnn_lightning.nn.pretrained import with_vectors


def nest_like(lists: pa.ListArray, values: pa.Array) -> pa.ListArray:
    """Flat per-item ``values`` cut into rows of the same lengths as ``lists``."""
    offsets = lists.offsets
    return pa.ListArray.from_arrays(pc.subtract(offsets, offsets[0]), values)


LABEL_KINDS = {"whole numbers": r"^[+-]?\d+$", "fractional numbers": r"^[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?$"}


def check_label_kinds(values: pa.Array, where: str) -> None:
    """Refuse labels that mix integer ids, fractional numbers and names (``1`` and ``positive`` in one column would
    be two different classes of one meaning): one kind per column."""
    unique = pc.unique(values)
    kinds, rest = {}, pa.array([True] * len(unique))
    for kind, pattern in LABEL_KINDS.items():
        found = pc.match_substring_regex(unique, pattern)
        kinds[kind], rest = unique.filter(found).to_pylist(), pc.and_(rest, pc.invert(found))
    kinds["names"] = unique.filter(rest).to_pylist()
    present = {kind: sorted(labels)[:3] for kind, labels in kinds.items() if labels}
    if len(present) > 1:
        listed = " and ".join(f"{kind} {labels}" for kind, labels in present.items())
        raise ValueError(
            f"{where} mixes {listed}: one label column holds one kind of label, and a mix (e.g. '1' and 'positive') "
            "becomes separate classes. Write every label the same way (e.g. map 0/1 to 'negative'/'positive'), or "
            "fix the rows that differ."
        )


class LabeledSequenceDataModule(CorpusDataModule):
    """Base of :class:`TaggingDataModule` and :class:`TextClassificationDataModule` (see their docs)."""

    per_token = True  # labels per token (tagging) or per sequence (classification)
    column_args = {"text_column": "text_column", "label_column": "label_column"}

    def __init__(
        self,
        path: str | None,
        name: str | None,
        *,
        label_column: str,
        labels: list[str] | None,
        max_length: int | None,
        vocab_from_vectors: str | None,
        char_features: bool = False,
        serve_words: bool = False,
        **corpus: Any,
    ) -> None:
        super().__init__(path, name, **corpus)
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"`max_length` must be a positive integer or None (no cut), got {max_length!r}.")
        if vocab_from_vectors is not None and self.tokenizer_spec != "word":
            raise ValueError(
                "`vocab_from_vectors` extends the vocabulary built from train, but "
                f"`tokenizer={self.tokenizer_spec!r}` fixes the vocabulary. Use tokenizer='word', or drop "
                "`vocab_from_vectors`."
            )
        if labels is not None and len(set(labels)) != len(labels):
            raise ValueError(f"`labels` must not repeat a label, got {labels}.")
        self.label_column, self.max_length = label_column, max_length
        check_flag("serve_words", serve_words)
        self.char_features, self.vocab_from_vectors, self.serve_words = char_features, vocab_from_vectors, serve_words
        self._char_vocab: list[str] | None = None
        self._label_cache: dict[str, pa.Array] = {}
        self._labels: list[str] | None = list(labels) if labels is not None else None
        self._sequences: dict[str, RaggedSequences] = {}

    def _split_labels(self, split: str) -> pa.Array:
        """:meth:`_label_values` of ``split``, computed once (the label set and the encoding both need train's)."""
        if split not in self._label_cache:
            self._label_cache[split] = self._label_values(self._split(split), split)
        return self._label_cache[split]

    # -- what a subclass provides --
    def _words(self, data: Dataset) -> pa.ListArray:
        """Each row's words, one list per sequence."""
        raise NotImplementedError

    def _label_values(self, data: Dataset, split: str) -> pa.Array:
        """All label strings of ``split``: one per token (tagging) or per row (classification)."""
        values = arrow_column(data, self.label_column)
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        feature = data.features[self.label_column]
        if self.per_token:
            values, feature = pc.list_flatten(values), getattr(feature, "feature", feature)
        if isinstance(feature, ClassLabel):  # hub datasets store ids with the names in the schema
            if len(values) and pc.min(values).as_py() < 0:
                raise ValueError(
                    f"the {split!r} split has no labels (`{self.label_column}` holds -1, as GLUE's hidden test "
                    "sets do). Evaluate on a labelled split instead."
                )
            return pa.array(feature.names, pa.string()).take(values)
        if values.null_count:
            raise ValueError(f"`{self.label_column}` of the {split!r} split has {values.null_count} missing labels.")
        values = pc.cast(values, pa.string())  # a float column's whole numbers read as integers ("1", not "1.0")
        check_label_kinds(values, f"`{self.label_column}` of the {split!r} split")
        return values

    # -- vocabularies (lazy: the CLI reads vocab_size / labels right after __init__) --
    @property
    def tokenizer(self) -> Tokenizer:
        """Word-level tokenizer: vocabulary from the train split, or loaded from a ``tokenizer.json``."""
        if self._tokenizer is None:
            if self.tokenizer_spec != "word":
                self._tokenizer = load_tokenizer(self.tokenizer_spec)
            else:
                words = pc.list_flatten(self._words(self._split("train")))
                self._tokenizer = train_word_tokenizer(words, self.min_frequency, self.max_vocab_size, True)
                if self.vocab_from_vectors is not None:
                    self._tokenizer = extend_word_tokenizer(self._tokenizer, self._evaluation_words_with_vectors())
        return self._tokenizer

    def _evaluation_words_with_vectors(self) -> list[str]:
        """Validation and test words outside the train vocabulary that ``vocab_from_vectors`` lists (sorted)."""
        known = self._tokenizer.get_vocab()
        words = sorted({word for split in ("validation", "test") if split in self.raw
                        for word in pc.unique(pc.list_flatten(self._words(self._split(split)))).to_pylist()
                        if word not in known})
        return with_vectors(words, self.vocab_from_vectors, "vocab_from_vectors")

    @property
    def labels(self) -> list[str]:
        """Label names; a label's id is its position. Given, from the dataset's ClassLabel, or sorted from train."""
        if self._labels is None:
            data = self._split("train")
            feature = data.features[self.label_column]
            feature = getattr(feature, "feature", feature) if self.per_token else feature
            if isinstance(feature, ClassLabel):
                self._labels = list(feature.names)
            else:
                self._labels = sorted(pc.unique(self._split_labels("train")).to_pylist())
        return self._labels

    @property
    def char_vocab(self) -> list[str] | None:
        """With ``char_features``: the characters of the train words after ``<pad>``, ``<unk>`` (id = position)."""
        if self.char_features and self._char_vocab is None:
            words = pc.unique(pc.list_flatten(self._words(self._split("train"))))
            self._char_vocab = build_char_vocab(words.to_pylist())
        return self._char_vocab

    @property
    def unk_id(self) -> int:
        return self.tokenizer.token_to_id(UNK)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    # -- encoded splits --
    def _check_labels(self, values: pa.Array, split: str) -> np.ndarray:
        ids = pc.index_in(values, value_set=pa.array(self.labels, pa.string()))
        if ids.null_count:
            unseen = pc.value_counts(values.filter(pc.is_null(ids))).to_pylist()
            listed = ", ".join(f"{u['values']!r} ({u['counts']}x)" for u in unseen[:10])
            raise ValueError(
                f"the {split!r} split has labels that are not in the label set {self.labels}: {listed}. The label set "
                "comes from the train split (or `labels`); a label train never saw cannot be learned. Pass "
                "`labels=[...]` listing every label, or fix the data."
            )
        return ids.to_numpy().astype(np.int64)

    def sequences(self, split: str) -> RaggedSequences:
        """The split encoded: token ids and label ids, as :class:`RaggedSequences`."""
        if split not in self._sequences:
            data = self._split(split)
            words = self._words(data)
            lengths = pc.list_value_length(words).to_numpy(zero_copy_only=False)
            if (lengths == 0).any():
                row = int(np.flatnonzero(lengths == 0)[0])
                raise ValueError(
                    f"row {row} of the {split!r} split has no tokens ({int((lengths == 0).sum())} such rows): an "
                    f"empty sequence has nothing to encode. Remove empty rows from `{self.text_column}`."
                )
            label_ids = self._check_labels(self._split_labels(split), split)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = pc.list_flatten(words)  # (N,) every token of the split
            ids = encode_words(self.tokenizer, flat)
            chars = encode_chars(flat.to_pylist(), self.char_vocab) if self.char_features else None
            tags, per_row = (label_ids, None) if self.per_token else (None, label_ids)
            max_length = self.max_length if split == "train" else None  # evaluate whole sequences
            strings = flat.to_pylist() if self.serve_words else None
            self._sequences[split] = RaggedSequences(ids, offsets, tags=tags, labels=per_row, max_length=max_length,
                                                    chars=chars, words=strings)
        return self._sequences[split]

    def _dataset(self, split: str) -> RaggedSequences:
        return self.sequences(split)

    def _loader(self, split: str) -> DataLoader:
        data = self.sequences(split)
        rank, world = self._rank_world()
        common = dict(collate_fn=partial(pad_batch, pad_id=self.pad_id), num_workers=self.num_workers,
                      pin_memory=torch.cuda.is_available())
        if split == "train":  # shuffled by (seed, epoch), each process its share; resumes mid-epoch exactly
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            sampler = ResumableSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=seed)
            return ResumableLoader(data, sampler=sampler, batch_size=self.batch_size, **common)
        if len(data) < world:
            raise ValueError(
                f"the {split!r} split has {len(data)} sequences, fewer than the {world} processes (devices x nodes) "
                "that evaluate it: each process needs at least one. Use fewer devices or a larger split."
            )
        # Each sentence on exactly one rank (Lightning's default sampler would repeat some to even out ranks).
        sampler = UnrepeatedDistributedSampler(data, world, rank, False) if world > 1 else None
        return DataLoader(data, batch_size=self.eval_batch_size, sampler=sampler, **common)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a batch to ``device`` but keep ``lengths`` and ``char_lengths`` on the CPU, where packing reads them
        (see ``HOST_KEYS``): a training step on a GPU then never waits for the GPU."""
        host = {key: batch[key] for key in HOST_KEYS if key in batch}
        moved = super().transfer_batch_to_device(
            {key: value for key, value in batch.items() if key not in host}, device, dataloader_idx
        )
        return {**moved, **host}
