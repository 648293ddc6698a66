"""Perplexity of a language model, computed stably whatever the dtype of the logits.

The log-probabilities come from ``log_softmax`` computed in float32 from the logits
(float64 logits stay float64), and the per-token negative log-likelihoods are summed in float64. Computing
``softmax`` in the input dtype and taking its ``log`` afterwards, as ``torchmetrics.text.Perplexity`` does,
rounds every probability below ~6e-8 to 0 in float16, which makes the perplexity ``inf``.

This module is pure torch: it imports neither lightning nor torchmetrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnn_lightning.constants import IGNORE_INDEX

__all__ = ["mean_nll", "nll_sum_and_count", "perplexity", "perplexity_from_nll"]


def _shape(t: Tensor | torch.Size) -> str:
    return str(tuple(t.shape if isinstance(t, Tensor) else t))


def _is_integer_tensor(t: object) -> bool:
    return isinstance(t, Tensor) and not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _check_logits_and_target(logits: Tensor, target: Tensor, ignore_index: int | None, caller: str) -> None:
    """Raise a ``TypeError``/``ValueError`` naming the offending argument and the fix."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(
            f"{caller}: `logits` must be a floating point tensor of unnormalised scores, got {got}. "
            "Pass the model output before any argmax/softmax."
        )
    if not _is_integer_tensor(target):
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(
            f"{caller}: `target` must be an integer tensor of class indices, got {got}. "
            "Pass token ids, e.g. `target.long()`."
        )
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"{caller}: `ignore_index` must be an int or None, got {ignore_index!r}.")
    if logits.ndim == 0:
        raise ValueError(
            f"{caller}: `logits` must have a last (vocabulary) dimension, got a 0-d tensor. "
            "Pass logits of shape (..., vocab_size)."
        )
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"{caller}: `target` must have the shape of `logits` without its last (vocabulary) dimension, "
            f"expected {_shape(logits.shape[:-1])}, got {_shape(target)}. Pass targets aligned with logits."
        )
    vocab_size = logits.shape[-1]
    bad = (target < 0) | (target >= vocab_size)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bool(bad.any()):  # one host sync; an out-of-range index would otherwise be a CUDA device assert
        value = int(target[bad][0])
        hint = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
        fix = "Pass `ignore_index` for padding ids" if ignore_index is None else "Check the vocabulary size"
        raise ValueError(
            f"{caller}: `target` values must lie in [0, {vocab_size}) (the vocabulary size is the last "
            f"dimension of `logits`){hint}, got {value}. {fix}."
        )


_CPU_CHUNK_LOGITS = 2**20


def _gpu_bytes_per_logit(dtype: torch.dtype, compute_dtype: torch.dtype) -> int:
    """Working memory per logit of ``log_softmax(chunk, dtype=compute_dtype)`` on a GPU: its output, plus an upcast
    copy of the chunk unless the kernel reads the input dtype itself (CUDA does so for float16 only, not bfloat16)."""
    size = torch.finfo(compute_dtype).bits // 8
    return size if dtype == torch.float16 else 2 * size


def _nll_sum_and_count(
    logits: Tensor, target: Tensor, ignore_index: int | None, caller: str
) -> tuple[Tensor, Tensor]:
    _check_logits_and_target(logits, target, ignore_index, caller)
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (N, V)
    flat_target = target.reshape(-1).long()  # (N,)
    ignore = IGNORE_INDEX if ignore_index is None else ignore_index  # a negative id cannot occur: range checked
    # Row chunks: the float32 log-probabilities of fp16/bf16 logits cost 4 bytes per logit, and a full-size
    # float32 temporary is slow to allocate. On the CPU, chunks of about a million logits stay in cache (faster
    # than one pass: benchmarks/bench_perplexity.py); on a GPU, few large chunks keep launches few while the
    # working memory stays at the input's own size.
    rows, width = flat_logits.shape
    if flat_logits.device.type == "cpu":
        rows = max(1, _CPU_CHUNK_LOGITS // max(width, 1))
    elif flat_logits.dtype != compute_dtype:
        rows = max(1, rows * flat_logits.element_size() // _gpu_bytes_per_logit(flat_logits.dtype, compute_dtype))
    nll_sum = sum(
        F.nll_loss(  # log_softmax, never log(softmax); with dtype= CUDA reads fp16 in the float32 kernel itself
            # (bf16 is copied to float32 first); 0 where ignored
            F.log_softmax(chunk, dim=-1, dtype=compute_dtype), chunk_target, ignore_index=ignore, reduction="none"
        ).sum(dtype=torch.float64)
        for chunk, chunk_target in zip(flat_logits.split(rows), flat_target.split(rows))
    ) + torch.zeros((), dtype=torch.float64, device=flat_logits.device)  # a tensor even with no rows
    if ignore_index is None:
        count = torch.tensor(flat_target.numel(), dtype=torch.int64, device=flat_target.device)
    else:
        count = (flat_target != ignore_index).sum(dtype=torch.int64)  # ()
    return nll_sum, count


def nll_sum_and_count(
    logits: Tensor, target: Tensor, ignore_index: int | None = None
) -> tuple[Tensor, Tensor]:
    """Summed negative log-likelihood of ``target`` under ``logits`` and the number of scored tokens.

    The per-token NLL is computed with ``log_softmax`` in float32 (float64 for float64 logits), so float16
    and bfloat16 logits neither overflow nor underflow, and it is summed in float64. The pair can be
    accumulated over batches (and summed across processes) before :func:`perplexity_from_nll`.

    Args:
        logits: Unnormalised scores of shape ``(..., V)``, any floating point dtype.
        target: Class indices of shape ``(...)`` (the shape of ``logits`` without its last dimension),
            any integer dtype, with values in ``[0, V)`` or equal to ``ignore_index``.
        ignore_index: Target value (e.g. the padding id) that is neither scored nor counted.

    Returns:
        ``(nll_sum, count)``: a float64 scalar tensor and an int64 scalar tensor. ``count`` is 0 when every
        target equals ``ignore_index``.

    Raises:
        TypeError: If ``logits`` is not floating point or ``target`` is not an integer tensor.
        ValueError: If the shapes do not match or a target lies outside ``[0, V)``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(2, 3, 4)  # uniform over 4 classes: every token costs log(4)
        >>> target = torch.tensor([[0, 1, 2], [3, 0, -100]])
        >>> nll_sum_and_count(logits, target, ignore_index=-100)
        (tensor(6.9315, dtype=torch.float64), tensor(5))
    """
    return _nll_sum_and_count(logits, target, ignore_index, caller="nll_sum_and_count")


def mean_nll(nll_sum: Tensor | float, count: Tensor | int) -> Tensor:
    """Mean negative log-likelihood per token ``nll_sum / count``, in nats: the log-perplexity, in float64.

    Log this rather than ``log(perplexity)``: a float32 perplexity is ``inf`` once the mean NLL passes ~88.7 nats,
    the mean NLL itself stays finite.

    Args:
        nll_sum: Summed NLL in nats (>= 0), a scalar tensor or number, e.g. from
            ``F.cross_entropy(..., reduction="sum")``.
        count: Number of scored tokens, a positive integer (int or integer scalar tensor).

    Returns:
        A float64 scalar tensor.

    Raises:
        TypeError: If ``count`` is not an integer.
        ValueError: If an argument is not a scalar, ``count`` is not positive or ``nll_sum`` is negative.

    Example:
        >>> mean_nll(1000.0, 10)
        tensor(100., dtype=torch.float64)
    """
    return _mean_nll(nll_sum, count, caller="mean_nll")


def _mean_nll(nll_sum: Tensor | float, count: Tensor | int, caller: str) -> Tensor:
    if isinstance(count, bool) or not (isinstance(count, int) or _is_integer_tensor(count)):
        got = count.dtype if isinstance(count, Tensor) else type(count).__name__
        raise TypeError(
            f"{caller}: `count` must be an integer token count (int or integer tensor), got {got}. Pass e.g. "
            "`(target != ignore_index).sum()`."
        )
    nll_sum = torch.as_tensor(nll_sum, dtype=torch.float64)
    count = torch.as_tensor(count, device=nll_sum.device)
    for name, value in (("nll_sum", nll_sum), ("count", count)):
        if value.numel() != 1:
            raise ValueError(
                f"{caller}: `{name}` must be a scalar, got shape {_shape(value)}. "
                "Sum over tokens first (e.g. reduction='sum')."
            )
    if not bool(count > 0):
        raise ValueError(
            f"{caller}: `count` must be positive, got {count.item()}. It is the number of scored tokens: zero "
            "means no token was scored (no update, or every target equal to ignore_index), so there is no "
            "perplexity to report; a negative one comes from a wrong count upstream."
        )
    if bool(nll_sum < 0):
        raise ValueError(
            f"{caller}: `nll_sum` must be >= 0 (a sum of negative log-likelihoods), got {nll_sum.item()}. Pass the "
            "loss -log p (e.g. F.cross_entropy(..., reduction='sum')), not the log-likelihood log p."
        )
    return nll_sum.reshape(()) / count.reshape(())


def perplexity_from_nll(nll_sum: Tensor | float, count: Tensor | int) -> Tensor:
    """Perplexity ``exp(nll_sum / count)`` from a summed negative log-likelihood and a token count.

    Args:
        nll_sum: Summed NLL in nats (>= 0), a scalar tensor or number, e.g. from
            ``F.cross_entropy(..., reduction="sum")``.
        count: Number of scored tokens, a positive integer (int or integer scalar tensor).

    Returns:
        A float32 scalar tensor (computed in float64, returned in float32 like ``torchmetrics``; it is ``inf``
        once the mean NLL exceeds ~88.7 nats: log :func:`mean_nll` for a loss).

    Raises:
        TypeError: If ``count`` is not an integer.
        ValueError: If an argument is not a scalar, ``count`` is not positive or ``nll_sum`` is negative.

    Example:
        >>> import math
        >>> perplexity_from_nll(5 * math.log(4.0), 5)
        tensor(4.)
    """
    return torch.exp(_mean_nll(nll_sum, count, caller="perplexity_from_nll")).float()


def perplexity(logits: Tensor, target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Perplexity ``exp(mean NLL)`` of ``target`` under ``logits``, stable for float16/bfloat16 logits.

    Args:
        logits: Unnormalised scores of shape ``(..., V)``, any floating point dtype.
        target: Class indices of shape ``(...)``, any integer dtype, with values in ``[0, V)`` or equal to
            ``ignore_index``.
        ignore_index: Target value (e.g. the padding id) that is neither scored nor counted.

    Returns:
        A float32 scalar tensor (computed in float64, see :func:`perplexity_from_nll`).

    Raises:
        TypeError: If ``logits`` is not floating point or ``target`` is not an integer tensor.
        ValueError: If the shapes do not match, a target lies outside ``[0, V)``, or every target is ignored.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # (2 tokens, V=2)
        >>> perplexity(logits, torch.tensor([1, 0]))  # exp((log(2) + log(1 + e^-2)) / 2)
        tensor(1.5069)
    """
    nll_sum, count = _nll_sum_and_count(logits, target, ignore_index, caller="perplexity")
    if not bool(count > 0):
        raise ValueError(
            f"perplexity: every `target` value equals ignore_index={ignore_index} (or `target` is empty), so "
            "no token is scored. Pass at least one target that is not ignored."
        )
    return perplexity_from_nll(nll_sum, count)
