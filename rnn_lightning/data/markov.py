"""A synthetic language with exactly known perplexity: the offline quickstart corpus.

:class:`MarkovSource` is a random sparse first-order Markov chain over pronounceable pseudo-words
("bako", "tilu"): every line starts from a START state, and each word either ends the line (the
``<eos>`` token) or moves to one of a few successor words. Because the source is known, its exact
per-token entropy rate (the best perplexity any model can reach) is computed in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # 70 consonant-vowel syllables


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis, with 0 * log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(-1)


def _pseudo_words(n: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``n`` distinct lowercase words of 2-3 (more for huge ``n``) consonant-vowel syllables."""
    max_syl = 3
    while sum(len(_SYLLABLES) ** k for k in range(2, max_syl + 1)) < 4 * n:  # keep rejections rare
        max_syl += 1
    words: dict[str, None] = {}  # ordered set
    while len(words) < n:
        syl = rng.integers(len(_SYLLABLES), size=rng.integers(2, max_syl + 1))
        words["".join(_SYLLABLES[i] for i in syl)] = None
    return tuple(words)


@dataclass(frozen=True, eq=False)
class MarkovSource:
    """A first-order Markov source of lines of words, each line ending with an ``<eos>`` event.

    A line is generated as ``START -> w_1 -> ... -> w_n -> <eos>`` (so ``n >= 1``): the first word
    is drawn from ``start_probs``, and from word ``i`` the line continues to word ``j`` with
    probability ``transition[i, j]`` or ends with probability ``end_probs[i]``.

    Args:
        words: The ``V`` distinct words of the vocabulary.
        start_probs: ``(V,)`` distribution of the first word of a line.
        transition: ``(V, V)`` dense word -> word probabilities; row ``i`` sums to ``1 - end_probs[i]``.
        end_probs: ``(V,)`` probability of ending the line after each word.

    Example:
        >>> source = MarkovSource.random(vocab_size=20, seed=0)
        >>> 1.0 < source.perplexity() < 20.0
        True
        >>> lines = source.sample_lines(100, seed=0)
        >>> total, num_tokens = source.nll(lines)
        >>> num_tokens >= 100 and math.isfinite(total)
        True
    """

    words: tuple[str, ...]
    start_probs: np.ndarray
    transition: np.ndarray
    end_probs: np.ndarray

    def __post_init__(self) -> None:
        words = tuple(self.words)
        v = len(words)
        if v == 0 or len(set(words)) != v or any(not w or w.split() != [w] for w in words):
            raise ValueError(f"words must be non-empty, distinct and whitespace-free, got {words[:10]}...")
        arrays = {}
        for name, shape in (("start_probs", (v,)), ("transition", (v, v)), ("end_probs", (v,))):
            a = np.array(getattr(self, name), dtype=np.float64)  # copy, so the source is immutable
            if a.shape != shape or not np.all(np.isfinite(a)) or np.any(a < 0):
                raise ValueError(
                    f"{name} must be a non-negative finite array of shape {shape}, got {a.shape}"
                )
            a.setflags(write=False)
            arrays[name] = a
        if not np.isclose(arrays["start_probs"].sum(), 1.0):
            raise ValueError(f"start_probs must sum to 1, got {arrays['start_probs'].sum()}")
        rows = arrays["transition"].sum(1) + arrays["end_probs"]  # (V,)
        if not np.allclose(rows, 1.0):
            raise ValueError(
                f"transition rows + end_probs must sum to 1, got sums in [{rows.min()}, {rows.max()}]"
            )
        if np.any(arrays["end_probs"] <= 0):
            raise ValueError("end_probs must be > 0 for every word, so that every line ends")
        object.__setattr__(self, "words", words)
        for name, a in arrays.items():
            object.__setattr__(self, name, a)

    @classmethod
    def random(
        cls,
        vocab_size: int = 200,
        *,
        branching: int = 8,
        mean_line_length: float = 12.0,
        concentration: float = 0.5,
        seed: int = 0,
    ) -> MarkovSource:
        """A random sparse source, deterministic given ``seed``.

        Args:
            vocab_size: Number of words ``V`` (>= 2).
            branching: Number of possible first words, and of possible successors of each word (1..V).
            mean_line_length: Expected number of words per line (> 1); each word ends the line with
                probability ``1 / mean_line_length``.
            concentration: Dirichlet concentration (> 0) of the start and successor weights; small values
                give peaked (low-entropy) distributions, large values nearly uniform ones.
            seed: Seed of the words, the successor sets and the weights.

        Returns:
            The source. Its transition matrix is dense ``(V, V)``, so keep ``V`` to a few thousand.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(
                f"vocab_size must be an integer >= 2, got {vocab_size!r}; pass e.g. vocab_size=200."
            )
        if isinstance(branching, bool) or not isinstance(branching, int) or not 1 <= branching <= vocab_size:
            raise ValueError(
                f"branching must be an integer in [1, vocab_size={vocab_size}], got {branching!r}; "
                f"pass e.g. branching={min(8, vocab_size)}."
            )
        if not (isinstance(mean_line_length, int | float) and math.isfinite(mean_line_length)) or not (
            mean_line_length > 1
        ):
            raise ValueError(
                f"mean_line_length must be a finite number > 1 (words per line), got {mean_line_length!r}; "
                "pass e.g. mean_line_length=12.0."
            )
        if (
            not (isinstance(concentration, int | float) and math.isfinite(concentration))
            or not concentration > 0
        ):
            raise ValueError(
                f"concentration must be a finite number > 0, got {concentration!r}; "
                "pass e.g. concentration=0.5."
            )
        rng = np.random.default_rng(seed)
        words = _pseudo_words(vocab_size, rng)

        def sparse_row() -> np.ndarray:  # (V,) Dirichlet(concentration) weights on `branching` random words
            support = rng.choice(vocab_size, size=branching, replace=False)
            w = rng.gamma(concentration, size=branching)
            if w.sum() == 0:  # all gamma draws underflowed (tiny concentration): put all mass on one
                w[rng.integers(branching)] = 1.0
            row = np.zeros(vocab_size)
            row[support] = w / w.sum()
            return row

        p_end = 1.0 / mean_line_length
        start_probs = sparse_row()  # (V,)
        transition = (1.0 - p_end) * np.stack([sparse_row() for _ in range(vocab_size)])  # (V, V)
        end_probs = np.full(vocab_size, p_end)  # (V,)
        return cls(words, start_probs, transition, end_probs)

    @property
    def vocab_size(self) -> int:
        """Number of words ``V`` (the ``<eos>`` token excluded)."""
        return len(self.words)

    # ---------------------------------------------------------------- extended (V+1, V+1) matrices
    # Rows: the V word states then START (index V). Columns: the V words then END (index V).

    @cached_property
    def _probs(self) -> np.ndarray:
        v = self.vocab_size
        p = np.zeros((v + 1, v + 1))  # (V+1, V+1)
        p[:v, :v] = self.transition
        p[:v, v] = self.end_probs
        p[v, :v] = self.start_probs  # START -> END is impossible: every line has >= 1 word
        return p

    @cached_property
    def _log_probs(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self._probs)  # (V+1, V+1), -inf for impossible events

    @cached_property
    def _sampler(self) -> tuple[np.ndarray, np.ndarray]:
        """Sparse inverse-CDF tables: ``next[s, k]`` is the k-th possible next state of ``s`` and
        ``cdf[s, k]`` its cumulative probability, both ``(V+1, K)`` with ``K`` the max out-degree."""
        p = self._probs
        k = int((p > 0).sum(1).max())
        order = np.argsort(p == 0, axis=1, kind="stable")[:, :k]  # (V+1, K) non-zero columns first
        cdf = np.cumsum(np.take_along_axis(p, order, 1), axis=1)  # (V+1, K)
        cdf /= cdf[:, -1:]  # exact 1.0 from the last non-zero column on, so u < 1 never picks a pad
        return order, cdf

    def _visits(self) -> np.ndarray:
        """``(V,)`` expected visits ``v`` to each word state in one line, from START until absorption.

        With ``Q`` the word -> word submatrix (rows sum to ``1 - end_probs``), the fundamental matrix is
        ``N = (I - Q)^-1`` and ``v = start_probs @ N``, i.e. ``(I - Q^T) v = start_probs``.
        """
        eye = np.eye(self.vocab_size)
        return np.linalg.solve(eye - self.transition.T, self.start_probs)

    def expected_line_length(self) -> float:
        """Expected number of words per line (the ``<eos>`` token excluded)."""
        return float(self._visits().sum())

    def entropy_rate(self) -> float:
        """Exact expected NLL per token (nats) of the infinite stream of lines, ``<eos>`` tokens included.

        Every line is an independent renewal cycle, so by the renewal-reward theorem the rate is
        ``E[NLL of a line] / E[tokens per line]``. Each visit to a word state emits that word's token and
        then draws the next event from the state's row ``[transition[s], end_probs[s]]``, so with ``v``
        the expected visits (:meth:`_visits`):

        - ``E[NLL of a line] = H(start_probs) + sum_s v_s * H([transition[s], end_probs[s]])``
        - ``E[tokens per line] = E[words] + 1 = sum_s v_s + 1`` (one ``<eos>`` per line).
        """
        v = self._visits()  # (V,)
        line_nll = _entropy(self.start_probs) + v @ _entropy(self._probs[:-1])
        return float(line_nll / (v.sum() + 1.0))

    def perplexity(self) -> float:
        """Exact per-token perplexity of the source, ``exp(entropy_rate())``."""
        return math.exp(self.entropy_rate())

    def sample_lines(self, num_tokens: int, seed: int) -> list[str]:
        """Samples whole lines until they hold at least ``num_tokens`` tokens.

        Lines are sampled in parallel batches (one vectorized inverse-CDF step per word position).

        Args:
            num_tokens: Minimum number of tokens, each line counting its words plus one ``<eos>``.
            seed: Seed of the sample; the same seed gives the same lines.

        Returns:
            Space-separated lines of words, without end marker.
        """
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an integer >= 0, got {num_tokens!r}.")
        rng = np.random.default_rng(seed)
        nxt, cdf = self._sampler
        v = self.vocab_size
        per_line = self.expected_line_length() + 1.0
        lines: list[str] = []
        remaining = num_tokens
        while remaining > 0:
            n = int(remaining / per_line * 1.05) + 16  # lines in this batch: enough with high probability
            line_ids, word_ids = [], []  # per step: (alive,) line indices and their new words
            alive = np.arange(n)  # (A,) lines not yet ended
            state = np.full(n, v)  # (A,) all lines start at START
            while alive.size:
                u = rng.random(alive.size)  # (A,)
                choice = (cdf[state] <= u[:, None]).sum(1)  # (A,) first k with cdf > u
                state = nxt[state, choice]  # (A,) next word, or END (= V)
                keep = state != v
                alive, state = alive[keep], state[keep]
                line_ids.append(alive)
                word_ids.append(state)
            line_ids, word_ids = np.concatenate(line_ids), np.concatenate(word_ids)  # (T,) time-major
            order = np.argsort(line_ids, kind="stable")  # line-major, words in order within a line
            lengths = np.bincount(line_ids, minlength=n)  # (n,) words per line, all >= 1
            keep_lines = min(n, int(np.searchsorted(np.cumsum(lengths + 1), remaining)) + 1)
            ends = np.cumsum(lengths[:keep_lines]).tolist()
            tokens = np.asarray(self.words, dtype=object)[word_ids[order[: ends[-1]]]].tolist()
            lines.extend(" ".join(tokens[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True))
            remaining -= ends[-1] + keep_lines
        return lines

    def nll(self, lines: Iterable[str]) -> tuple[float, int]:
        """Exact negative log-likelihood of lines under the source.

        Args:
            lines: Space-separated lines of words; each line's end counts as one ``<eos>`` event.

        Returns:
            ``(total_nll, num_tokens)``: the NLL in nats (``inf`` if a line is impossible, e.g. empty)
            and the number of tokens (words plus one ``<eos>`` per line). ``exp(total_nll / num_tokens)``
            is the source's perplexity on these lines.

        Raises:
            ValueError: If a word is not in the vocabulary.
        """
        index = {w: i for i, w in enumerate(self.words)}
        split = [line.split() for line in lines]
        try:
            flat = np.array([index[w] for ws in split for w in ws], dtype=np.int64)  # (N,) word ids
        except KeyError as err:
            raise ValueError(f"word {err.args[0]!r} is not in the vocabulary of this source") from None
        lengths = np.array([len(ws) for ws in split], dtype=np.int64)  # (L,)
        ends = np.cumsum(lengths)  # (L,)
        v = self.vocab_size
        prev = np.insert(flat, ends - lengths, v)  # (N+L,) each line preceded by START
        nxt = np.insert(flat, ends, v)  # (N+L,) each line followed by END
        total = -float(self._log_probs[prev, nxt].sum())
        return total, int(flat.size + lengths.size)

    def line_nll(self, line: str) -> float:
        """Exact NLL in nats of one line, its words and its ``<eos>`` event (see :meth:`nll`)."""
        return self.nll([line])[0]


def markov_corpus(
    source: MarkovSource,
    train_tokens: int = 300_000,
    validation_tokens: int = 30_000,
    test_tokens: int = 30_000,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Samples a train/validation/test corpus from ``source``.

    Args:
        source: The Markov source to sample from.
        train_tokens: Minimum tokens (words plus one ``<eos>`` per line) of the "train" split.
        validation_tokens: Minimum tokens of the "validation" split.
        test_tokens: Minimum tokens of the "test" split.
        seed: Seed of the corpus; each split uses its own seed derived from it.

    Returns:
        A ``DatasetDict`` with splits "train", "validation" and "test", each with a "text" column of lines.
    """
    import datasets  # lazily: importing it takes seconds

    sizes = {"train": train_tokens, "validation": validation_tokens, "test": test_tokens}
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(sizes))]
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"text": source.sample_lines(n, seed=s)})
            for (name, n), s in zip(sizes.items(), seeds, strict=True)
        }
    )
