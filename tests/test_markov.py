import itertools
import math

import datasets
import numpy as np
import pytest

from rnn_lightning.data.markov import MarkovSource, markov_corpus


@pytest.fixture(scope="module")
def source() -> MarkovSource:
    return MarkovSource.random(vocab_size=50, branching=5, mean_line_length=8.0, seed=3)


def _hand_source() -> MarkovSource:
    """Two words, hand-chosen probabilities."""
    return MarkovSource(
        words=("ba", "ko"),
        start_probs=np.array([0.25, 0.75]),
        transition=np.array([[0.1, 0.4], [0.3, 0.3]]),
        end_probs=np.array([0.5, 0.4]),
    )


def test_random_source_is_valid_and_deterministic():
    a, b = MarkovSource.random(vocab_size=30, seed=1), MarkovSource.random(vocab_size=30, seed=1)
    assert a.words == b.words and np.array_equal(a.transition, b.transition)
    assert not np.array_equal(a.transition, MarkovSource.random(vocab_size=30, seed=2).transition)
    assert len(set(a.words)) == 30 and all(w.isalpha() and w.islower() for w in a.words)
    np.testing.assert_allclose(a.transition.sum(1) + a.end_probs, 1.0)
    assert ((a.transition > 0).sum(1) <= 8).all() and (a.start_probs > 0).sum() <= 8
    np.testing.assert_allclose(a.end_probs, 1 / 12)


def _stream_chain(src: MarkovSource) -> np.ndarray:
    """(V+1, V+1) chain of the token stream over states {words..., <eos>}; <eos> restarts a line."""
    v = src.vocab_size
    p = np.zeros((v + 1, v + 1))
    p[:v, :v], p[:v, v], p[v, :v] = src.transition, src.end_probs, src.start_probs
    return p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_rate_matches_stationary_distribution(seed):
    src = MarkovSource.random(vocab_size=3, branching=2, mean_line_length=2.5, concentration=1.0, seed=seed)
    p = _stream_chain(src)
    eigvals, eigvecs = np.linalg.eig(p.T)
    pi = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1))])
    pi /= pi.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        row_entropy = -np.nansum(p * np.log(p), axis=1)
    assert src.entropy_rate() == pytest.approx(float(pi @ row_entropy), rel=1e-10)
    assert src.perplexity() == pytest.approx(math.exp(src.entropy_rate()))


def test_entropy_rate_matches_enumeration():
    """E[line NLL] / E[tokens per line] by summing over every line of up to 12 words (float64)."""
    src = MarkovSource.random(vocab_size=3, branching=3, mean_line_length=1.25, concentration=2.0, seed=4)
    log_s, log_q, log_e = np.log(src.start_probs), np.log(src.transition), np.log(src.end_probs)
    exp_nll = exp_tokens = mass = 0.0
    for n in range(1, 13):
        ids = np.array(list(itertools.product(range(3), repeat=n)))  # (3^n, n) every line of n words
        logp = log_s[ids[:, 0]] + log_q[ids[:, :-1], ids[:, 1:]].sum(1) + log_e[ids[:, -1]]  # (3^n,)
        prob = np.exp(logp)
        mass += prob.sum()
        exp_nll -= (prob * logp).sum()
        exp_tokens += prob.sum() * (n + 1)
    assert mass == pytest.approx(1.0, abs=1e-7)
    assert src.entropy_rate() == pytest.approx(exp_nll / exp_tokens, rel=1e-6)
    assert src.expected_line_length() == pytest.approx(1.25)


@pytest.mark.slow
def test_entropy_rate_matches_monte_carlo():
    src = MarkovSource.random()
    total, num = src.nll(src.sample_lines(2_000_000, seed=0))
    assert total / num == pytest.approx(src.entropy_rate(), rel=0.01)


def test_sample_lines(source):
    lines = source.sample_lines(100_000, seed=0)
    assert lines == source.sample_lines(100_000, seed=0)
    assert lines != source.sample_lines(100_000, seed=1)
    lengths = np.array([len(line.split()) for line in lines])
    assert lengths.min() >= 1
    assert lengths.mean() == pytest.approx(8.0, rel=0.05)
    assert {w for line in lines for w in line.split()} <= set(source.words)
    num = int((lengths + 1).sum())
    assert 100_000 <= num < 100_000 + lengths.max() + 1  # stops at the first line reaching the count
    assert sum(len(line.split()) + 1 for line in lines[:-1]) < 100_000
    assert source.nll(lines)[1] == num


@pytest.mark.parametrize("num_tokens", [0, 1, 2, 37])
def test_sample_lines_small(source, num_tokens):
    lines = source.sample_lines(num_tokens, seed=5)
    assert sum(len(line.split()) + 1 for line in lines) >= num_tokens
    assert len(lines) == 0 if num_tokens == 0 else all(lines)


def test_nll_by_hand():
    src = _hand_source()
    expected = -(math.log(0.25) + math.log(0.4) + math.log(0.3) + math.log(0.4))  # ba ko ko <eos>
    assert src.line_nll("ba ko ko") == pytest.approx(expected)
    total, num = src.nll(["ba ko ko", "ko"])
    assert num == 4 + 2
    assert total == pytest.approx(expected - math.log(0.75) - math.log(0.4))
    assert src.line_nll("") == math.inf  # a line has at least one word
    with pytest.raises(ValueError, match="'zu' is not in the vocabulary"):
        src.line_nll("ba zu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 1}, "vocab_size must be an integer >= 2, got 1"),
        ({"vocab_size": 10, "branching": 0}, r"branching must be an integer in \[1, vocab_size=10\], got 0"),
        ({"vocab_size": 10, "branching": 11}, "branching .* got 11"),
        ({"mean_line_length": 1.0}, "mean_line_length must be a finite number > 1.*got 1.0"),
        ({"concentration": 0.0}, "concentration must be a finite number > 0, got 0.0"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarkovSource.random(**kwargs)


def test_invalid_probabilities():
    with pytest.raises(ValueError, match="transition rows"):
        MarkovSource(("ba", "ko"), np.array([0.5, 0.5]), np.eye(2), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="num_tokens"):
        _hand_source().sample_lines(-1, seed=0)


def test_markov_corpus(source):
    corpus = markov_corpus(source, train_tokens=5000, validation_tokens=500, test_tokens=700, seed=0)
    assert isinstance(corpus, datasets.DatasetDict)
    assert set(corpus) == {"train", "validation", "test"}
    for split, n in (("train", 5000), ("validation", 500), ("test", 700)):
        assert corpus[split].column_names == ["text"]
        num = source.nll(corpus[split]["text"])[1]
        assert n <= num < n + 100
    assert corpus["validation"]["text"][:5] != corpus["test"]["text"][:5]
    again = markov_corpus(source, train_tokens=5000, validation_tokens=500, test_tokens=700, seed=0)
    assert again["train"]["text"] == corpus["train"]["text"]
