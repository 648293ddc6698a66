"""Sampling from a recurrent language model, one token at a time with a carried state."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Mask (to ``-inf``) every token outside the top-k and the top-p (nucleus) set.

    Top-p keeps the smallest set of most likely tokens whose probability sums to at least ``top_p``;
    the most likely token is always kept.

    Args:
        logits: (B, V) scores.
        top_k: keep the ``top_k`` highest scores (``None``: all).
        top_p: keep the nucleus of mass ``top_p`` in (0, 1] (``None``: all).

    Example:
        >>> filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2)
        tensor([[-inf, 3., 2.]])
    """
    check_sampling(top_k=top_k, top_p=top_p)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        mass_before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)
        drop_sorted = mass_before >= top_p  # mass already covered before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def check_sampling(
    max_new_tokens: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> None:
    """Raise a ``ValueError``/``TypeError`` naming the argument, what arrived and the fix, for sampling arguments
    that ask for no output or no distribution (``temperature`` only matters when not ``greedy``)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"`max_new_tokens` must be an integer, got {max_new_tokens!r}. Pass e.g. 50.")
    if max_new_tokens < 1:
        raise ValueError(
            f"`max_new_tokens` must be >= 1, got {max_new_tokens}: that asks for no output. Pass e.g. 50."
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(
            f"`top_k` must be a positive integer or None, got {top_k!r}: top_k=0 keeps no token. Pass e.g. 40, or "
            "None to sample from every token."
        )
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(
            f"`top_p` must be in (0, 1] or None, got {top_p!r}: it is the probability mass kept (0 keeps nothing). "
            "Pass e.g. 0.9, or None (or 1.0) to sample from every token."
        )
    if not greedy and not (isinstance(temperature, (int, float)) and 0.0 < temperature < math.inf):
        raise ValueError(
            f"`temperature` must be a finite number > 0, got {temperature!r}. Pass e.g. 1.0 (lower is more "
            "conservative), or `greedy=True` for argmax decoding (the limit of temperature -> 0)."
        )


@torch.no_grad()
def sample_tokens(
    net: nn.Module,
    context: Tensor,
    *,
    max_new_tokens: int,
    eos_id: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
    line_start_id: int | None = None,
) -> list[int]:
    """Feed ``context`` once, then sample token by token, carrying the recurrent state.

    Each new token costs one recurrent step whatever the length so far.

    Args:
        net: maps (1, T) ids, a state and ``last_only`` to (1, T or 1, V) logits and the new state.
        context: (T,) ids to condition on (at least one, e.g. ``<bos>``).
        max_new_tokens: stop after this many tokens.
        eos_id: stop after sampling this token (it is included in the result).
        temperature: divide logits by this (> 0; unused when ``greedy``); lower is more conservative.
        top_k: sample among the ``top_k`` most likely tokens only.
        top_p: sample from the nucleus of probability mass ``top_p``.
        greedy: take the most likely token instead of sampling.
        generator: random generator for reproducible sampling.
        stop_at_eos: stop at ``eos_id``; otherwise go on with a new line (up to ``max_new_tokens``).
        line_start_id: id fed after ``eos_id`` when going on (``<bos>``, as in the training streams).

    Returns:
        The new token ids.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p, greedy)
    if context.dim() != 1 or context.numel() == 0:
        raise ValueError(f"`context` must be a non-empty 1-D tensor of ids, got shape {tuple(context.shape)}.")
    logits, state = net(context.unsqueeze(0), None, last_only=True)  # (1, 1, V): the prompt's logits unused
    new: list[int] = []
    for _ in range(max_new_tokens):
        last = logits[:, -1].float()  # (1, V)
        if greedy:
            token = last.argmax(-1)
        else:
            probs = filter_logits(last / temperature, top_k, top_p).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        new.append(int(token))
        at_eos = eos_id is not None and new[-1] == eos_id
        if (at_eos and stop_at_eos) or len(new) == max_new_tokens:
            break
        step = token.view(1, 1)
        if at_eos and line_start_id is not None:  # a new line starts as in training: <eos> then <bos>
            step = torch.tensor([[new[-1], line_start_id]], device=token.device)
        logits, state = net(step, state, last_only=True)  # one or two steps: (1, 1, V)
    return new
