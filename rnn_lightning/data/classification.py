"""TextClassificationDataModule: one label per text (sentiment, topic) from the HF hub or local files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from rnn_lightning.data.base import arrow_column
from rnn_lightning.data.labeled import LabeledSequenceDataModule
from rnn_lightning.data.tokenization import _split_words


class TextClassificationDataModule(LabeledSequenceDataModule):
    """Labelled texts -> padded batches ``{"tokens", "lengths", "label"}``.

    Texts are split on whitespace (pre-tokenized corpora such as SST-2); the vocabulary and the label set come
    from the train split, and a label only seen in validation or test is an error (pass ``labels`` to fix the set).

    Args:
        path: hub dataset (``"stanfordnlp/sst2"``) or a ``datasets`` builder (``"csv"`` with ``data_files``).
        name: dataset configuration.
        data_files: files per split.
        dataset: an in-memory ``DatasetDict`` (Python API only).
        text_column: column of the texts.
        label_column: column of the labels (strings, integers, or a hub ``ClassLabel``).
        labels: the full label set as strings, in id order (default: ClassLabel names or the sorted train labels).
        tokenizer: ``"word"`` (vocabulary from train) or a ``tokenizer.json`` path.
        min_frequency: words seen fewer times in train become ``<unk>``.
        max_vocab_size: keep at most this many words (special tokens included).
        batch_size: texts per training batch per device.
        eval_batch_size: texts per evaluation batch per device.
        max_length: cut training texts longer than this into pieces that each keep the label.
        num_workers: DataLoader workers.
        cache_dir: ``datasets`` cache folder.
        holdout: splits to carve off the end of train, e.g. ``{"validation": 0.05}``.
        csv_delimiter: field separator for the ``csv`` builder (``"\\t"`` for GLUE's .tsv files).
        vocab_from_vectors: a GloVe / word2vec / fastText text file: validation and test words that train lacks
            but the file lists (in their case or lower case) get vocabulary entries too, as Lample et al. 2016 did,
            so the model's ``pretrained_embeddings`` (pass the same file) reach them instead of ``<unk>``.
        serve_words: also serve each text's words themselves as ``"words"`` (B lists of strings), for a classifier
            that reads their characters through language models (:class:`~rnn_lightning.SequenceClassifier`'s
            ``lm_checkpoints``).

    Example:
        >>> from datasets import Dataset, DatasetDict
        >>> rows = Dataset.from_dict({"sentence": ["a fine film", "dull"], "label": [1, 0]})
        >>> dm = TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows))
        >>> dm.labels, dm.num_labels
        (['0', '1'], 2)
        >>> dm.setup("validate")
        >>> next(iter(dm.val_dataloader()))["label"].tolist()
        [1, 0]
    """

    per_token = False

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        *,
        data_files: dict[str, str | list[str]] | str | None = None,
        dataset: DatasetDict | None = None,
        text_column: str = "sentence",
        label_column: str = "label",
        labels: list[str] | None = None,
        tokenizer: str = "word",
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_length: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        holdout: dict[str, float] | None = None,
        csv_delimiter: str | None = None,
        vocab_from_vectors: str | None = None,
        serve_words: bool = False,
    ) -> None:
        super().__init__(
            path, name, data_files=data_files, dataset=dataset, text_column=text_column, label_column=label_column,
            labels=labels, tokenizer=tokenizer, min_frequency=min_frequency, max_vocab_size=max_vocab_size,
            batch_size=batch_size, eval_batch_size=eval_batch_size, max_length=max_length, num_workers=num_workers,
            cache_dir=cache_dir, holdout=holdout, vocab_from_vectors=vocab_from_vectors, serve_words=serve_words,
        )
        self.csv_delimiter = csv_delimiter

    def _words(self, data: Dataset) -> pa.ListArray:
        texts = pc.fill_null(arrow_column(data, self.text_column), "")  # a missing text is empty (and refused later)
        words, row_of_word = _split_words(texts)  # (N,), (N,)
        offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(np.bincount(row_of_word, minlength=len(texts)), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), words)
