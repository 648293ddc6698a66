"""Tests for ``rnn_lightning.functional.perplexity`` and ``rnn_lightning.metrics.Perplexity``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.text import perplexity as tm_perplexity
from torchmetrics.text import Perplexity as TorchmetricsPerplexity

from rnn_lightning.functional import nll_sum_and_count, perplexity, perplexity_from_nll
from rnn_lightning.metrics import Perplexity

WIKITEXT2_VOCAB = 33_278


def make_batch(shape, vocab, seed=0, scale=1.0, dtype=torch.float32, ignore_index=None, p_ignore=0.3):
    """Random logits (*shape, vocab) and targets (*shape), a fraction ``p_ignore`` set to ``ignore_index``."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, vocab, generator=g, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, vocab, tuple(shape), generator=g)
    if ignore_index is not None:
        target = torch.where(torch.rand(tuple(shape), generator=g) < p_ignore, ignore_index, target)
    return logits, target


def reference_nll(logits, target, ignore_index=None):
    """Brute force in float64: ``logsumexp(logits) - logits[target]`` summed over the kept tokens."""
    logits = logits.double().reshape(-1, logits.shape[-1])  # (N, V)
    target = target.reshape(-1)  # (N,)
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    logits, target = logits[keep], target[keep]
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, target[:, None]).squeeze(-1)
    return nll.sum().item(), int(keep.sum())


def reference_perplexity(logits, target, ignore_index=None):
    nll, count = reference_nll(logits, target, ignore_index)
    return math.exp(nll / count)


@pytest.mark.parametrize("shape, vocab", [((7,), 3), ((4, 35), 50), ((2, 3, 5), 1000)])
@pytest.mark.parametrize("ignore_index", [None, -100, 0])
def test_matches_float64_reference(shape, vocab, ignore_index):
    logits, target = make_batch(shape, vocab, seed=1, ignore_index=ignore_index)
    expected_nll, expected_count = reference_nll(logits, target, ignore_index)
    nll, count = nll_sum_and_count(logits, target, ignore_index=ignore_index)
    assert (nll.dtype, count.dtype, nll.shape, count.shape) == (torch.float64, torch.int64, (), ())
    assert count.item() == expected_count
    assert nll.item() == pytest.approx(expected_nll, rel=1e-6)

    expected = reference_perplexity(logits, target, ignore_index)
    ours = perplexity(logits, target, ignore_index=ignore_index)
    assert ours.dtype == torch.float32
    assert ours.item() == pytest.approx(expected, rel=1e-6)
    metric = Perplexity(ignore_index=ignore_index)
    metric.update(logits, target)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype, scale", [(torch.float16, 5.0), (torch.bfloat16, 20.0)])
def test_low_precision_logits_stay_finite_where_torchmetrics_gives_inf(dtype, scale):
    # torchmetrics takes softmax in the input dtype, then log. In float16 every probability below 2**-24
    # (~6e-8, i.e. an NLL above ~16.6 nats) rounds to 0 and log(0) = -inf: with randn * 5 logits over 33,278
    # classes the max logit is ~21, so most targets underflow. bfloat16 has float32's exponent range and only
    # flushes below ~9e-41 (NLL above ~92 nats), which randn * 20 logits reach for ~1 target in 6.
    logits, target = make_batch((4, 35), WIKITEXT2_VOCAB, seed=0, scale=scale, dtype=dtype)
    expected = reference_perplexity(logits, target)  # float64 from the same low-precision values
    assert math.isfinite(expected)

    ours = perplexity(logits, target)
    metric = Perplexity()
    metric.update(logits, target)
    for value in (ours, metric.compute()):
        assert torch.isfinite(value)
        assert value.item() == pytest.approx(expected, rel=1e-4)  # float64 reference: 1e-4 is loose for float32

    peer = TorchmetricsPerplexity()
    peer.update(logits, target)
    assert not torch.isfinite(peer.compute())


@pytest.mark.parametrize("ignore_index", [None, -100])
def test_agrees_with_torchmetrics_on_float32(ignore_index):
    logits, target = make_batch((4, 35), 100, seed=2, ignore_index=ignore_index)
    expected = tm_perplexity(logits, target, ignore_index=ignore_index).item()
    peer = TorchmetricsPerplexity(ignore_index=ignore_index)
    peer.update(logits, target)
    assert peer.compute().item() == pytest.approx(expected, rel=1e-6)
    metric = Perplexity(ignore_index=ignore_index)
    metric.update(logits, target)
    assert perplexity(logits, target, ignore_index=ignore_index).item() == pytest.approx(expected, rel=1e-5)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-5)


def test_update_from_nll_sum_equals_update_from_logits():
    logits, target = make_batch((4, 35), 50, seed=3, ignore_index=-100)
    loss_sum = F.cross_entropy(logits.reshape(-1, 50), target.reshape(-1), ignore_index=-100, reduction="sum")
    n_tokens = (target != -100).sum()
    from_logits, from_tensors, from_numbers = Perplexity(ignore_index=-100), Perplexity(), Perplexity()
    from_logits.update(logits, target)
    from_tensors.update(nll_sum=loss_sum, count=n_tokens)
    from_numbers.update(nll_sum=loss_sum.item(), count=int(n_tokens))
    expected = from_logits.compute().item()
    assert from_tensors.compute().item() == pytest.approx(expected, rel=1e-6)
    assert from_numbers.compute().item() == pytest.approx(expected, rel=1e-6)
    assert perplexity_from_nll(loss_sum, n_tokens).item() == pytest.approx(expected, rel=1e-6)


def test_accumulation_forward_and_reset():
    batches = [make_batch((b, 35), 50, seed=10 + b, ignore_index=-100) for b in (1, 3, 2)]
    metric = Perplexity(ignore_index=-100)
    for logits, target in batches:
        batch_value = metric(logits, target)  # forward: value on this batch, state accumulated
        assert batch_value.item() == pytest.approx(perplexity(logits, target, ignore_index=-100).item())
    logits = torch.cat([b[0] for b in batches])
    target = torch.cat([b[1] for b in batches])
    assert metric.count.item() == (target != -100).sum().item()
    assert metric.compute().item() == pytest.approx(
        perplexity(logits, target, ignore_index=-100).item(), rel=1e-6
    )

    metric.reset()
    assert (metric.nll_sum.item(), metric.count.item()) == (0.0, 0)
    metric.update(*batches[0])
    assert metric.compute().item() == pytest.approx(perplexity(*batches[0], ignore_index=-100).item())


def test_merged_states_equal_single_metric():
    (logits_a, target_a), (logits_b, target_b) = (make_batch((2, 35), 50, seed=s) for s in (20, 21))
    a, b, single = Perplexity(), Perplexity(), Perplexity()
    a.update(logits_a, target_a)
    b.update(logits_b, target_b)
    single.update(torch.cat([logits_a, logits_b]), torch.cat([target_a, target_b]))
    expected = single.compute().item()
    summed = perplexity_from_nll(a.nll_sum + b.nll_sum, a.count + b.count)  # what a DDP "sum" reduction does
    assert summed.item() == pytest.approx(expected, rel=1e-12)
    a.merge_state(b)
    assert a.compute().item() == pytest.approx(expected, rel=1e-12)


def test_states_keep_float64_and_int64_under_dtype_moves():
    logits, target = make_batch((40, 35), 7, seed=4)  # 1400 tokens: not exactly representable in bfloat16
    metric = Perplexity()
    metric.update(logits, target)
    nll, count = metric.nll_sum.clone(), metric.count.clone()
    torch.nn.Sequential(metric).to(torch.float16)  # what Lightning's "16-true" precision does to the module
    metric.half()
    metric.set_dtype(torch.bfloat16)
    assert (metric.nll_sum.dtype, metric.count.dtype) == (torch.float64, torch.int64)
    assert metric.nll_sum.item() == nll.item() and metric.count.item() == count.item() == 1400
    metric.reset()
    assert (metric.nll_sum.dtype, metric.count.dtype) == (torch.float64, torch.int64)


LOGITS, TARGET = make_batch((4, 35), 10, seed=5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: perplexity(LOGITS.long(), TARGET), TypeError, r"perplexity: `logits` must be a floating"),
        (lambda: perplexity(LOGITS, TARGET.float()), TypeError, r"`target` must be an integer tensor"),
        (lambda: perplexity(LOGITS, TARGET[:, :-1]), ValueError, r"`target` must have .*got \(4, 34\)"),
        (lambda: perplexity(LOGITS, TARGET + 10), ValueError, r"`target` values must lie in \[0, 10\)"),
        (lambda: perplexity(LOGITS, TARGET - 10), ValueError, r"got -\d+\. Pass `ignore_index`"),
        (lambda: perplexity(LOGITS, TARGET * 0 - 1, ignore_index=-1), ValueError, r"every `target`"),
        (lambda: perplexity(LOGITS, TARGET, ignore_index=1.5), TypeError, r"`ignore_index` must be an int"),
        (lambda: perplexity_from_nll(1.0, 0), ValueError, r"`count` must be positive, got 0"),
        (lambda: perplexity_from_nll(torch.ones(2), 2), ValueError, r"`nll_sum` must be a scalar"),
        (lambda: nll_sum_and_count(torch.tensor(1.0), TARGET), ValueError, r"`logits` must have a last"),
    ],
)
def test_functional_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, r"either `logits` and `target`, or `nll_sum` and `count`, got neither"),
        (dict(logits=LOGITS, target=TARGET, count=3), ValueError, r"got both forms"),
        (dict(logits=LOGITS), ValueError, r"`target` is missing"),
        (dict(nll_sum=1.0), ValueError, r"`count` is missing"),
        (dict(nll_sum=1.0, count=torch.tensor(3.0)), TypeError, r"`count` must be an integer token count"),
        (dict(nll_sum=torch.tensor(1), count=3), TypeError, r"`nll_sum` must be a float"),
        (dict(nll_sum=torch.ones(2), count=3), ValueError, r"`nll_sum` must be a scalar"),
        (dict(logits=LOGITS, target=TARGET[0]), ValueError, r"Perplexity.update: `target` must have"),
    ],
)
def test_metric_update_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        Perplexity().update(**kwargs)


def test_metric_compute_and_init_errors():
    with pytest.raises(TypeError, match=r"`ignore_index` must be an int"):
        Perplexity(ignore_index="pad")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"compute\(\) called before any update"):
        Perplexity().compute()
    metric = Perplexity(ignore_index=-100)
    metric.update(LOGITS, torch.full_like(TARGET, -100))
    with pytest.raises(ValueError, match=r"no scored token"):
        metric.compute()


@settings(max_examples=60, deadline=None)
@given(
    vocab=st.integers(1, 12),
    shape=st.lists(st.integers(0, 4), max_size=3),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.1, 1.0, 8.0]),  # keeps exp(mean NLL) below the float32 maximum
    dtype=st.sampled_from([torch.float64, torch.float32, torch.float16, torch.bfloat16]),
    ignore_index=st.sampled_from([None, -100, 0]),
    p_ignore=st.floats(0.0, 1.0),
)
def test_property_matches_float64_reference(vocab, shape, seed, scale, dtype, ignore_index, p_ignore):
    logits, target = make_batch(shape, vocab, seed, scale, dtype, ignore_index, p_ignore)
    expected_nll, expected_count = reference_nll(logits, target, ignore_index)
    nll, count = nll_sum_and_count(logits, target, ignore_index=ignore_index)
    assert count.item() == expected_count
    # per token, float32 log_softmax is off by a few ulps of the largest logit; float64 logits stay float64
    eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    max_logit = logits.double().abs().amax().item() if logits.numel() else 0.0
    atol = 8 * eps * (1 + max_logit) * expected_count
    assert nll.item() == pytest.approx(expected_nll, rel=1e-9, abs=atol)

    metric = Perplexity(ignore_index=ignore_index)
    metric.update(logits, target)
    if expected_count == 0:
        with pytest.raises(ValueError):
            perplexity(logits, target, ignore_index=ignore_index)
        return
    expected = math.exp(expected_nll / expected_count)
    rel = 1e-6 + atol / expected_count
    assert perplexity(logits, target, ignore_index=ignore_index).item() == pytest.approx(expected, rel=rel)
    assert metric.compute().item() == pytest.approx(expected, rel=rel)
