"""Initialise an embedding table from pretrained word vectors (GloVe / word2vec / fastText text files)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class Coverage:
    """How many vocabulary words found a pretrained vector (``lowercased``: found only in lower case)."""

    found: int
    lowercased: int
    vocab_size: int

    def __str__(self) -> str:
        share = 100 * self.found / max(self.vocab_size, 1)
        return (f"{self.found:,} of {self.vocab_size:,} vocabulary words ({share:.1f}%) have a pretrained vector "
                f"({self.lowercased:,} through their lower case)")


@torch.no_grad()
def load_word_vectors(embedding: nn.Embedding, vocab: Mapping[str, int], path: str | Path) -> Coverage:
    """Copy the vectors of ``path`` into the rows of ``embedding`` whose words it lists; other rows stay as they are.

    The file has one word per line followed by its numbers (GloVe; word2vec / fastText ``.vec`` with their
    ``count dim`` header line; ``.gz`` too). A word missing in its own case takes the vector of its lower case
    (GloVe is lower-cased). The padding row is left alone.

    Args:
        embedding: the table to fill, ``(V, D)``; D must be the file's dimension.
        vocab: word -> row id (e.g. ``tokenizer.get_vocab()``).
        path: the vectors file.
    """
    rows = {word: i for word, i in vocab.items() if i != embedding.padding_idx}
    lower: dict[str, list[int]] = {}
    for word, i in rows.items():
        lower.setdefault(word.lower(), []).append(i)
    exact, by_lower = set(), {}
    dim = embedding.embedding_dim
    for number, parts in _vector_lines(path, "pretrained_embeddings"):
        if len(parts) - 1 != dim:
            raise ValueError(
                f"`pretrained_embeddings`: line {number} of {Path(path).name} has {len(parts) - 1} numbers but the "
                f"model's `embedding_dim` is {dim}. Set `embedding_dim: {len(parts) - 1}` to use these vectors."
            )
        word = parts[0]
        if word in rows or word in lower:
            vector = torch.tensor([float(x) for x in parts[1:]], dtype=embedding.weight.dtype)
            if word in rows:
                embedding.weight[rows[word]] = vector
                exact.add(rows[word])
            for i in lower.get(word, []):  # the file's word is the lower case of these vocabulary words
                by_lower.setdefault(i, vector)
    for i, vector in by_lower.items():
        if i not in exact:
            embedding.weight[i] = vector
    lowercased = len(set(by_lower) - exact)
    return Coverage(len(exact) + lowercased, lowercased, len(rows))


def with_vectors(words: Iterable[str], path: str | Path, arg: str) -> list[str]:
    """The ``words`` that the vectors file lists, in their own case or in lower case (the rows
    :func:`load_word_vectors` fills), in their order."""
    words = list(words)
    wanted = set(words) | {word.lower() for word in words}
    listed = {parts[0] for _, parts in _vector_lines(path, arg, words_only=True) if parts[0] in wanted}
    return [word for word in words if word in listed or word.lower() in listed]


def _vector_lines(path: str | Path, arg: str, words_only: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, [word, numbers...]) of a GloVe / word2vec / fastText text file, its header line skipped.
    ``words_only``: leave the numbers unsplit ([word, "n1 n2 ..."]), for a reader that needs only the words."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`{arg}`: no file at {str(path)!r}. Give the path of a GloVe, word2vec or fastText "
                                "text file (.txt, .vec, or gzipped).")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            parts = line.rstrip().split(" ", 1 if words_only else -1)
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec / fastText header: "count dim"
            yield number, parts
