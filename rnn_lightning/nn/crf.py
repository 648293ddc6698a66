"""Linear-chain CRF over per-token tag scores (B, T, C), the output layer of a BiLSTM-CRF tagger (Lample et al. 2016).

A tag path ``y`` of length ``L`` scores ``start[y_0] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t]
+ end[y_{L-1}]``; ``p(y | x)`` is its softmax over all ``C ** L`` paths, summed by the forward algorithm.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnn_lightning.nn.checks import check_choice
from rnn_lightning.nn.crf_inference import (
    RENORM,
    forward_backward,
    k_best_viterbi,
    log_partition,
    log_sums,
    path_log_posteriors,
)

Reduction = Literal["token_mean", "sum", "mean", "none"]

REDUCTIONS = ("token_mean", "sum", "mean", "none")
# Score of a forbidden start/transition/end in the likelihood: exp(-1e4) is exactly 0 in float32 and float64, so
# forbidden paths drop out of the partition, yet the value stays finite (no NaN gradients, a finite loss for a gold
# path that breaks the rules). Viterbi and the posterior methods use -inf instead, so a decoded path never takes a
# forbidden step and a forbidden tag's marginal is exactly 0.
FORBIDDEN = -1e4


class CRF(nn.Module):
    """Linear-chain conditional random field: training loss (negative log-likelihood), Viterbi decoding, and the
    posterior's confidences: per-token marginals, the k best paths and span probabilities.

    Parameters (initialised uniform(-0.1, 0.1), as pytorch-crf does): ``start`` (C) and ``end`` (C) score the first
    and last tag of a sequence, ``transitions`` (C, C) scores tag ``i`` followed by tag ``j`` at ``[i, j]``.
    Forbidden moves (``allowed_*`` False; :func:`rnn_lightning.functional.allowed_transitions` builds the masks of a
    tag scheme) score ``-1e4`` in the likelihood (a gold path through one gets a finite, very large loss) and are never
    decoded: the constructor checks that every length has an allowed path. The CRF knows nothing of tag schemes, only
    of these masks. Sequences are right-padded: ``mask`` is True on real tokens, and each sequence ends (and gets
    its ``end`` score) at its own last real token. Emissions must be finite: rule a tag out with e.g. -1e4, not -inf.

    Sums run in float32 for half/bfloat16 inputs and in float64 when emissions or parameters are double. The
    partition's gradient comes from a hand-written backward algorithm (first-order only: no double backward), with
    the forward sums renormalised every 16 steps so float32 gradients stay accurate on long sequences. The loops run
    over T (not over the batch); memory is linear in T: at peak about ``3 * B * T * C**2`` floats for the likelihood
    and its gradient, ``B * T * C**2`` floats plus ``3 * B * T * C`` int64 for :meth:`decode` (and for
    :meth:`marginals` and :meth:`span_probabilities`, in floats), plus ``B * T * C * k`` int64 for :meth:`decode_top_k`.

    Args:
        num_tags: number of tags (C).
        allowed_transitions: optional (C, C) bool tensor, ``[i, j]`` True when tag ``j`` may follow tag ``i``.
        allowed_start: optional (C,) bool tensor, True for the tags a sequence may start with.
        allowed_end: optional (C,) bool tensor, True for the tags a sequence may end with.

    Example:
        >>> import torch
        >>> # tags O, B-PER, I-PER (IOB2): I-PER only after B-PER or I-PER, so never first
        >>> trans = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])  # [from, to]
        >>> crf = CRF(3, trans, allowed_start=torch.tensor([True, True, False]))
        >>> emissions, mask = torch.randn(2, 4, 3), torch.tensor([[True] * 4, [True, True, False, False]])
        >>> loss = crf(emissions, torch.zeros(2, 4, dtype=torch.long), mask)  # mean NLL per real token
        >>> loss.shape, crf.decode(emissions, mask).shape
        (torch.Size([]), torch.Size([2, 4]))
        >>> probs = crf.marginals(emissions, mask)  # (B, T, C), rows sum to 1 on real tokens
        >>> probs[:, 0, 2].tolist()  # I-PER may not start a sequence
        [0.0, 0.0]
        >>> paths, log_probs = crf.decode_top_k(emissions, mask, k=3)  # (B, k, T), (B, k), best first
        >>> bool((paths[:, 0] == crf.decode(emissions, mask)).all())
        True
    """

    def __init__(
        self,
        num_tags: int,
        allowed_transitions: Tensor | None = None,
        *,
        allowed_start: Tensor | None = None,
        allowed_end: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"`num_tags` must be a positive integer, got {num_tags!r}.")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags))  # (C,)
        self.end = nn.Parameter(torch.empty(num_tags))  # (C,)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (C, C) [from, to]
        masks = {}
        for name, value, shape in (
            ("allowed_start", allowed_start, (num_tags,)),
            ("allowed_transitions", allowed_transitions, (num_tags, num_tags)),
            ("allowed_end", allowed_end, (num_tags,)),
        ):
            masks[name] = _check_bool_mask(name, value, shape)
        _check_some_path(masks["allowed_start"], masks["allowed_transitions"], masks["allowed_end"])
        for name, value in masks.items():
            self.register_buffer(name, value)  # persistent: a saved model keeps its constraints
        self.reset_parameters()

    @property
    def constrained(self) -> bool:
        """Whether any start, transition or end is forbidden."""
        return not all(bool(m.all()) for m in (self.allowed_start, self.allowed_transitions, self.allowed_end))

    def reset_parameters(self) -> None:
        """Draw ``start``, ``end`` and ``transitions`` from uniform(-0.1, 0.1)."""
        for p in (self.start, self.end, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.constrained}"

    # -- public API -------------------------------------------------------------------------------------------------
    def forward(
        self,
        emissions: Tensor,
        tags: Tensor,
        mask: Tensor | None = None,
        reduction: Reduction = "token_mean",
        check_values: bool = True,
    ) -> Tensor:
        """Negative log-likelihood of the gold tags: the training loss.

        Args:
            emissions: (B, T, C) unnormalised tag scores, e.g. a BiLSTM's projected outputs.
            tags: (B, T) int64 gold tags in ``[0, C)`` (any value, e.g. -100, on padded positions).
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.
            reduction: ``"token_mean"`` (summed NLL / number of real tokens, the scale of a token-mean
                cross-entropy), ``"sum"``, ``"mean"`` (over sequences) or ``"none"`` (B,).
            check_values: check ``mask`` and ``tags`` values (:meth:`check_values`); ``False`` for batches already
                checked on the CPU, since on a GPU the check waits for the GPU.

        Returns:
            The reduced NLL, () or (B,) for ``"none"``, in float32 (float64 for double inputs).
        """
        check_choice("reduction", reduction, REDUCTIONS)
        emissions, tags, mask = self._check(emissions, tags, mask, check_values)
        nll = -self._log_likelihood(emissions, tags, mask)  # (B,)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        return nll.sum() / mask.sum()

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-sequence ``log p(tags | emissions)``.

        Args:
            emissions: (B, T, C) unnormalised tag scores.
            tags: (B, T) int64 gold tags in ``[0, C)`` (any value on padded positions).
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.

        Returns:
            (B,) log-likelihoods, in float32 (float64 for double inputs).
        """
        emissions, tags, mask = self._check(emissions, tags, mask)
        return self._log_likelihood(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """Viterbi: the highest-scoring allowed tag path of every sequence, batched (no gradient).

        Args:
            emissions: (B, T, C) unnormalised tag scores.
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.

        Returns:
            (B, T) int64 best paths. Padded positions hold 0, a real tag index: select real ones with ``paths[mask]``.
        """
        emissions, _, mask = self._check(emissions, None, mask)
        start, transitions, end = self._scores(emissions.dtype, float("-inf"))
        batch, steps, num_tags = emissions.shape
        score = start + emissions[:, 0]  # (B, C) best score of a path ending in each tag
        # pointers[:, t, j]: the tag at t of the best path that is at tag j at t + 1; the last step points to itself.
        pointers = []
        for step in self._steps(emissions, mask, transitions).unbind(1):  # each (B, C, C) [to, from]
            candidates = score.unsqueeze(1) + step  # (B, C, C) [to, from]
            # argmax + amax over the last dim: on CPU, max(dim) with indices is erratically slow with threads.
            pointers.append(candidates.argmax(dim=2))  # (B, C)
            score = candidates.amax(dim=2)  # (B, C)
        pointers.append(torch.arange(num_tags, device=emissions.device).expand(batch, num_tags))
        pointers = torch.stack(pointers, dim=1)  # (B, T, C)
        best_last = (score + end).argmax(dim=1)  # (B,)
        # Padded steps are identity maps (see `_steps`), so following pointers back from T - 1 keeps `best_last` up to
        # each sequence's own last token. Backtrace by pointer doubling: after the round with offset d, pointers[:, t]
        # maps the tag at min(t + 2d, T - 1) to the tag at t; log2(T) batched gathers instead of T dependent ones.
        offset = 1
        while offset < steps:
            pointers = torch.cat([pointers[:, :-offset].gather(2, pointers[:, offset:]), pointers[:, -offset:]], dim=1)
            offset *= 2
        paths = pointers.gather(2, best_last.view(batch, 1, 1).expand(batch, steps, 1)).squeeze(2)  # (B, T)
        return paths.masked_fill_(~mask, 0)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-token tag probabilities ``p(y_t = c | emissions)``, summed over all allowed paths by forward-backward.

        Args:
            emissions: (B, T, C) unnormalised tag scores.
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.

        Returns:
            (B, T, C) probabilities, in float32 (float64 for double inputs): each real token's row sums to 1, a tag
            that no allowed path puts at a position (e.g. ``I-X`` first in IOB2) gets exactly 0, and padded
            positions are all 0.
        """
        emissions, _, mask = self._check(emissions, None, mask)
        alphas, betas, _ = forward_backward(*self._inference_scores(emissions, mask))  # (B, T, C) each
        return torch.softmax(alphas + betas, dim=2).masked_fill_(~mask.unsqueeze(2), 0.0)

    @torch.no_grad()
    def decode_top_k(self, emissions: Tensor, mask: Tensor | None = None, *, k: int) -> tuple[Tensor, Tensor]:
        """k-best Viterbi: the ``k`` highest-scoring allowed tag paths of every sequence, best first.

        ``k=1`` gives the path of :meth:`decode`. Ties between equal scores may come in either order.

        Args:
            emissions: (B, T, C) unnormalised tag scores.
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.
            k: number of paths per sequence (a positive int).

        Returns:
            ``paths`` (B, k, T) int64, 0 on padded positions, and ``log_probs`` (B, k): each path's
            ``log p(path | emissions)``, in float32 (float64 for double inputs). A sequence with fewer than ``k``
            allowed paths fills the rest with tag 0 and ``-inf``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int (the number of paths), got {k!r}. Pass e.g. k=5.")
        emissions, _, mask = self._check(emissions, None, mask)
        scores = self._inference_scores(emissions, mask)
        paths, best = k_best_viterbi(*scores, k)  # (B, k, T), (B, k)
        return paths.masked_fill_(~mask.unsqueeze(1), 0), best - log_partition(*scores).unsqueeze(1)

    @torch.no_grad()
    def span_probabilities(self, emissions: Tensor, tags: Tensor, spans: Tensor, mask: Tensor | None = None) -> Tensor:
        """The probability that tokens ``start..end`` of a sequence carry exactly ``tags[start..end]``: the
        confidence of a predicted span, e.g. an entity of the :meth:`decode` path.

        Computed from forward-backward as ``p(y_start) * prod p(y_t | y_{t-1})`` (the posterior is a Markov chain).
        In IOBES/BILOU the span's tags fix the span; in IOB1/IOB2 a path with these tags may still continue the span
        past ``end`` (an ``I-X`` next), so there the value bounds the span's own probability from above.

        Args:
            emissions: (B, T, C) unnormalised tag scores.
            tags: (B, T) int64 tag paths in ``[0, C)`` on real tokens (any value on padded positions).
            spans: (N, 3) or wider int64 rows ``[row, start, end (inclusive), ...]``, e.g. the (N, 4)
                ``[row, start, end, type]`` of :func:`rnn_lightning.functional.extract_spans`, on real tokens.
            mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True; None means no padding.

        Returns:
            (N,) probabilities, in float32 (float64 for double inputs); 0 for tags that take a forbidden move.
        """
        emissions, tags, mask = self._check(emissions, tags, mask)
        row, start, stop = self._check_spans(spans, mask)  # (N,) each
        first, steps, end = self._inference_scores(emissions, mask)
        alphas, betas, _ = forward_backward(first, steps, end)
        marginal, following = path_log_posteriors(steps, alphas, betas, tags.masked_fill(~mask, 0))  # (B, T) each
        # Sum following over (start, stop] by differences of float64 running sums; a -inf term (counted apart,
        # since -inf - -inf is NaN) makes the span impossible.
        blocked = torch.isinf(following)  # (B, T)
        sums = following.masked_fill(blocked, 0.0).double().cumsum(dim=1)  # (B, T)
        blocks = blocked.cumsum(dim=1)  # (B, T)
        log_probs = marginal[row, start].double() + sums[row, stop] - sums[row, start]  # (N,)
        log_probs = log_probs.masked_fill(blocks[row, stop] > blocks[row, start], float("-inf"))
        return log_probs.exp().to(emissions.dtype)

    # -- internals --------------------------------------------------------------------------------------------------
    def _inference_scores(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``first`` (B, C), ``steps`` (B, T - 1, C, C) and ``end`` (C) with forbidden moves at ``-inf``, as the
        functions of :mod:`rnn_lightning.nn.crf_inference` take them."""
        start, transitions, end = self._scores(emissions.dtype, float("-inf"))
        return start + emissions[:, 0], self._steps(emissions, mask, transitions), end

    def _check_spans(self, spans: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``row``, ``start``, ``end`` (N,) of ``spans``, or a ``ValueError``/``TypeError`` naming it."""
        if not isinstance(spans, Tensor) or spans.dtype != torch.long or spans.dim() != 2 or spans.shape[1] < 3:
            got = f"{spans.dtype} {tuple(spans.shape)}" if isinstance(spans, Tensor) else type(spans).__name__
            raise TypeError(
                f"`spans` must be an int64 (N, 3) or wider tensor of [row, start, end (inclusive), ...], got {got}. "
                "Pass e.g. the output of `rnn_lightning.functional.extract_spans`."
            )
        spans = spans.to(mask.device)
        row, start, end = spans[:, 0], spans[:, 1], spans[:, 2]
        batch, steps = mask.shape
        length = mask.sum(dim=1)  # (B,)
        inside = (row >= 0) & (row < batch)
        fits = inside & (start >= 0) & (start <= end) & (end < length[row.clamp(0, batch - 1)])
        if not bool(fits.all()):
            bad = spans[~fits][0].tolist()
            raise ValueError(
                f"`spans` rows must be [row, start, end] with 0 <= row < B={batch} and 0 <= start <= end < that "
                f"row's length (its True count in `mask`), got {bad[:3]}. Pass spans of real tokens, e.g. from "
                "`extract_spans(tags, mask, ...)`."
            )
        return row, start, end

    def _scores(self, dtype: torch.dtype, forbidden: float) -> tuple[Tensor, Tensor, Tensor]:
        """``start`` (C), ``transitions`` (C, C), ``end`` (C) in ``dtype``, forbidden entries set to ``forbidden``."""
        return tuple(
            torch.where(allowed, param.to(dtype), forbidden)
            for param, allowed in (
                (self.start, self.allowed_start),
                (self.transitions, self.allowed_transitions),
                (self.end, self.allowed_end),
            )
        )

    def _steps(self, emissions: Tensor, mask: Tensor, transitions: Tensor) -> Tensor:
        """(B, T - 1, C, C): ``[:, t, j, i]`` scores tag i at t followed by tag j at t + 1; identity on padding.

        [to, from] puts the reduction of both loops on the contiguous last dim (faster on CPU). The log-semiring
        identity (0 on the diagonal, -inf off it) on padded steps carries forward and Viterbi scores (and pointers)
        through unchanged, so neither loop needs a per-step ``where``.
        """
        eye = torch.eye(emissions.shape[-1], dtype=torch.bool, device=emissions.device)  # (C, C)
        log_eye = torch.zeros((), dtype=emissions.dtype, device=emissions.device).masked_fill(~eye, float("-inf"))
        moves = transitions.t().contiguous() + emissions[:, 1:].unsqueeze(3)  # (B, T - 1, C, C) [to, from]
        keep = mask[:, 1:, None, None]  # (B, T - 1, 1, 1)
        if torch.is_grad_enabled() and moves.requires_grad:
            return torch.where(keep, moves, log_eye)  # saves only `keep` for backward
        return torch.where(keep, moves, log_eye, out=moves)  # no second (B, T - 1, C, C) tensor

    def _log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        start, transitions, end = self._scores(emissions.dtype, FORBIDDEN)
        # Gold path score; padded tags may hold anything (e.g. -100), so point them at tag 0 and mask their terms.
        tags = tags.masked_fill(~mask, 0)
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)  # (B,) each sequence's last real tag
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        moved = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T - 1)
        gold = (
            start[tags[:, 0]]
            + torch.where(mask, emitted, 0).sum(dim=1)
            + torch.where(mask[:, 1:], moved, 0).sum(dim=1)
            + end[last]
        )  # (B,)
        # Forward algorithm: alpha[:, j] = log-sum of the scores of all paths so far that end in tag j.
        alpha = _ForwardAlgorithm.apply(start + emissions[:, 0], self._steps(emissions, mask, transitions))  # (B, C)
        log_partition = torch.logsumexp(alpha + end, dim=1)  # (B,)
        return gold - log_partition

    def check_values(self, mask: Tensor, tags: Tensor | None = None) -> None:
        """Raise a ValueError unless ``mask`` (B, T) is right-padded with ``mask[:, 0]`` all True and ``tags`` (B, T)
        lie in ``[0, num_tags)`` where ``mask`` is True. Reads the values on the host: on a GPU that waits for the
        GPU, so a training loop can check its batches on the CPU and pass ``check_values=False`` (as
        :class:`~rnn_lightning.SequenceTagger` does)."""
        checks = [mask[:, 0].all(), (mask[:, 1:] <= mask[:, :-1]).all()]
        if tags is not None:
            checks.append(((tags >= 0) & (tags < self.num_tags) | ~mask).all())
        first_ok, right_padded, *tags_ok = torch.stack(checks).tolist()  # one device sync for all value checks
        if not first_ok:
            raise ValueError(
                "`mask[:, 0]` must be all True (every sequence has at least one token), got a False in the first "
                "column. Drop empty sequences from the batch."
            )
        if not right_padded:
            raise ValueError(
                "`mask` must be right-padded (each row True then False), got a True after a False. Put the padding "
                "at the end of each sequence."
            )
        if tags_ok and not tags_ok[0]:
            bad = tags[mask & ((tags < 0) | (tags >= self.num_tags))]
            raise ValueError(
                f"`tags` on real tokens must lie in [0, num_tags={self.num_tags}), got {bad[:5].tolist()}. Check the "
                "label vocabulary, or set `mask` False where `tags` holds a padding value."
            )

    def _check(
        self, emissions: Tensor, tags: Tensor | None, mask: Tensor | None, check_values: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Validate shapes and values; return emissions in the compute dtype and a bool mask."""
        if not isinstance(emissions, Tensor) or emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            got = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions).__name__
            raise ValueError(
                f"`emissions` must be a (B, T, num_tags={self.num_tags}) tensor, got shape {got}. Project the encoder"
                f" output to {self.num_tags} scores per token, e.g. with nn.Linear(hidden, {self.num_tags})."
            )
        if not emissions.is_floating_point():
            raise TypeError(f"`emissions` must be a floating-point tensor, got {emissions.dtype}. Use `.float()`.")
        batch, steps, _ = emissions.shape
        if steps == 0:
            raise ValueError("`emissions` must have at least one time step (T >= 1), got T = 0.")
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=emissions.device)
        elif mask.shape != (batch, steps):
            raise ValueError(
                f"`mask` must have the (B, T) shape of `emissions`, {(batch, steps)}, got {tuple(mask.shape)}."
            )
        elif mask.dtype != torch.bool:
            raise TypeError(f"`mask` must be a bool tensor (True on real tokens), got {mask.dtype}. Use `mask.bool()`.")
        if tags is not None:
            if tags.shape != (batch, steps):
                raise ValueError(
                    f"`tags` must have the (B, T) shape of `emissions`, {(batch, steps)}, got {tuple(tags.shape)}."
                )
            if tags.dtype != torch.long:
                raise TypeError(f"`tags` must be an int64 tensor, got {tags.dtype}. Use `tags.long()`.")
        if check_values:
            self.check_values(mask, tags)
        dtype = torch.promote_types(torch.promote_types(emissions.dtype, self.transitions.dtype), torch.float32)
        return emissions.to(dtype), tags, mask


class _ForwardAlgorithm(torch.autograd.Function):
    """Forward algorithm ``alpha_{t+1}[j] = logsumexp_i(alpha_t[i] + steps[:, t, j, i])``; backward by the backward
    algorithm.

    Autograd through the T-step loop would record ~3 nodes per step and save every (B, C, C) sum; here the loop runs
    without autograd, saves the (B, T, C) alphas, and the backward pass is one vectorised softmax plus a loop of T small
    vector-matrix products: the gradient of ``alpha_{t+1}[j]`` w.r.t. ``alpha_t[i]`` (and ``steps[:, t, j, i]``) is
    ``probs[:, t, j, i] = exp(alpha_t[i] + steps[:, t, j, i] - alpha_{t+1}[j])``, which sums to 1 over ``i``.

    The alphas are renormalised every ``RENORM`` steps (:func:`~rnn_lightning.nn.crf_inference.log_sums`; the shifts
    add back at the end), so ``probs`` keeps its float32 precision however long the sequence (unshifted alphas grow
    with T, and float32 loses the small differences ``probs`` is made of).
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, steps: Tensor) -> Tensor:  # (B, C), (B, S, C, C) -> (B, C)
        alphas, shifts = log_sums(alpha, steps.unbind(1))  # each step (B, C, C) [to, from]
        # shift[:, t]: what was subtracted from the output of step t (0 on most steps).
        shift = alpha.new_zeros(steps.shape[:2])  # (B, S)
        if shifts:
            shift[:, RENORM - 1 :: RENORM] = torch.cat(shifts, dim=1)
        ctx.save_for_backward(torch.stack(alphas, dim=1), steps, shift)  # (B, S + 1, C)
        return alphas[-1] + shift.sum(dim=1, keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # (B, C) -> (B, C), (B, S, C, C)
        alphas, steps, shift = ctx.saved_tensors
        outputs = alphas[:, 1:] + shift.unsqueeze(2)  # (B, S, C) each step's logsumexp before its shift
        # -inf steps (padding identity) give probs ~0, not NaN: the alphas stay finite (forbidden moves score -1e4).
        # The clamp (exp(-87) = 1.6e-38, float32's smallest normal) moves probs by < 2e-38 but keeps exp off its slow
        # path for underflowing arguments, which the padding makes common.
        logits = alphas[:, :-1].unsqueeze(2) + steps - outputs.unsqueeze(3)  # (B, S, C, C)
        probs = logits.clamp_min_(-87.0).exp_()  # (B, S, C, C)
        grads = [grad]  # grads[k]: d loss / d alpha_{S - k}
        for prob in reversed(probs.unbind(1)):  # each (B, C, C) [to, from]
            grads.append(torch.bmm(grads[-1].unsqueeze(1), prob).squeeze(1))  # (B, C)
        grads.reverse()
        if len(grads) > 1:  # S > 0
            probs.mul_(torch.stack(grads[1:], dim=1).unsqueeze(3))  # (B, S, C, C): d loss / d steps
        return grads[0], probs


def _check_bool_mask(name: str, value: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    """``value`` as a bool tensor of ``shape`` (all True when None), or a ``ValueError``/``TypeError`` naming it."""
    if value is None:
        return torch.ones(shape, dtype=torch.bool)
    if not isinstance(value, Tensor) or value.dtype != torch.bool:
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"`{name}` must be a bool tensor (True = allowed), got {got}. Use `.bool()`.")
    if tuple(value.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape} (num_tags), got {tuple(value.shape)}.")
    return value.detach().clone()


def _check_some_path(start: Tensor, transitions: Tensor, end: Tensor, max_length: int = 10_000) -> None:
    """Raise a ``ValueError`` if, for some length L <= ``max_length``, every tag path of length L is forbidden.

    Iterates the set of tags an allowed path of length L can end in (a bitset), until the set repeats.
    """
    successors = [sum(1 << j for j in range(len(row)) if row[j]) for row in transitions.tolist()]
    reach = sum(1 << j for j, ok in enumerate(start.tolist()) if ok)
    ends = sum(1 << j for j, ok in enumerate(end.tolist()) if ok)
    seen = set()
    for length in range(1, max_length + 1):
        if not reach & ends:
            raise ValueError(
                f"`allowed_start`, `allowed_transitions` and `allowed_end` forbid every tag path of length {length}, "
                "so no sequence of that length could be scored or decoded. Allow more moves (e.g. O -> O, start -> O, "
                "O -> end); `rnn_lightning.functional.allowed_transitions(labels, scheme)` builds consistent "
                "masks."
            )
        if reach in seen:
            return
        seen.add(reach)
        nxt, i = 0, 0
        while reach >> i:
            if reach >> i & 1:
                nxt |= successors[i]
            i += 1
        reach = nxt
