"""Variable-length BPTT windows (``rnn_lightning.nn.variable_bptt``) against the stated distribution."""

from __future__ import annotations

import math

import pytest

from rnn_lightning.nn.variable_bptt import VariableBPTT

BPTT, N = 70, 20_000


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def stated_pmf(bptt: int, p_full: float = 0.95, std: float = 5.0, min_length: int = 5) -> dict[int, float]:
    """P(length = k) of ``max(min_length, int(X))``, X ~ p_full N(bptt, std) + (1 - p_full) N(bptt / 2, std)."""
    def cdf(x):  # P(X < x)
        return p_full * normal_cdf((x - bptt) / std) + (1 - p_full) * normal_cdf((x - bptt / 2) / std)
    pmf = {min_length: cdf(min_length + 1)}  # every X below min_length + 1 truncates to <= min_length
    for k in range(min_length + 1, 2 * bptt):
        pmf[k] = cdf(k + 1) - cdf(k)
    return pmf


def test_lengths_follow_awds_distribution_at_a_fixed_seed():
    windows = VariableBPTT(BPTT, seed=1234)
    draws = [windows.sample() for _ in range(N)]
    lengths = [w.length for w in draws]
    assert all(w.lr_scale == w.length / BPTT for w in draws)
    pmf = stated_pmf(BPTT)
    assert abs(sum(pmf.values()) - 1) < 1e-9

    # share of full-length bases (the two modes are 7 std apart): binomial z-test
    full = sum(length > 0.75 * BPTT for length in lengths) / N
    assert abs(full - 0.95) < 4 * math.sqrt(0.95 * 0.05 / N)

    # mean and variance against the exact moments of the stated distribution
    mean = sum(k * p for k, p in pmf.items())
    var = sum((k - mean) ** 2 * p for k, p in pmf.items())
    m4 = sum((k - mean) ** 4 * p for k, p in pmf.items())
    sample_mean = sum(lengths) / N
    sample_var = sum((x - sample_mean) ** 2 for x in lengths) / (N - 1)
    assert abs(sample_mean - mean) < 4 * math.sqrt(var / N)
    assert abs(sample_var - var) < 4 * math.sqrt((m4 - var**2) / N)

    # chi-square over bins with >= 50 expected draws (the rest pooled into one bin)
    big = [k for k, p in pmf.items() if p * N >= 50]
    observed = [sum(length == k for length in lengths) for k in big]
    expected = [pmf[k] * N for k in big]
    observed.append(N - sum(observed))
    expected.append(N - sum(expected))
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    dof = len(observed) - 1
    assert chi2 < dof + 4 * math.sqrt(2 * dof), (chi2, dof)


def test_the_minimum_and_the_optional_cap_hold():
    windows = VariableBPTT(8, std=10.0, max_length=12, seed=0)
    lengths = [windows.sample().length for _ in range(2000)]
    assert min(lengths) == 5 and max(lengths) == 12


def test_a_resumed_sampler_draws_the_same_lengths():
    windows = VariableBPTT(BPTT, seed=7)
    for _ in range(13):
        windows.sample()
    state = windows.state_dict()
    expected = [windows.sample() for _ in range(50)]
    resumed = VariableBPTT(BPTT, seed=999)
    resumed.load_state_dict(state)
    assert [resumed.sample() for _ in range(50)] == expected
    same_seed = VariableBPTT(BPTT, seed=7)
    assert [same_seed.sample() for _ in range(63)][13:] == expected  # the seed alone fixes the sequence


@pytest.mark.parametrize("kwargs, match", [
    (dict(bptt=0), "`bptt` must be a positive integer, got 0"),
    (dict(bptt=70, max_length=4), "`max_length` must be None or an integer >= min_length=5, got 4"),
    (dict(bptt=70, p_full=1.5), r"`p_full` must be a probability in \[0, 1\], got 1.5"),
    (dict(bptt=70, std=-1.0), "`std` must be >= 0, got -1.0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VariableBPTT(**kwargs)
