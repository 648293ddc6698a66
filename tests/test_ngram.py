"""Interpolated Kneser-Ney: normalised everywhere, equal to a float64 brute force of Chen & Goodman's formulas, and
scored over exactly the targets the RNN language model is scored on."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from rnn_lightning import Perplexity
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.tokenization import BOS
from rnn_lightning.ngram import KneserNey
from rnn_lightning.ngram.kneser_ney import FALLBACK_DISCOUNT

V, BOS_ID = 12, 2  # ids 0 (pad) and 1 (unk) never occur; 2 = <bos>, 3 = <eos>, words 4..11


def stream(num_lines: int, seed: int) -> np.ndarray:
    """Lines ``<bos> words <eos>`` from a sticky random source (repeated n-grams, as text has), concatenated."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_lines):
        words = [int(rng.integers(4, V))]
        for _ in range(int(rng.integers(1, 9))):
            words.append(words[-1] + 1 if words[-1] < V - 1 and rng.random() < 0.5 else int(rng.integers(4, V)))
        out += [BOS_ID, *words, 3]
    return np.array(out)


class BruteForce:
    """Chen & Goodman 1998's interpolated Kneser-Ney, word by word from dictionaries of n-gram tuples."""

    def __init__(self, ids: list[int], order: int, skip: set[int], discounts=None):
        self.order = order
        raw = {k: Counter(tuple(ids[i - k + 1 : i + 1]) for i in range(k - 1, len(ids)) if ids[i] not in skip)
               for k in range(1, order + 1)}
        self.counts = {order: raw[order]}
        for k in range(1, order):  # continuation counts: distinct words seen before the k-gram
            self.counts[k] = Counter(gram[1:] for gram in raw[k + 1])
        self.discounts = {}
        for k in range(1, order + 1):
            values = list(self.counts[k].values())
            n1, n2 = values.count(1), values.count(2)
            self.discounts[k] = discounts[k - 1] if discounts else n1 / (n1 + 2 * n2) if n1 else 0.5

    def prob(self, history: tuple, word: int, k: int | None = None) -> float:
        k = self.order if k is None else k
        if k == 0:
            return 1.0 / V
        if len(history) < k - 1:  # fewer words before (the stream's start): the lower order alone
            return self.prob(history, word, k - 1)
        h = tuple(history[len(history) - (k - 1) :])  # the last k - 1 words
        followers = {g[-1]: c for g, c in self.counts[k].items() if g[:-1] == h}
        total = sum(followers.values())
        if total == 0:
            return self.prob(history, word, k - 1)
        d = self.discounts[k]
        lower = self.prob(history, word, k - 1)
        return (max(followers.get(word, 0) - d, 0) + d * len(followers) * lower) / total


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return stream(60, seed=0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_distribution_sums_to_one_seen_and_unseen_contexts(train, order):
    lm = KneserNey.fit(train, order=order, vocab_size=V, skip_targets=(BOS_ID,))
    seen = {tuple(train[i : i + order - 1]) for i in range(len(train) - order + 2)}
    unseen = {tuple(c) for c in np.random.default_rng(1).integers(0, V, size=(40, order - 1))} - seen
    shorter = {(-1,) * j + c[j:] for c in seen for j in range(1, order)}  # stream start: fewer words before
    contexts = sorted(seen) + sorted(unseen) + sorted(shorter)
    assert order == 1 or (unseen and shorter)  # order 1 has one context, the empty one
    rows = np.repeat(np.array(contexts, dtype=np.int64).reshape(len(contexts), order - 1), V, axis=0)
    probs = lm.log_prob(rows, np.tile(np.arange(V), len(contexts))).exp().view(len(contexts), V)
    assert probs.dtype == torch.float64 and (probs > 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(len(contexts), dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("order, discounts", [(3, None), (5, None), (3, [0.3, 0.6, 0.9])])
def test_equals_a_brute_force_of_the_interpolated_formulas(train, order, discounts):
    lm = KneserNey.fit(torch.from_numpy(train), order=order, vocab_size=V, skip_targets=(BOS_ID,),
                       discounts=discounts)
    ref = BruteForce(train.tolist(), order, {BOS_ID}, discounts)
    assert lm.discounts == pytest.approx([ref.discounts[k] for k in range(1, order + 1)], abs=0)
    test = stream(15, seed=7).tolist()
    expected = [math.log(ref.prob(tuple(test[max(0, i - order + 1) : i]), test[i]))
                for i in range(1, len(test)) if test[i] != BOS_ID]
    nll, count = lm.nll_sum_and_count(test, skip_targets=(BOS_ID,))
    assert count.item() == len(expected) and nll.item() == pytest.approx(-sum(expected), rel=1e-12)
    assert lm.nll_sum_and_count(test, skip_targets=(BOS_ID,), chunk=5)[0].item() == pytest.approx(nll.item(),
                                                                                                  rel=1e-12)
    contexts = np.array(list(itertools.product([-1, 4, 5, 9], repeat=order - 1)))  # seen, unseen, none
    for w in (3, 5, 11):
        got = lm.log_prob(contexts, np.full(len(contexts), w))
        want = torch.tensor([math.log(ref.prob(tuple(c), w)) for c in contexts.tolist()], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_unknown_contexts_back_off_to_lower_orders(train):
    lm = KneserNey.fit(train, order=3, vocab_size=V, skip_targets=(BOS_ID,))
    pairs = {tuple(train[i : i + 2]) for i in range(len(train) - 1)}
    a, b = next((a, b) for a in range(4, V) for b in range(4, V) if (a, b) not in pairs and (b,) in
                {(x,) for x in train[:-1]})
    targets = torch.arange(V)
    never = lm.log_prob(np.tile([[a, b]], (V, 1)), targets)
    torch.testing.assert_close(never, lm.log_prob(np.tile([[-1, b]], (V, 1)), targets), rtol=0, atol=0)
    torch.testing.assert_close(never, lm.log_prob(np.tile([[0, b]], (V, 1)), targets), rtol=0, atol=0)  # <pad>
    nothing = lm.log_prob(np.full((V, 2), -1), targets)  # no context at all: the unigram level
    torch.testing.assert_close(nothing, torch.from_numpy(np.log(lm.unigram)), rtol=0, atol=0)
    torch.testing.assert_close(lm.log_prob(np.full((V, 0), -1), targets), nothing, rtol=0, atol=0)


def test_scores_the_same_targets_as_the_language_model_with_the_perplexity_metric(tiny_markov):
    dm = tiny_markov
    bos = dm.tokenizer.token_to_id(BOS)
    lm = KneserNey.fit(dm.token_ids("train"), order=2, vocab_size=dm.vocab_size, skip_targets=(bos,))
    nll, count = lm.nll_sum_and_count(dm.token_ids("test"), skip_targets=(bos,))
    assert count == (dm.windows("test").targets != IGNORE_INDEX).sum()  # what LanguageModel's test_ppl counts
    metric = Perplexity()
    metric.update(nll_sum=nll, count=count)
    ppl = metric.compute().item()
    # The source is first-order Markov: a bigram model gets close to its own perplexity, never below it by much.
    assert dm.reference_perplexity("test") * 0.97 < ppl < dm.reference_perplexity("test") * 1.25


def test_an_order_without_a_count_of_one_falls_back_to_a_fixed_discount():
    lm = KneserNey.fit([4, 5] * 10, order=2, vocab_size=V)  # both bigrams are seen 9 times or more
    assert lm.discounts == [1.0, FALLBACK_DISCOUNT]  # each word follows one word: continuation counts are all 1
    assert lm.log_prob(np.array([[4]]), [7]).exp().item() > 0  # an unseen id keeps some probability


def test_a_stream_shorter_than_the_order_uses_the_orders_it_has():
    lm = KneserNey.fit([4, 5], order=5, vocab_size=8)  # one bigram, no trigram
    probs = lm.log_prob(np.tile([4, 5, 4, 5], (8, 1)), np.arange(8)).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(probs, lm.log_prob(np.tile([5], (8, 1)), np.arange(8)).exp(), rtol=0, atol=0)


@pytest.mark.parametrize("call, match", [
    (lambda: KneserNey.fit([0, 1, 2], order=0, vocab_size=V), r"`order` must be a positive integer .* got 0"),
    (lambda: KneserNey.fit([0, 1, 12], order=2, vocab_size=V), r"`ids` must lie in \[0, vocab_size=12\), got 12"),
    (lambda: KneserNey.fit([0.5, 1.0], order=2, vocab_size=V), r"`ids` must hold integer token ids"),
    (lambda: KneserNey.fit([0, 1, 2], order=2, vocab_size=V, discounts=[0.5]), r"`discounts` must give one value"),
    (lambda: KneserNey.fit([0, 1, 2], order=1, vocab_size=V, discounts=[1.5]), r"`discounts` .* \(0, 1\]"),
    (lambda: KneserNey.fit([4, 5, 6], order=2, vocab_size=V).log_prob(np.zeros((2, 1), int), [1, 99]),
     r"`targets` must lie in \[0, vocab_size=12\), got 99"),
])
def test_bad_input_is_refused_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
