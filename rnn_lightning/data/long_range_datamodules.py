"""Recall, adding and copy tasks as DataModules: generated from a seed, no download, served like real corpora.

Each task is a :class:`TextClassificationDataModule` (recall, adding: one label per sequence) or a
:class:`TaggingDataModule` (copy: one target per step) over an in-memory corpus, so ``SequenceClassifier`` and
``SequenceTagger`` train on it unchanged, through the CLI too. Each says what a model without memory reaches
(``chance_accuracy``), and ``rnn-lightning fit`` prints it after training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from rnn_lightning.data.classification import TextClassificationDataModule
from rnn_lightning.data.long_range import adding, adding_words, check_positive, copy, copy_words, recall, recall_words
from rnn_lightning.data.tagging import TaggingDataModule

SPLITS = ("train", "validation", "test")


def word_lists(ids: np.ndarray, words: list[str]) -> pa.ListArray:
    """(N, T) symbol ids -> N lists of T words."""
    n, t = ids.shape
    offsets = pa.array(np.arange(0, n * t + 1, t, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, pa.array(words).take(pa.array(ids.ravel())))


class GeneratedCorpus:
    """Base of the generated tasks (listed before the DataModule class): builds the three splits from a seed, hands
    them to the DataModule, and reports the task's accuracy without memory (``chance_accuracy``) after training.

    Each task keeps its whole signature (for ``--help`` and the recipes) and passes its split sizes, seed and loader
    settings here with ``make(num_sequences, rng)``, the generator of one split's columns.
    """

    chance_accuracy: float

    def __init__(
        self,
        make: Callable[[int, np.random.Generator], dict[str, pa.Array]],
        *,
        labels: list[str],
        train_size: int,
        validation_size: int,
        test_size: int,
        seed: int,
        **loading: Any,
    ) -> None:
        sizes = {"train": train_size, "validation": validation_size, "test": test_size}
        check_positive(**{f"{split}_size": size for split, size in sizes.items()})
        dataset = DatasetDict({split: Dataset.from_dict(make(size, np.random.default_rng([seed, SPLITS.index(split)])))
                               for split, size in sizes.items()})  # each split from its own stream of `seed`
        super().__init__(dataset=dataset, labels=labels, **loading)

    def fit_report(self) -> list[str]:
        return [f"accuracy without memory on this task: {self.chance_accuracy:.4f}"]


class RecallDataModule(GeneratedCorpus, TextClassificationDataModule):
    """Recall at a distance: a key token, then ``distance`` random distractors; the label is the key's class.

    Sequences read ``k3 d17 d5 ... d9`` (label ``"3"``). A classifier must carry the key through ``distance`` steps
    to its final state: train a unidirectional ``SequenceClassifier`` with ``pooling="final"`` (a backward direction
    would read the key last). Chance accuracy is ``1 / num_classes``.

    A classification rather than a language-model target: the label sits where the classifier decides, every
    sequence is scored once, and the accuracy reads directly against chance.

    Args:
        distance: steps between the key and the last step.
        num_classes: number of keys (one per class).
        num_distractors: number of distractor symbols.
        train_size: training sequences.
        validation_size: validation sequences.
        test_size: test sequences.
        seed: seed of the data (each split has its own stream).
        batch_size: sequences per training batch per device.
        eval_batch_size: sequences per evaluation batch per device.
        num_workers: DataLoader workers.

    Example:
        >>> dm = RecallDataModule(distance=5, num_classes=4, train_size=200, validation_size=20, test_size=20)
        >>> dm.num_labels, dm.chance_accuracy
        (4, 0.25)
        >>> dm.setup("fit")
        >>> tuple(next(iter(dm.val_dataloader()))["tokens"].shape)
        (20, 6)
    """

    def __init__(
        self,
        distance: int = 50,
        *,
        num_classes: int = 8,
        num_distractors: int = 32,
        train_size: int = 10_000,
        validation_size: int = 1_000,
        test_size: int = 1_000,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        check_positive(distance=distance, num_classes=num_classes, num_distractors=num_distractors)
        words = recall_words(num_classes, num_distractors)

        def make(n: int, rng: np.random.Generator) -> dict[str, pa.Array]:
            tokens, labels = recall(n, distance=distance, num_classes=num_classes, num_distractors=num_distractors,
                                    rng=rng)
            return {"sentence": pc.binary_join(word_lists(tokens, words), " "), "label": labels.astype(str)}

        super().__init__(make, labels=[str(c) for c in range(num_classes)],
                         train_size=train_size, validation_size=validation_size, test_size=test_size, seed=seed,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.distance = distance

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_labels


class AddingDataModule(GeneratedCorpus, TextClassificationDataModule):
    """The adding problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016) as a classification of the sum.

    ``length`` values, two of them marked (one in each half); the target is the sum of the marked values. Values are
    quantised to ``levels`` whole numbers (``v3`` unmarked, ``m3`` marked), so the sum is exact and one of
    ``2 * levels - 1`` classes: the tasks here train with cross-entropy, not regression. Chance accuracy (always
    answering the most likely sum, ``levels - 1``) is ``1 / levels``. Train a unidirectional ``SequenceClassifier``
    with ``pooling="final"``.

    Args:
        length: steps per sequence (the first marked value is at least ``length - length // 2`` steps from the end).
        levels: number of values (``0 .. levels - 1``).
        train_size: training sequences.
        validation_size: validation sequences.
        test_size: test sequences.
        seed: seed of the data (each split has its own stream).
        batch_size: sequences per training batch per device.
        eval_batch_size: sequences per evaluation batch per device.
        num_workers: DataLoader workers.

    Example:
        >>> dm = AddingDataModule(length=10, levels=3, train_size=200, validation_size=20, test_size=20)
        >>> dm.labels
        ['0', '1', '2', '3', '4']
    """

    def __init__(
        self,
        length: int = 50,
        *,
        levels: int = 10,
        train_size: int = 10_000,
        validation_size: int = 1_000,
        test_size: int = 1_000,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        check_positive(length=length, levels=levels)
        words = adding_words(levels)

        def make(n: int, rng: np.random.Generator) -> dict[str, pa.Array]:
            tokens, sums = adding(n, length=length, levels=levels, rng=rng)
            return {"sentence": pc.binary_join(word_lists(tokens, words), " "), "label": sums.astype(str)}

        super().__init__(make, labels=[str(s) for s in range(2 * levels - 1)],
                         train_size=train_size, validation_size=validation_size, test_size=test_size, seed=seed,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.length, self.levels = length, levels

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.levels


class CopyDataModule(GeneratedCorpus, TaggingDataModule):
    """The copy task (Arjovsky et al. 2016) as tagging: read symbols, wait ``delay`` steps, then write them again.

    Inputs ``s3 s1 ... _ _ : _ _``, tags ``_ _ ... _ s3 s1 ...`` (``_`` blank, ``:`` the delimiter that asks for the
    copy). Every step is scored, as in the paper; a model without memory outputs blanks and guesses the symbols,
    reaching ``chance_accuracy`` = (delay + L + L / num_symbols) / (delay + 2L). Train a unidirectional
    ``SequenceTagger`` (a backward direction sees only blanks after the delimiter, so it cannot help).

    Args:
        delay: the paper's T: each symbol is to be written ``delay + copy_length`` steps after it was read.
        copy_length: symbols to copy (L).
        num_symbols: size of the alphabet of symbols.
        train_size: training sequences.
        validation_size: validation sequences.
        test_size: test sequences.
        seed: seed of the data (each split has its own stream).
        batch_size: sequences per training batch per device.
        eval_batch_size: sequences per evaluation batch per device.
        num_workers: DataLoader workers.

    Example:
        >>> dm = CopyDataModule(delay=5, copy_length=3, num_symbols=4, train_size=100, validation_size=10,
        ...                     test_size=10)
        >>> dm.labels
        ['_', 's1', 's2', 's3', 's4']
        >>> round(dm.chance_accuracy, 4)
        0.7955
    """

    def __init__(
        self,
        delay: int = 50,
        *,
        copy_length: int = 10,
        num_symbols: int = 8,
        train_size: int = 10_000,
        validation_size: int = 1_000,
        test_size: int = 1_000,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        check_positive(delay=delay, copy_length=copy_length, num_symbols=num_symbols)
        words = copy_words(num_symbols)

        def make(n: int, rng: np.random.Generator) -> dict[str, pa.Array]:
            inputs, targets = copy(n, delay=delay, copy_length=copy_length, num_symbols=num_symbols, rng=rng)
            return {"tokens": word_lists(inputs, words), "tags": word_lists(targets, words)}

        super().__init__(make, labels=words[:-1],  # the delimiter is no target
                         train_size=train_size, validation_size=validation_size, test_size=test_size, seed=seed,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.delay, self.copy_length, self.num_symbols = delay, copy_length, num_symbols

    @property
    def chance_accuracy(self) -> float:
        steps = self.delay + 2 * self.copy_length
        return (self.delay + self.copy_length + self.copy_length / self.num_symbols) / steps
