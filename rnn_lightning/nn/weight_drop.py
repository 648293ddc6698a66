"""Weight drop: DropConnect on the hidden-to-hidden matrices of a fused ``torch.nn`` LSTM, GRU or RNN.

AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language Models", Sec. 2; salesforce/awd-lstm-lm
``weight_drop.py``) regularises the recurrence itself: each training forward zeroes a random share ``p`` of the
entries of every ``weight_hh_l{k}`` and scales the rest by ``1 / (1 - p)``. One mask per matrix per call, shared by
all time steps and all sequences of the batch, so the whole sequence still runs in one fused (cuDNN) kernel.

AWD's own code deletes the parameter and assigns a plain tensor in its place, which breaks on PyTorch >= 1.x
(the module's ``_flat_weights`` go stale, ``flatten_parameters`` warns on every call). fastai's ``WeightDropout``
keeps a raw copy under another name and silences the warnings. Here the parameters stay where ``torch.nn`` puts
them (same names, same ``state_dict``, what the optimizer and DDP see); the forward builds the dropped weights and
hands them to the module's own ``forward`` (:func:`rnn_lightning.compat.rnn_flat_weights`). When the parameters
sit in one cuDNN buffer, the dropped weights are laid out in one new buffer at the same offsets, which cuDNN's
``try_get_weight_buf`` accepts as it is: no copy inside cuDNN, no "not part of single contiguous chunk of memory"
warning (``tests/test_weight_drop.py``, marked ``gpu``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnn_lightning.compat import rnn_flat_weights
from rnn_lightning.nn.checks import check_dropout

__all__ = ["WeightDropGRU", "WeightDropLSTM", "WeightDropRNN", "check_weight_drop"]


def check_weight_drop(value: float) -> None:
    """Raise a ``ValueError`` unless ``0 <= value < 1``."""
    check_dropout("weight_drop", value, advice="AWD-LSTM uses 0.5; 0.0 turns it off.")


class _WeightDrop:
    """The forward shared by the three classes below (mixed in before the ``torch.nn`` class)."""

    weight_drop: float
    last_masks: dict[str, Tensor]
    _flat_weights_names: list[str]

    def _init_weight_drop(self, weight_drop: float) -> None:
        check_weight_drop(weight_drop)
        self.weight_drop = float(weight_drop)
        self.last_masks = {}  # name -> (G*H, H) bool keep-mask of the last training forward; for inspection

    def dropped_weights(self) -> list[Tensor]:
        """The flat weights with a fresh DropConnect mask on each ``weight_hh``; in one buffer when the parameters
        are (cuDNN's layout), else separate tensors."""
        raw = [getattr(self, name) for name in self._flat_weights_names]
        keep = 1.0 - self.weight_drop
        weights = []
        for name, w in zip(self._flat_weights_names, raw, strict=True):
            if name.startswith("weight_hh"):
                mask = torch.rand_like(w) < keep  # (G*H, H), one per call (rand_like is faster than bernoulli_ on CPUs)
                self.last_masks[name] = mask
                w = w * mask.to(w.dtype).div_(keep)
            weights.append(w)
        return _same_layout(raw, weights)

    def forward(self, input: Any, hx: Any = None) -> Any:  # noqa: A002 (torch's own argument name)
        """As ``torch.nn``'s forward; in training with ``weight_drop > 0`` on DropConnect'ed ``weight_hh``."""
        if not (self.training and self.weight_drop > 0.0):
            return super().forward(input, hx)  # type: ignore[misc]
        with rnn_flat_weights(self, self.dropped_weights()):  # type: ignore[arg-type]
            return super().forward(input, hx)  # type: ignore[misc]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_drop={self.weight_drop}"  # type: ignore[misc]


def _same_layout(raw: list[Tensor], weights: list[Tensor]) -> list[Tensor]:
    """``weights`` as views of one new buffer at the offsets ``raw`` has in its shared storage; unchanged when
    ``raw`` does not share one storage (CPU, or not flattened), where no fused kernel needs the buffer."""
    storage = raw[0].untyped_storage()
    if any(w.untyped_storage().data_ptr() != storage.data_ptr() or not w.is_contiguous() for w in raw):
        return weights
    order = sorted(range(len(raw)), key=lambda i: raw[i].storage_offset())
    pieces, end = [], 0
    for i in order:  # zeros fill any gap cuDNN left between matrices (alignment)
        start = raw[i].storage_offset()
        if start > end:
            pieces.append(weights[i].new_zeros(start - end))
        pieces.append(weights[i].reshape(-1))
        end = start + raw[i].numel()
    total = storage.nbytes() // raw[0].element_size()
    if total > end:
        pieces.append(weights[0].new_zeros(total - end))
    buffer = torch.cat(pieces)  # (total,)
    return [buffer[w.storage_offset():w.storage_offset() + w.numel()].view_as(w) for w in raw]


class WeightDropLSTM(_WeightDrop, nn.LSTM):
    """``torch.nn.LSTM`` with weight drop on its hidden-to-hidden matrices; a drop-in replacement.

    Same arguments, ``state_dict`` and outputs as ``nn.LSTM`` (identical in eval mode or with ``weight_drop=0``).
    In training each forward draws one Bernoulli keep-mask per ``weight_hh_l{k}`` (all layers and directions),
    shared by every time step and sequence, and scales the kept entries by ``1 / (1 - weight_drop)``; gradients
    reach the parameter through the mask. The masks of the last training forward are in ``last_masks``.

    Args:
        *args: as ``torch.nn.LSTM`` (``input_size``, ``hidden_size``, ``num_layers``, ...).
        weight_drop: probability of dropping each hidden-to-hidden weight (AWD-LSTM: 0.5).
        **kwargs: as ``torch.nn.LSTM`` (``batch_first``, ``dropout``, ``bidirectional``, ...).

    Example:
        >>> lstm = WeightDropLSTM(8, 16, num_layers=2, batch_first=True, weight_drop=0.5)
        >>> out, (h, c) = lstm(torch.randn(3, 5, 8))
        >>> tuple(out.shape), sorted(lstm.last_masks)
        ((3, 5, 16), ['weight_hh_l0', 'weight_hh_l1'])
    """

    def __init__(self, *args: Any, weight_drop: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_drop(weight_drop)


class WeightDropGRU(_WeightDrop, nn.GRU):
    """``torch.nn.GRU`` with weight drop on its hidden-to-hidden matrices (see :class:`WeightDropLSTM`)."""

    def __init__(self, *args: Any, weight_drop: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_drop(weight_drop)


class WeightDropRNN(_WeightDrop, nn.RNN):
    """``torch.nn.RNN`` (tanh or ReLU) with weight drop on its hidden-to-hidden matrices (see
    :class:`WeightDropLSTM`)."""

    def __init__(self, *args: Any, weight_drop: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_drop(weight_drop)
