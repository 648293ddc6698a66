"""Sums and maxima over the tag paths of a linear-chain CRF: the renormalised forward algorithm (shared with the
training loss), forward-backward marginals, posterior path terms and k-best Viterbi.

The functions take the scores as :class:`~rnn_lightning.nn.CRF` lays them out: ``first`` (B, C) scores the first tag
(``start + emissions[:, 0]``), ``steps`` (B, T - 1, C, C) ``[:, t, j, i]`` scores tag ``i`` at ``t`` followed by tag
``j`` at ``t + 1`` (the log-semiring identity on padded steps, so each sequence ends at its own last token), and
``end`` (C) scores the last tag. With forbidden moves at ``-inf`` they get probability exactly 0 and are never
ranked. Pure torch; the loops run over T, never over the batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["RENORM", "forward_backward", "k_best_viterbi", "log_partition", "log_sums", "path_log_posteriors"]

# Every RENORM steps the forward sums are shifted down by their max, so they stay near 0 however long the sequence.
RENORM = 16


def log_sums(alpha: Tensor, steps: Iterable[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The forward algorithm ``alpha_{t+1}[j] = logsumexp_i(alpha_t[i] + step_t[j, i])``, renormalised.

    Unshifted sums grow about linearly in T (at T = 100k their float32 spacing would be ~0.03); after every
    ``RENORM``-th step the new sums are shifted down by their max, which keeps them small.

    Args:
        alpha: (B, C) log-sums at the first position.
        steps: each (B, C, C) ``[to, from]``.

    Returns:
        ``alphas``: the (B, C) log-sums at every position, shifted; ``shifts``: the (B, 1) amounts subtracted after
        steps ``RENORM - 1``, ``2 * RENORM - 1``, ... (the true last sums are ``alphas[-1] + sum(shifts)``).
    """
    alphas, shifts = [alpha], []
    for t, step in enumerate(steps):
        alphas.append(torch.logsumexp(alphas[-1].unsqueeze(1) + step, dim=2))  # (B, C)
        if t % RENORM == RENORM - 1:
            shifts.append(alphas[-1].amax(dim=1, keepdim=True))  # (B, 1)
            alphas[-1] = alphas[-1] - shifts[-1]
    return alphas, shifts


def forward_backward(first: Tensor, steps: Tensor, end: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Forward and backward log-sums at every position (each up to a per-position constant) and the log partition.

    The backward sums are the forward algorithm run backwards (transposed steps, from ``end``), so both stay small.

    Args:
        first: (B, C) scores of the first tag.
        steps: (B, T - 1, C, C) move scores ``[to, from]``, identity on padding.
        end: (C,) scores of the last tag.

    Returns:
        ``alphas`` (B, T, C): ``alphas[:, t, i]`` is the log-sum of the scores of the path prefixes that reach tag
        ``i`` at ``t``; ``betas`` (B, T, C): that of the suffixes after tag ``i`` at ``t`` (``end`` included), both
        up to a constant per (b, t); ``log_partition`` (B,).
    """
    moves = steps.unbind(1)
    alphas, shifts = log_sums(first, moves)
    betas, _ = log_sums(end.expand_as(first), (step.transpose(1, 2) for step in reversed(moves)))
    betas.reverse()
    return torch.stack(alphas, dim=1), torch.stack(betas, dim=1), _log_partition(alphas, shifts, end)


def log_partition(first: Tensor, steps: Tensor, end: Tensor) -> Tensor:
    """(B,) log-sum of the scores of all allowed paths (the forward half of :func:`forward_backward`)."""
    alphas, shifts = log_sums(first, steps.unbind(1))
    return _log_partition(alphas, shifts, end)


def _log_partition(alphas: list[Tensor], shifts: list[Tensor], end: Tensor) -> Tensor:
    return torch.logsumexp(alphas[-1] + end, dim=1) + sum(shift.squeeze(1) for shift in shifts)  # (B,)


def path_log_posteriors(steps: Tensor, alphas: Tensor, betas: Tensor, tags: Tensor) -> tuple[Tensor, Tensor]:
    """Along a tag path: ``log p(y_t = tags_t)`` and ``log p(y_t = tags_t | y_{t-1} = tags_{t-1})`` at every ``t``.

    The posterior of a linear-chain CRF is a Markov chain, so the probability that positions ``s..e`` carry
    ``tags[s..e]`` is ``p(y_s = tags_s) * prod_{t=s+1..e} p(y_t = tags_t | y_{t-1} = tags_{t-1})``. Each term is a
    softmax over one (B, C) row, so it keeps its precision however long the sequence.

    Args:
        steps: (B, T - 1, C, C) move scores ``[to, from]``.
        alphas, betas: (B, T, C) from :func:`forward_backward`.
        tags: (B, T) int64 tag path.

    Returns:
        ``marginal`` (B, T) and ``following`` (B, T) log-probabilities (``following[:, 0]`` is ``marginal[:, 0]``);
        ``-inf`` where the path takes a forbidden step or leaves every allowed path.
    """
    marginal = torch.log_softmax(alphas + betas, dim=2).gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
    batch, moves, num_tags, _ = steps.shape
    if moves == 0:
        return marginal, marginal
    previous = tags[:, :-1, None, None].expand(batch, moves, num_tags, 1)  # (B, T - 1, C, 1)
    logits = steps.gather(3, previous).squeeze(3) + betas[:, 1:]  # (B, T - 1, C) over the next tag
    log_norm = torch.logsumexp(logits, dim=2)  # (B, T - 1); -inf where the previous tag ends no allowed path
    chosen = logits.gather(2, tags[:, 1:, None]).squeeze(2)  # (B, T - 1)
    following = torch.where(torch.isinf(log_norm), float("-inf"), chosen - log_norm)  # not -inf - -inf = NaN
    return marginal, torch.cat([marginal[:, :1], following], dim=1)


def k_best_viterbi(first: Tensor, steps: Tensor, end: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` highest-scoring allowed paths of every sequence, best first, and their scores.

    Each tag keeps its ``k`` best path prefixes (score, and a pointer to the entry it extends); a step ranks the
    ``C * k`` extensions into every tag, and the end ranks the ``C * k`` finished paths. Distinct entries are
    distinct prefixes, so the ``k`` paths are distinct. Padded (identity) steps carry every entry through.

    Args:
        first: (B, C) scores of the first tag.
        steps: (B, T - 1, C, C) move scores ``[to, from]``, identity on padding.
        end: (C,) scores of the last tag.
        k: number of paths.

    Returns:
        ``paths`` (B, k, T) int64 and ``scores`` (B, k), best first; where a sequence has fewer than ``k`` allowed
        paths, the extra rows score ``-inf`` and hold tag 0.
    """
    batch, num_tags = first.shape
    score = first.new_full((batch, num_tags, k), float("-inf"))  # (B, C, k) the k best prefixes ending in each tag
    score[:, :, 0] = first
    pointers = []  # pointers[t][:, j, r]: the flat (tag, rank) index of the entry that entry (j, r) extends
    for step in steps.unbind(1):  # each (B, C, C) [to, from]
        candidates = (score.unsqueeze(1) + step.unsqueeze(3)).flatten(2)  # (B, C, C * k) [to, (from, rank)]
        score, pointer = candidates.topk(k, dim=2)  # (B, C, k), sorted
        pointers.append(pointer)
    scores, entry = (score + end.unsqueeze(1)).flatten(1).topk(k, dim=1)  # (B, k) flat (tag, rank) indices
    tags = [torch.div(entry, k, rounding_mode="floor")]
    for pointer in reversed(pointers):
        entry = pointer.flatten(1).gather(1, entry)  # (B, k)
        tags.append(torch.div(entry, k, rounding_mode="floor"))
    tags.reverse()
    paths = torch.stack(tags, dim=2)  # (B, k, T)
    return paths.masked_fill_(torch.isinf(scores).unsqueeze(2), 0), scores
