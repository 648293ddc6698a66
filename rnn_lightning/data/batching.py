"""Variable-length sequences kept flat (ids + offsets) and padded into batches on the fly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.nn.char_encoder import word_lengths

# True in a batch that pad_batch made with every sequence non-empty: its tags are right-padded with IGNORE_INDEX by
# construction, so a consumer (the CRF's mask check) need not read them on the host, a wait for a GPU.
RIGHT_PADDED = "right_padded"
# Batch entries read on the host (cuDNN runs a packed batch by its lengths there): they stay on the CPU when a batch
# moves to a GPU, so no step copies them back, a copy that would wait for all the GPU's queued work.
# The words themselves (``"words"``, lists of strings) are read on the host too, by a model that encodes them itself.
HOST_KEYS = ("lengths", "char_lengths", RIGHT_PADDED, "words")


class RaggedSequences(Dataset):
    """Sequence ``i`` is ``ids[offsets[i]:offsets[i + 1]]``, with per-token tags or one label per sequence.

    Args:
        ids: (N,) token ids of all sequences, concatenated.
        offsets: (S + 1,) start of each sequence in ``ids``, then N.
        tags: (N,) per-token label ids (tagging) or ``None``.
        labels: (S,) per-sequence label ids (classification) or ``None``.
        max_length: cut longer sequences into consecutive pieces of at most this many tokens (bounds the memory
            of a training step; ``None`` keeps them whole).
        chars: (N, L) character ids of each token (0-padded), or ``None``.
        words: (N,) the tokens themselves (strings), or ``None``.

    Example:
        >>> seqs = RaggedSequences(np.arange(5), np.array([0, 3, 5]), tags=np.array([1, 0, 1, 1, 0]))
        >>> len(seqs), seqs[0]
        (2, {'tokens': array([0, 1, 2]), 'tags': array([1, 0, 1])})
        >>> len(RaggedSequences(np.arange(5), np.array([0, 3, 5]), max_length=2))
        3
    """

    def __init__(
        self,
        ids: np.ndarray,
        offsets: np.ndarray,
        *,
        tags: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        max_length: int | None = None,
        chars: np.ndarray | None = None,
        words: list[str] | None = None,
    ) -> None:
        starts, ends = offsets[:-1], offsets[1:]
        self.sequence_of_piece = np.arange(len(starts))
        if max_length is not None:  # split every sequence into ceil(length / max_length) pieces
            pieces = np.maximum(1, -(-(ends - starts) // max_length))
            self.sequence_of_piece = np.repeat(np.arange(len(starts)), pieces)
            first = np.repeat(np.cumsum(pieces) - pieces, pieces)
            starts = starts[self.sequence_of_piece] + (np.arange(pieces.sum()) - first) * max_length
            ends = np.minimum(starts + max_length, ends[self.sequence_of_piece])
        self.ids, self.starts, self.ends, self.tags, self.labels, self.chars = ids, starts, ends, tags, labels, chars
        self.words = words

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        span = slice(self.starts[i], self.ends[i])
        item: dict[str, Any] = {"tokens": self.ids[span]}
        if self.tags is not None:
            item["tags"] = self.tags[span]
        if self.labels is not None:
            item["label"] = self.labels[self.sequence_of_piece[i]]
        if self.chars is not None:
            item["chars"] = self.chars[span]
        if self.words is not None:
            item["words"] = self.words[span]
        return item


def pad_batch(items: list[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Right-pad a list of sequences: ``tokens`` (B, T) with ``pad_id``, ``tags`` (B, T) with -100, ``lengths`` (B,),
    and ``label`` (B,), ``chars`` (B, T, L) with 0 (L: the batch's longest word) and their ``char_lengths``
    (B, T), and ``words`` (B lists of strings, unpadded) when present; ``right_padded`` (a bool, see
    ``RIGHT_PADDED``) says whether every sequence is non-empty."""
    lengths = torch.tensor([len(item["tokens"]) for item in items])
    width = int(lengths.max())
    tokens = torch.full((len(items), width), pad_id, dtype=torch.long)
    for row, item in enumerate(items):
        tokens[row, : len(item["tokens"])] = torch.from_numpy(np.asarray(item["tokens"], dtype=np.int64))
    batch = {"tokens": tokens, "lengths": lengths, RIGHT_PADDED: bool(lengths.min() >= 1)}
    if "tags" in items[0]:
        tags = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, item in enumerate(items):
            tags[row, : len(item["tags"])] = torch.from_numpy(np.asarray(item["tags"], dtype=np.int64))
        batch["tags"] = tags
    if "label" in items[0]:
        batch["label"] = torch.tensor([int(item["label"]) for item in items])
    if "chars" in items[0]:
        batch["chars"] = pad_chars([item["chars"] for item in items], width)
        batch["char_lengths"] = word_lengths(batch["chars"])
    if "words" in items[0]:
        batch["words"] = [list(item["words"]) for item in items]
    return batch


def pad_chars(sentences: list[np.ndarray], width: int) -> Tensor:
    """Each sentence's (T_i, L) character ids -> (B, width, L') zero-padded, L' the longest word of the batch."""
    letters = max(int((chars != 0).sum(1).max()) for chars in sentences)
    padded = torch.zeros((len(sentences), width, letters), dtype=torch.long)
    for row, chars in enumerate(sentences):
        chars = chars[:, :letters]
        padded[row, : len(chars), : chars.shape[1]] = torch.from_numpy(chars.astype(np.int64))
    return padded

