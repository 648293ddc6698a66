"""Character ids of words, for character features (:class:`rnn_lightning.nn.CharacterEncoder`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnn_lightning.data.tokenization import PAD, UNK

MAX_WORD_LENGTH = 20  # longer words keep their first and last 10 characters (prefix and suffix carry the cues)


def build_char_vocab(words: Sequence[str]) -> list[str]:
    """``<pad>``, ``<unk>``, then every character of ``words`` in sorted order: id = position.

    Example:
        >>> build_char_vocab(["ab", "ba", "c"])
        ['<pad>', '<unk>', 'a', 'b', 'c']
    """
    return [PAD, UNK, *sorted(set("".join(words)))]


def encode_chars(words: Sequence[str], char_vocab: Sequence[str]) -> np.ndarray:
    """(N,) words -> (N, L) int32 character ids, right-padded with 0 (``<pad>``); unknown characters -> 1.

    L is the longest (capped) word. Words longer than ``MAX_WORD_LENGTH`` keep their first and last
    ``MAX_WORD_LENGTH // 2`` characters.

    Example:
        >>> encode_chars(["ab", "c", "x"], ["<pad>", "<unk>", "a", "b", "c"]).tolist()
        [[2, 3], [4, 0], [1, 0]]
    """
    index = {c: i for i, c in enumerate(char_vocab)}
    unique, which = np.unique(np.asarray(words, dtype=object), return_inverse=True)
    half = MAX_WORD_LENGTH // 2
    capped = [w if len(w) <= MAX_WORD_LENGTH else w[:half] + w[-half:] for w in unique]
    table = np.zeros((len(capped), max(map(len, capped), default=1)), dtype=np.int32)  # (U, L)
    for row, word in enumerate(capped):
        table[row, : len(word)] = [index.get(c, 1) for c in word]
    return table[which.reshape(-1)]
