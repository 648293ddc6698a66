"""AR and TAR (``rnn_lightning.functional.activation_regularization``) against their formulas, by loops in float64."""

from __future__ import annotations

import pytest
import torch

from rnn_lightning.functional.activation_regularization import (
    activation_regularization,
    temporal_activation_regularization,
)


def ar_by_loops(h, alpha, lengths):
    total, count = 0.0, 0
    for b in range(h.shape[0]):
        for t in range(lengths[b]):
            for j in range(h.shape[2]):
                total += float(h[b, t, j]) ** 2
                count += 1
    return alpha * total / count


def tar_by_loops(h, beta, lengths):
    total, count = 0.0, 0
    for b in range(h.shape[0]):
        for t in range(1, lengths[b]):
            for j in range(h.shape[2]):
                total += (float(h[b, t, j]) - float(h[b, t - 1, j])) ** 2
                count += 1
    return beta * total / count


def test_ar_and_tar_equal_their_formulas_with_and_without_padding():
    torch.manual_seed(0)
    h = torch.randn(3, 6, 4, dtype=torch.float64)
    full = [6, 6, 6]
    assert activation_regularization(h, 2.0).item() == pytest.approx(ar_by_loops(h, 2.0, full), rel=1e-12)
    assert temporal_activation_regularization(h, 1.5).item() == pytest.approx(tar_by_loops(h, 1.5, full), rel=1e-12)
    lengths = [6, 2, 1]  # a one-step sequence has no pair of steps
    mask = torch.arange(6) < torch.tensor(lengths)[:, None]
    padded = h.masked_fill(~mask[..., None], 1e3)  # padding must not count
    assert activation_regularization(padded, 2.0, mask=mask).item() == pytest.approx(
        ar_by_loops(h, 2.0, lengths), rel=1e-12)
    assert temporal_activation_regularization(padded, 1.5, mask=mask).item() == pytest.approx(
        tar_by_loops(h, 1.5, lengths), rel=1e-12)


def test_gradients_flow_and_bf16_is_computed_in_float32():
    torch.manual_seed(1)
    h = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    activation_regularization(h, 2.0).backward()
    torch.testing.assert_close(h.grad, 2.0 * 2 * h.detach() / h.numel(), rtol=0, atol=1e-15)
    low = h.detach().bfloat16()
    out = temporal_activation_regularization(low, 1.0)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(tar_by_loops(low.double(), 1.0, [5, 5]), rel=1e-6)


def test_nothing_to_regularise_gives_zero_and_bad_input_is_named():
    h = torch.randn(2, 1, 3)
    assert temporal_activation_regularization(h, 1.0).item() == 0.0
    assert activation_regularization(h, 1.0, mask=torch.zeros(2, 1, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ValueError, match=r"`alpha` must be a number >= 0, got -1"):
        activation_regularization(h, -1)
    with pytest.raises(ValueError, match=r"`output` must be a floating point \(B, T, H\) tensor, got \(2, 3\)"):
        temporal_activation_regularization(torch.randn(2, 3), 1.0)
    with pytest.raises(ValueError, match=r"`mask` must be a bool \(B, T\) tensor"):
        activation_regularization(h, 1.0, mask=torch.ones(2, 2, dtype=torch.bool))
