"""The neural cache pointer (``rnn_lightning.functional.cache_pointer``) against a position-by-position float64 loop."""

from __future__ import annotations

import math

import pytest
import torch

from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.functional.cache_pointer import cache_pointer_log_probs


def brute_force(logits, hidden, targets, window, theta, lambdah):
    """log p of each target of each stream (B, L), one position at a time over the whole split, in float64."""
    out = torch.zeros(targets.shape, dtype=torch.float64)
    for b in range(targets.shape[0]):
        for i in range(targets.shape[1]):
            y = int(targets[b, i])
            if y == IGNORE_INDEX:
                continue
            p_vocab = torch.softmax(logits[b, i].double(), -1)[y].item()
            keys = [j for j in range(max(0, i - window), i) if targets[b, j] != IGNORE_INDEX]
            if not keys:
                out[b, i] = math.log(p_vocab)
                continue
            scores = [theta * float(hidden[b, i].double() @ hidden[b, j].double()) for j in keys]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            p_cache = sum(w for w, j in zip(weights, keys, strict=True) if targets[b, j] == y) / sum(weights)
            out[b, i] = math.log((1 - lambdah) * p_vocab + lambdah * p_cache)
    return out


def streamed(logits, hidden, targets, steps, **kwargs):
    """The function called window by window of ``steps`` over the split, the cache carried along."""
    cache, pieces = None, []
    for start in range(0, targets.shape[1], steps):
        piece = slice(start, start + steps)
        log_p, cache = cache_pointer_log_probs(logits[:, piece], hidden[:, piece], targets[:, piece], cache,
                                               **kwargs)
        pieces.append(log_p)
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("window, steps", [(7, 5), (3, 5), (40, 6), (1, 4)])
def test_streamed_windows_equal_the_brute_force_over_the_whole_split(window, steps):
    torch.manual_seed(window)
    b, length, vocab, size = 3, 23, 6, 4  # a small vocabulary: words recur within the window
    logits = torch.randn(b, length, vocab, dtype=torch.float64)
    hidden = torch.randn(b, length, size, dtype=torch.float64)
    targets = torch.randint(0, vocab, (b, length))
    targets[2, -4:] = IGNORE_INDEX  # a stream that ends early: neither scored nor matched
    kwargs = dict(window=window, theta=0.7, lambdah=0.3)
    expected = brute_force(logits, hidden, targets, **kwargs)
    torch.testing.assert_close(streamed(logits, hidden, targets, steps, **kwargs), expected, rtol=0, atol=1e-12)
    # the cache helps: the mixture is not the plain model (first step of each stream is)
    plain = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    torch.testing.assert_close(expected[:, 0], plain[:, 0], rtol=0, atol=1e-12)
    assert not torch.allclose(expected[:, 1:], plain[:, 1:].masked_fill(targets[:, 1:] == IGNORE_INDEX, 0.0))


def test_float32_logits_match_the_float64_brute_force_and_the_cache_keeps_window_steps():
    torch.manual_seed(1)
    logits, hidden = torch.randn(2, 12, 5), torch.randn(2, 12, 3)
    targets = torch.randint(0, 5, (2, 12))
    log_p, cache = cache_pointer_log_probs(logits, hidden, targets, window=4, theta=1.0, lambdah=0.2)
    assert log_p.dtype == torch.float32 and cache.hidden.shape == (2, 4, 3) and torch.equal(cache.targets,
                                                                                               targets[:, -4:])
    expected = brute_force(logits, hidden, targets, window=4, theta=1.0, lambdah=0.2)
    torch.testing.assert_close(log_p.double(), expected, rtol=1e-5, atol=1e-5)


def test_lambdah_zero_is_the_model_and_bad_arguments_are_named():
    torch.manual_seed(2)
    logits, hidden, targets = torch.randn(1, 6, 4), torch.randn(1, 6, 2), torch.randint(0, 4, (1, 6))
    log_p, _ = cache_pointer_log_probs(logits, hidden, targets, window=3, theta=1.0, lambdah=0.0)
    torch.testing.assert_close(log_p, torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1))
    with pytest.raises(ValueError, match="`window` must be a positive integer, got 0"):
        cache_pointer_log_probs(logits, hidden, targets, window=0, theta=1.0, lambdah=0.1)
    with pytest.raises(ValueError, match=r"`lambdah` must be in \[0, 1\], got 1.5"):
        cache_pointer_log_probs(logits, hidden, targets, window=3, theta=1.0, lambdah=1.5)
    with pytest.raises(ValueError, match=r"`hidden` must be \(B, T, H\) with the \(B, T\) of `logits` \(1, 6\)"):
        cache_pointer_log_probs(logits, hidden[:, :5], targets, window=3, theta=1.0, lambdah=0.1)
