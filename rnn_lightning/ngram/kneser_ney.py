"""Interpolated Kneser-Ney n-gram language model over token ids, counted with sorts instead of loops.

The baseline an RNN language model is read against (Chen & Goodman 1998, interpolated KN): at each order k,

    P_k(w | h) = (max(c_k(h w) - D_k, 0) + D_k * N1+(h .) * P_{k-1}(w | h')) / sum_v c_k(h v)

where h' drops the oldest word of h, c_n are raw counts, c_k (k < n) continuation counts (the number of distinct
words seen before ``h w``), N1+(h .) the number of words with c_k(h w) > 0, and P_0 is uniform over the vocabulary.
A context never seen at order k backs off: P_k(w | h) = P_{k-1}(w | h'). With the default discounts
D_k = n1 / (n1 + 2 n2) (n1, n2: k-grams whose count is 1 and 2) every distribution sums to 1.

Each k-gram gets a dense id from the pair (id of its first k-1 words, last word) by one ``np.unique`` per order, so
building costs n sorts of the corpus and scoring n binary searches: no Python loop per token. Pure numpy (and torch
for the returned sums); no Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FALLBACK_DISCOUNT = 0.5  # where n1 = 0, as KenLM's `--discount_fallback` does for D_1


def _as_ids(ids: np.ndarray | Tensor, name: str) -> np.ndarray:
    array = ids.numpy(force=True) if isinstance(ids, Tensor) else np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {array.dtype}.")
    return array.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class _Order:
    """Order k >= 2: the k-gram types as sorted keys ``prefix_id * V + word``, their counts c_k, and per context
    (the (k-1)-gram id) the denominator sum_v c_k(h v) and N1+(h .)."""

    keys: np.ndarray  # (types_k,) sorted
    counts: np.ndarray  # (types_k,) c_k, float64
    denominator: np.ndarray  # (types_{k-1},)
    distinct: np.ndarray  # (types_{k-1},)
    discount: float


class KneserNey:
    """Interpolated Kneser-Ney language model of order ``n`` over token ids; build it with :meth:`fit`.

    Example:
        >>> ids = np.array([0, 1, 2, 1, 2, 3, 1, 2])
        >>> lm = KneserNey.fit(ids, order=3, vocab_size=5)
        >>> probs = lm.log_prob(np.array([[1, 2]] * 5), np.arange(5)).exp()  # every word after "1 2"
        >>> round(float(probs.sum()), 12)
        1.0
    """

    def __init__(self, *, order: int, vocab_size: int, unigram: np.ndarray, orders: list[_Order],
                 discounts: list[float]) -> None:
        self.order, self.vocab_size = order, vocab_size
        self.unigram = unigram  # (V,) P_1, float64
        self.orders = orders  # orders 2..n
        self.discounts = discounts  # D_1..D_n

    @classmethod
    def fit(
        cls,
        ids: np.ndarray | Tensor,
        *,
        order: int,
        vocab_size: int,
        skip_targets: Sequence[int] = (),
        discounts: Sequence[float] | None = None,
    ) -> KneserNey:
        """Count every k-gram (k <= ``order``) of the id stream ``ids`` and estimate the model.

        Args:
            ids: (M,) the training token ids, one stream (lines concatenated, as ``LanguageModelingDataModule.
                token_ids("train")`` gives them; contexts run across line ends as the RNN's do).
            order: n, the longest n-gram.
            vocab_size: V: ids lie in ``[0, V)``; every distribution is over all V ids.
            skip_targets: ids never predicted (``<bos>``): they stay in contexts but are not counted as targets.
            discounts: one fixed discount per order (unigram first), each in (0, 1]; default n1 / (n1 + 2 n2)
                (``FALLBACK_DISCOUNT`` for an order without a count of 1).
        """
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"`order` must be a positive integer (3 for a trigram model), got {order!r}.")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"`vocab_size` must be a positive integer, got {vocab_size!r}.")
        if discounts is not None and (len(discounts) != order or not all(0 < d <= 1 for d in discounts)):
            raise ValueError(f"`discounts` must give one value in (0, 1] per order ({order}, unigram first), got "
                             f"{discounts!r}. Pass None to estimate them from the counts.")
        ids = _check_stream(ids, vocab_size)
        if ids.size < 2:
            raise ValueError(f"`ids` must hold at least 2 token ids to count a pair, got {ids.size}.")
        target = ~np.isin(ids, np.asarray(skip_targets, dtype=np.int64))  # (M,) counted as a target
        if not target[1:].any():
            raise ValueError(f"every id of `ids` is in `skip_targets` {tuple(skip_targets)}: nothing to count.")
        gram = ids  # (M,) id of the k-gram ending at each position; -1 where it would start before the stream
        raw = [np.bincount(ids[target], minlength=vocab_size).astype(np.float64)]  # raw counts per order
        tables: list[tuple[np.ndarray, np.ndarray]] = []  # per order >= 2: sorted keys, suffix ids
        for k in range(2, order + 1):
            prefix, words = gram[k - 2 : -1], ids[k - 1 :]  # (P,) each k-gram's first k-1 words (their id), last word
            assert prefix.size == 0 or int(prefix.max()) < np.iinfo(np.int64).max // vocab_size, "keys overflow"
            keys, inverse = np.unique(prefix * vocab_size + words, return_inverse=True)
            raw.append(np.bincount(inverse[target[k - 1 :]], minlength=keys.size).astype(np.float64))
            suffix = np.empty(keys.size, dtype=np.int64)
            suffix[inverse] = gram[k - 1 :]  # (types_k,) id of the last k-1 words, the same at every occurrence
            tables.append((keys, suffix))
            gram = np.full(ids.size, -1, dtype=np.int64)
            gram[k - 1 :] = inverse
        # Counts used at each order: raw at the top, continuation counts (distinct left words) below.
        used = raw[:]
        for k in range(2, order + 1):
            _, suffix = tables[k - 2]
            seen = raw[k - 1] > 0
            used[k - 2] = np.bincount(suffix[seen], minlength=raw[k - 2].size).astype(np.float64)
        chosen = list(discounts) if discounts is not None else [_discount(counts) for counts in used]
        u1, d1 = used[0], chosen[0]
        unigram = (np.maximum(u1 - d1, 0) + d1 * np.count_nonzero(u1) / vocab_size) / u1.sum()
        orders = []
        for k in range(2, order + 1):
            keys, _ = tables[k - 2]
            counts, prefix_types = used[k - 1], used[k - 2].size
            context = keys // vocab_size
            orders.append(_Order(keys, counts, np.bincount(context, weights=counts, minlength=prefix_types),
                                 np.bincount(context[counts > 0], minlength=prefix_types).astype(np.float64),
                                 chosen[k - 1]))
        return cls(order=order, vocab_size=vocab_size, unigram=unigram, orders=orders,
                   discounts=[float(d) for d in chosen])

    def _gram_ids(self, tokens: np.ndarray) -> list[np.ndarray]:
        """(N, L) ids (-1: none) -> per order k, (N, L) id of the k-gram ending at each column, -1 if never seen."""
        v = self.vocab_size
        tokens = np.where((tokens >= 0) & (tokens < v), tokens, -1)
        grams = [tokens]
        for table in self.orders:
            prev, word = grams[-1][:, :-1], tokens[:, 1:]
            ok = (prev >= 0) & (word >= 0)
            key = np.where(ok, prev * v + word, 0)
            pos = np.searchsorted(table.keys, key)
            found = ok & (pos < table.keys.size)
            found[found] = table.keys[pos[found]] == key[found]
            grams.append(np.concatenate([np.full((len(tokens), 1), -1), np.where(found, pos, -1)], axis=1))
        return grams

    def _probs(self, tokens: np.ndarray) -> np.ndarray:
        """(N, L) ids -> (N, L - 1): P(tokens[:, j] | tokens[:, :j]) for j >= 1, the last n-1 ids as context."""
        grams = self._gram_ids(tokens)
        p = self.unigram[tokens[:, 1:]]  # (N, L - 1) P_1; the targets are checked to lie in the vocabulary
        for k, table in enumerate(self.orders, start=2):
            if table.keys.size == 0:  # a stream shorter than k: no k-gram, nor any longer one
                break
            context, gram = grams[k - 2][:, :-1], grams[k - 1][:, 1:]  # the k-1 words before, and the k-gram
            c = np.maximum(context, 0)
            seen = (context >= 0) & (table.denominator[c] > 0)
            count = np.where(gram >= 0, table.counts[np.maximum(gram, 0)], 0.0)
            mixed = (np.maximum(count - table.discount, 0) + table.discount * table.distinct[c] * p)
            p = np.where(seen, mixed / np.where(seen, table.denominator[c], 1.0), p)
        return p

    def log_prob(self, contexts: np.ndarray | Tensor, targets: np.ndarray | Tensor) -> Tensor:
        """Natural-log probability of each target after its context.

        Args:
            contexts: (N, C) the preceding ids, oldest first; -1 (or any id outside the vocabulary) for none. Only
                the last ``order - 1`` are read.
            targets: (N,) ids.

        Returns:
            (N,) float64 log-probabilities.
        """
        contexts, targets = _as_ids(contexts, "contexts"), _check_stream(targets, self.vocab_size, "targets")
        if contexts.ndim != 2 or contexts.shape[0] != targets.size:
            raise ValueError(f"`contexts` must be (N, C) for `targets` (N,) = {targets.shape}, got "
                             f"{contexts.shape}.")
        history = contexts[:, max(0, contexts.shape[1] - (self.order - 1)) :]  # (N, <= n - 1)
        pad = np.full((len(history), self.order - history.shape[1]), -1)  # "none" before (and before a short one)
        rows = np.concatenate([pad, history, targets[:, None]], axis=1)  # (N, n + 1)
        return torch.from_numpy(np.log(self._probs(rows)[:, -1]))

    def nll_sum_and_count(
        self, ids: np.ndarray | Tensor, *, skip_targets: Sequence[int] = (), chunk: int = 1 << 20
    ) -> tuple[Tensor, Tensor]:
        """Summed NLL of every id of the stream ``ids`` after the first, given all ids before it, and how many were
        scored (ids in ``skip_targets`` are not): the pair ``Perplexity.update(nll_sum=..., count=...)`` takes.

        As the RNN's streams score a split, every target once and ``<bos>`` never (pass its id in
        ``skip_targets``). ``chunk`` bounds the memory (targets scored at a time).
        """
        ids = _check_stream(ids, self.vocab_size)
        total, count, history = 0.0, 0, max(1, self.order - 1)  # ids before a chunk that its first target needs
        skip = np.asarray(skip_targets, dtype=np.int64)
        for start in range(1, ids.size, chunk):
            window = ids[max(0, start - history) : start + chunk]  # the targets and the context they need
            probs = self._probs(window[None])[0, start - max(0, start - history) - 1 :]  # (targets,)
            scored = ~np.isin(window[-probs.size :], skip)
            total += float(-np.log(probs[scored]).sum())
            count += int(scored.sum())
        return torch.tensor(total, dtype=torch.float64), torch.tensor(count, dtype=torch.int64)


def _check_stream(ids: np.ndarray | Tensor, vocab_size: int, name: str = "ids") -> np.ndarray:
    """``ids`` as a 1-d int64 array of ids in ``[0, vocab_size)``, or an error naming ``name``."""
    ids = _as_ids(ids, name)
    if ids.ndim != 1:
        raise ValueError(f"`{name}` must be one stream of token ids (M,), got shape {ids.shape}.")
    outside = (ids < 0) | (ids >= vocab_size)
    if outside.any():
        raise ValueError(f"`{name}` must lie in [0, vocab_size={vocab_size}), got {int(ids[outside][0])}. Use the "
                         "ids of the tokenizer the model was fitted with.")
    return ids


def _discount(counts: np.ndarray) -> float:
    """D = n1 / (n1 + 2 n2) from the counts of one order (Ney et al. 1994); ``FALLBACK_DISCOUNT`` when no count is 1
    (a small vocabulary's unigrams, e.g. characters), where the estimate would be 0 and unseen ids impossible."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 else FALLBACK_DISCOUNT
