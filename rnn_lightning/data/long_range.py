"""Generated long-range dependency tasks: recall, the adding problem and the copy task (pure numpy, seeded).

Each generator returns token ids and targets as arrays; the symbols' names (:data:`RECALL_WORDS` and friends) turn
them into the whitespace words the DataModules of :mod:`rnn_lightning.data.long_range_datamodules` serve. A model
solves a task only if it carries information across a known number of steps, which makes the vanishing gradient of
a simple RNN measurable (Hochreiter & Schmidhuber 1997, Arjovsky et al. 2016).
"""

from __future__ import annotations

import numpy as np


def check_positive(**values: object) -> None:
    """Refuse any value that is not a positive integer, naming its argument."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def recall_words(num_classes: int, num_distractors: int) -> list[str]:
    """Symbol names of :func:`recall`: keys ``k0..`` (id = class), then distractors ``d0..``."""
    return [f"k{c}" for c in range(num_classes)] + [f"d{j}" for j in range(num_distractors)]


def recall(
    num_sequences: int, *, distance: int, num_classes: int, num_distractors: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A key, then ``distance`` random distractors; the label is the key's class.

    The key is read ``distance`` steps before the last one, where a classifier with ``pooling="final"`` decides.

    Returns:
        tokens (N, distance + 1): key ids in ``[0, num_classes)`` at column 0, distractor ids in
        ``[num_classes, num_classes + num_distractors)`` after it; labels (N,) = the key ids.
    """
    check_positive(num_sequences=num_sequences, distance=distance, num_classes=num_classes,
                   num_distractors=num_distractors)
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be at least 2 (one class is no task), got {num_classes}.")
    keys = rng.integers(num_classes, size=num_sequences)  # (N,)
    distractors = num_classes + rng.integers(num_distractors, size=(num_sequences, distance))  # (N, distance)
    return np.concatenate([keys[:, None], distractors], axis=1), keys


def adding_words(levels: int) -> list[str]:
    """Symbol names of :func:`adding`: unmarked values ``v0..``, then marked values ``m0..`` (id = levels + value)."""
    return [f"v{v}" for v in range(levels)] + [f"m{v}" for v in range(levels)]


def adding(
    num_sequences: int, *, length: int, levels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem with values quantised to ``levels`` steps: the target is the sum of the two marked values.

    As in Arjovsky et al. 2016, one value is marked in the first half of the sequence and one in the second half.
    Values are whole numbers ``0..levels-1`` (value ``v`` stands for ``v / (levels - 1)`` of the original problem), so
    the sum is one of ``2 * levels - 1`` classes and the task is a classification; no rounding is involved.

    Returns:
        tokens (N, length): ``value`` for an unmarked step, ``levels + value`` for a marked one; targets (N,) in
        ``[0, 2 * levels - 1)``.
    """
    check_positive(num_sequences=num_sequences, length=length, levels=levels)
    if length < 2 or levels < 2:
        raise ValueError(f"`length` and `levels` must be at least 2 (two marked steps, two values), got "
                         f"length={length}, levels={levels}.")
    values = rng.integers(levels, size=(num_sequences, length))  # (N, length)
    half = length // 2
    first = rng.integers(half, size=num_sequences)  # (N,) in the first half
    second = rng.integers(half, length, size=num_sequences)  # (N,) in the second half
    rows = np.arange(num_sequences)
    targets = values[rows, first] + values[rows, second]
    tokens = values.copy()
    tokens[rows, first] += levels
    tokens[rows, second] += levels
    return tokens, targets


def copy_words(num_symbols: int) -> list[str]:
    """Symbol names of :func:`copy`: blank ``_`` (id 0), symbols ``s1..`` (ids 1..num_symbols), delimiter ``:``."""
    return ["_"] + [f"s{i}" for i in range(1, num_symbols + 1)] + [":"]


def copy(
    num_sequences: int, *, delay: int, copy_length: int, num_symbols: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The copy task of Arjovsky et al. 2016: ``copy_length`` symbols, blanks, a delimiter, then reproduce them.

    With L = ``copy_length`` and T = ``delay`` (the paper's T): inputs are L symbols, T - 1 blanks, the delimiter,
    L blanks; targets are T + L blanks, then the L symbols. Each symbol is to be output exactly T + L steps after it
    was read.

    Returns:
        inputs (N, T + 2L) and targets (N, T + 2L), ids as in :func:`copy_words`.
    """
    check_positive(num_sequences=num_sequences, delay=delay, copy_length=copy_length, num_symbols=num_symbols)
    symbols = 1 + rng.integers(num_symbols, size=(num_sequences, copy_length))  # (N, L)
    width = delay + 2 * copy_length
    inputs = np.zeros((num_sequences, width), dtype=np.int64)  # (N, T + 2L) blanks
    targets = np.zeros_like(inputs)
    inputs[:, :copy_length] = symbols
    inputs[:, copy_length + delay - 1] = num_symbols + 1  # the delimiter
    targets[:, delay + copy_length :] = symbols
    return inputs, targets
