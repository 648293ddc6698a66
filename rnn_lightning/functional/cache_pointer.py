"""The neural cache pointer (Grave et al. 2017, "Improving Neural Language Models with a Continuous Cache").

A trained language model is mixed, at evaluation time, with a cache of its own recent hidden states:

    p(w | h_t) = (1 - lambdah) * p_vocab(w | h_t) + lambdah * p_cache(w | h_t)
    p_cache(w | h_t) = sum over i in [t - window, t) with x_{i+1} = w of softmax_i(theta * h_t . h_i)

where h_i is the last recurrent layer's output at step i and x_{i+1} the word that followed it. A word seen
recently gets probability from the cache even when the model gives it little; AWD-LSTM (salesforce/awd-lstm-lm
``pointer.py``) takes the test perplexity of WikiText-2 from 68.6 to 52.0 with it.

Exact over a whole split streamed window by window: the cache (the last ``window`` states and their next words)
carries across calls like the recurrent state. At the start of a split fewer than ``window`` states are in the
cache and the pointer uses those (AWD's ``pointer.py`` waits until the cache is full); with none it is
``p_vocab``. This module is pure torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rnn_lightning.constants import IGNORE_INDEX

__all__ = ["PointerCache", "cache_pointer_log_probs"]


class PointerCache(NamedTuple):
    """The last ``window`` steps of each stream, carried from one call to the next."""

    hidden: Tensor
    """(B, C, H) last-layer outputs, C <= window."""
    targets: Tensor
    """(B, C) the word that followed each of them (``ignore_index`` where none did)."""


def _check(logits: Tensor, hidden: Tensor, targets: Tensor, window: int, lambdah: float) -> None:
    if not (isinstance(logits, Tensor) and logits.is_floating_point() and logits.ndim == 3):
        raise ValueError(f"cache_pointer_log_probs: `logits` must be a floating point (B, T, V) tensor, got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}.")
    if not (isinstance(hidden, Tensor) and hidden.ndim == 3 and hidden.shape[:2] == logits.shape[:2]):
        raise ValueError(f"cache_pointer_log_probs: `hidden` must be (B, T, H) with the (B, T) of `logits` "
                         f"{tuple(logits.shape[:2])}, got {getattr(hidden, 'shape', None)}. Pass the last "
                         "recurrent layer's outputs.")
    if not (isinstance(targets, Tensor) and targets.shape == logits.shape[:2] and not targets.is_floating_point()):
        raise ValueError(f"cache_pointer_log_probs: `targets` must be integer ids of shape {tuple(logits.shape[:2])}, "
                         f"got {getattr(targets, 'dtype', type(targets).__name__)} "
                         f"{tuple(getattr(targets, 'shape', ()))}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"cache_pointer_log_probs: `window` must be a positive integer, got {window!r}. "
                         "AWD-LSTM uses 500 (PTB) and 3785 (WikiText-2).")
    if not 0.0 <= lambdah <= 1.0:
        raise ValueError(f"cache_pointer_log_probs: `lambdah` must be in [0, 1], got {lambdah!r}. "
                         "AWD-LSTM uses 0.1279 (WikiText-2).")


def cache_pointer_log_probs(
    logits: Tensor, hidden: Tensor, targets: Tensor, cache: PointerCache | None = None, *, window: int,
    theta: float, lambdah: float, ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, PointerCache]:
    """Log-probability of each target under the cache-mixed distribution, and the cache for the next window.

    Args:
        logits: (B, T, V) the model's scores for step t's next word.
        hidden: (B, T, H) the last recurrent layer's outputs (before the output dropout and decoder).
        targets: (B, T) the next words; ``ignore_index`` where there is none (never scored, never matched).
        cache: what the previous window of the same streams returned; ``None`` at the start of a split.
        window: how many previous steps the cache holds (AWD-LSTM: 500 on PTB, 3785 on WikiText-2).
        theta: the flatness of the cache's attention (AWD-LSTM: 0.662 on WikiText-2).
        lambdah: the weight of the cache in the mixture (AWD-LSTM: 0.1279 on WikiText-2).
        ignore_index: target value that is not scored.

    Returns:
        (B, T) log-probabilities (float32, float64 for float64 input; 0 at ignored targets), and the new cache.

    Example:
        >>> logits, hidden = torch.zeros(1, 3, 4), torch.ones(1, 3, 2)  # uniform model, equal states
        >>> log_p, cache = cache_pointer_log_probs(logits, hidden, torch.tensor([[1, 1, 2]]), window=2,
        ...                                        theta=1.0, lambdah=0.5)
        >>> log_p.exp()  # step 0: no cache; step 1: the cache holds only word 1; step 2: word 2 is not in it
        tensor([[0.2500, 0.6250, 0.1250]])
    """
    _check(logits, hidden, targets, window, lambdah)
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    b, t = targets.shape
    if cache is None:
        cache = PointerCache(hidden.new_zeros(b, 0, hidden.shape[-1]), targets.new_zeros(b, 0))
    c = cache.hidden.shape[1]
    scored = targets != ignore_index  # (B, T)
    log_p_vocab = F.log_softmax(logits, dim=-1, dtype=dtype).gather(-1, targets.clamp(min=0).unsqueeze(-1))
    log_p_vocab = log_p_vocab.squeeze(-1)  # (B, T)

    keys = torch.cat([cache.hidden, hidden], dim=1).to(dtype)  # (B, C + T, H)
    key_targets = torch.cat([cache.targets, targets], dim=1)  # (B, C + T)
    query = torch.arange(t, device=targets.device)[:, None] + c  # (T, 1) absolute position of step t
    key = torch.arange(c + t, device=targets.device)[None, :]  # (1, C + T)
    allowed = (key < query) & (key >= query - window)  # (T, C + T): the `window` steps before t
    allowed = allowed & (key_targets != ignore_index)[:, None, :]  # (B, T, C + T)
    scores = theta * torch.bmm(hidden.to(dtype), keys.transpose(1, 2))  # (B, T, C + T)
    log_attention = scores.masked_fill(~allowed, -math.inf).log_softmax(dim=-1)  # NaN rows where nothing allowed
    same_word = allowed & (key_targets[:, None, :] == targets[:, :, None])  # (B, T, C + T)
    log_p_cache = log_attention.masked_fill(~same_word, -math.inf).logsumexp(dim=-1)  # (B, T)

    log_keep = math.log1p(-lambdah) if lambdah < 1 else -math.inf
    log_lambdah = math.log(lambdah) if lambdah > 0 else -math.inf
    mixed = torch.logaddexp(log_p_vocab + log_keep, log_p_cache + log_lambdah)  # (B, T)
    log_p = torch.where(allowed.any(dim=-1), mixed, log_p_vocab).masked_fill(~scored, 0.0)

    new_cache = PointerCache(torch.cat([cache.hidden, hidden.detach()], dim=1)[:, -window:],
                             key_targets[:, -window:])
    return log_p, new_cache
