"""TaggingDataModule: sentences with one tag per token (POS, NER) from the HF hub or CoNLL / CoNLL-U files."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from rnn_lightning.data.base import arrow_column
from rnn_lightning.data.conll import load_tagging_files
from rnn_lightning.data.labeled import LabeledSequenceDataModule, nest_like
from rnn_lightning.functional.tag_schemes import check_scheme, check_tag_sequence, convert_tags

LOCAL_FORMATS = ("conll", "conllu")


class TaggingDataModule(LabeledSequenceDataModule):
    """Token-tagged sentences -> padded batches ``{"tokens", "lengths", "tags"}`` (padding tags are -100).

    Sources: a hub dataset (``path="eriktks/conll2003", tags_column="ner_tags"``), local CoNLL-2003-style files
    (``path="conll"``, tag in column ``tag_column``) or CoNLL-U files (``path="conllu"``, ``tag_field`` upos or
    xpos) via ``data_files``, or an in-memory ``DatasetDict`` with a list-of-strings ``tokens`` column and a
    list-of-labels ``tags`` column. The word vocabulary and the tag set come from the train split; a tag that
    only appears in validation or test is an error (pass ``labels`` to fix the set). With ``tag_scheme`` every
    gold sentence is checked against the scheme (a broken sequence is an error naming the sentence).

    Args:
        path: hub dataset, a ``datasets`` builder with ``data_files``, or ``"conll"`` / ``"conllu"`` for local files.
        name: dataset configuration.
        data_files: files per split, e.g. ``{"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}``.
        dataset: an in-memory ``DatasetDict`` (Python API only).
        tokens_column: column of the token lists.
        tags_column: column of the tag lists (strings, or a hub ``ClassLabel`` sequence).
        tag_field: CoNLL-U files: ``"upos"`` or ``"xpos"``.
        tag_column: CoNLL files: which whitespace-separated column holds the tag (-1: the last).
        tag_scheme: the span encoding of the data (``"IOB1"``, ``"IOB2"``, ``"IOBES"``, ``"BILOU"``), checked on
            every sentence; ``None`` for tags without spans (POS).
        train_scheme: re-encode the tags into this scheme before training (e.g. ``"IOBES"`` as Lample et al. 2016
            did); spans, and so span F1, are unchanged. ``None`` keeps ``tag_scheme``.
        labels: the full tag set, in id order (default: the ClassLabel names, or the sorted train tags).
        tokenizer: ``"word"`` (vocabulary from train) or a ``tokenizer.json`` path.
        min_frequency: words seen fewer times in train become ``<unk>``.
        max_vocab_size: keep at most this many words (special tokens included).
        batch_size: sentences per training batch per device.
        eval_batch_size: sentences per evaluation batch per device.
        max_length: cut training sentences longer than this into consecutive pieces (bounds step memory; evaluation
            always reads whole sentences).
        num_workers: DataLoader workers.
        cache_dir: ``datasets`` cache folder.
        holdout: splits to carve off the end of train, e.g. ``{"validation": 0.1}``.
        char_features: also serve each token's characters as ``"chars"`` (B, T, L), with a character vocabulary
            from the train words (``char_vocab``, linked to the model by the CLI), for a tagger with character
            features (unseen words keep their spelling cues).
        serve_words: also serve each sentence's words themselves as ``"words"`` (B lists of strings), for a tagger
            that reads their characters through language models (:class:`~rnn_lightning.SequenceTagger`'s
            ``lm_checkpoints``).
        vocab_from_vectors: a GloVe / word2vec / fastText text file: validation and test words that train lacks
            but the file lists (in their case or lower case) get vocabulary entries too, as Lample et al. 2016 did,
            so the model's ``pretrained_embeddings`` (pass the same file) reach them instead of ``<unk>``.

    Example:
        >>> from datasets import Dataset, DatasetDict
        >>> rows = Dataset.from_dict({"tokens": [["Ann", "sees", "Bob"], ["Bob", "runs"]],
        ...                           "tags": [["B-PER", "O", "B-PER"], ["B-PER", "O"]]})
        >>> dm = TaggingDataModule(dataset=DatasetDict(train=rows, validation=rows), tag_scheme="IOB2")
        >>> dm.labels, dm.vocab_size
        (['B-PER', 'O'], 8)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.val_dataloader()))
        >>> batch["tags"].tolist(), batch["lengths"].tolist()
        ([[0, 1, 0], [0, 1, -100]], [3, 2])
    """

    per_token = True
    column_args = {"text_column": "tokens_column", "label_column": "tags_column"}

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        *,
        data_files: dict[str, str | list[str]] | str | None = None,
        dataset: DatasetDict | None = None,
        tokens_column: str = "tokens",
        tags_column: str = "tags",
        tag_field: Literal["upos", "xpos"] = "upos",
        tag_column: int = -1,
        tag_scheme: Literal["IOB1", "IOB2", "IOBES", "BILOU"] | None = None,
        train_scheme: Literal["IOB1", "IOB2", "IOBES", "BILOU"] | None = None,
        labels: list[str] | None = None,
        tokenizer: str = "word",
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        max_length: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        holdout: dict[str, float] | None = None,
        char_features: bool = False,
        serve_words: bool = False,
        vocab_from_vectors: str | None = None,
    ) -> None:
        for arg, scheme in (("tag_scheme", tag_scheme), ("train_scheme", train_scheme)):
            check_scheme(arg, scheme)
        if train_scheme is not None and tag_scheme is None:
            raise ValueError(
                f"`train_scheme={train_scheme!r}` converts spans from the data's scheme, so `tag_scheme` must say "
                "what the data uses (e.g. tag_scheme='IOB1' for the original CoNLL-2003 files)."
            )
        super().__init__(
            path, name, data_files=data_files, dataset=dataset, text_column=tokens_column, label_column=tags_column,
            labels=labels, tokenizer=tokenizer, min_frequency=min_frequency, max_vocab_size=max_vocab_size,
            batch_size=batch_size, eval_batch_size=eval_batch_size, max_length=max_length, num_workers=num_workers,
            cache_dir=cache_dir, holdout=holdout, char_features=char_features, vocab_from_vectors=vocab_from_vectors,
            serve_words=serve_words,
        )
        self.tag_field, self.tag_column = tag_field, tag_column
        self.tag_scheme, self.train_scheme = tag_scheme, train_scheme

    @property
    def scheme(self) -> str | None:
        """The span scheme of the tags the model sees (``train_scheme`` if set, else ``tag_scheme``)."""
        return self.train_scheme or self.tag_scheme

    def _load(self) -> DatasetDict:
        if self.path in LOCAL_FORMATS:
            if not isinstance(self.data_files, dict):
                raise ValueError(
                    f"`path={self.path!r}` reads local files: give `data_files` per split, e.g. "
                    f"{{'train': 'train.txt', 'validation': 'dev.txt'}}, got {self.data_files!r}."
                )
            return load_tagging_files(self.data_files, self.path, self.tag_field, self.tag_column, self.cache_dir)
        return super()._load()

    def _words(self, data: Dataset) -> pa.ListArray:
        return arrow_column(data, self.text_column).combine_chunks()

    def _label_values(self, data: Dataset, split: str) -> pa.Array:
        """One tag per token, checked against ``tag_scheme`` and re-encoded in ``train_scheme`` if asked."""
        words = self._words(data)
        self._check_counts(data, words, split)
        values = super()._label_values(data, split)  # (N,) strings, one per token
        if self.tag_scheme is None:
            return values
        sentences = nest_like(words, values).to_pylist()
        for row, tags in enumerate(sentences):
            check_tag_sequence(tags, self.tag_scheme, where=f"{split} sentence {row}")
        if self.train_scheme in (None, self.tag_scheme):
            return values
        converted = (convert_tags(tags, self.tag_scheme, self.train_scheme) for tags in sentences)
        return pa.array([tag for tags in converted for tag in tags], pa.string())

    @property
    def labels(self) -> list[str]:
        if self._labels is None and self.train_scheme not in (None, self.tag_scheme):
            self._labels = sorted(pc.unique(self._split_labels("train")).to_pylist())
        return super().labels

    def _check_counts(self, data: Dataset, words: pa.ListArray, split: str) -> None:
        """Every sentence has exactly one tag per token."""
        tag_lists = arrow_column(data, self.label_column).combine_chunks()
        mismatch = pc.not_equal(pc.list_value_length(words), pc.list_value_length(tag_lists))
        if pc.any(mismatch).as_py():
            row = pc.index(mismatch, True).as_py()
            raise ValueError(
                f"{split} sentence {row} has {len(words[row])} tokens in `{self.text_column}` but "
                f"{len(tag_lists[row])} tags in `{self.label_column}`: each token needs exactly one tag."
            )
