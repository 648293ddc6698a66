"""Variable-length truncated BPTT windows, AWD-LSTM's rule, from a seeded ``torch.Generator``.

With a fixed window every token is the first of a window in the same place each epoch, so it never gets the
gradient from the steps before it. AWD-LSTM (Merity et al. 2017, Sec. 4.1; salesforce/awd-lstm-lm ``main.py``)
draws each window's length: the base is ``bptt`` with probability 0.95, else ``bptt / 2``; the length is
``max(5, int(Normal(base, 5)))`` (AWD leaves its ``bptt + 10`` cap commented out; ``max_length`` adds one). The
learning rate of that step is scaled by ``length / bptt``, so a short window does not weigh as much as a long one.

The generator's state is the whole state: save it with the checkpoint and a resumed run draws the same lengths.
Every DDP rank must use the same seed, so their streams move through the same windows.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

__all__ = ["BPTTWindow", "VariableBPTT"]


class BPTTWindow(NamedTuple):
    length: int
    """Steps in this window."""
    lr_scale: float
    """``length / bptt``: the factor for this step's learning rate."""


class VariableBPTT:
    """Draws window lengths ``max(min_length, int(Normal(base, std)))``, ``base = bptt`` w.p. ``p_full`` else
    ``bptt / 2``.

    Args:
        bptt: the base window length (AWD-LSTM: 70).
        p_full: probability of the full base length (AWD-LSTM: 0.95).
        std: standard deviation of the normal draw (AWD-LSTM: 5).
        min_length: shortest window (AWD-LSTM: 5).
        max_length: longest window; ``None`` for no cap (as AWD-LSTM runs).
        seed: seed of the generator (the same on every DDP rank).

    Example:
        >>> windows = VariableBPTT(70, seed=0)
        >>> window = windows.sample()
        >>> window.lr_scale == window.length / 70
        True
    """

    def __init__(self, bptt: int, *, p_full: float = 0.95, std: float = 5.0, min_length: int = 5,
                 max_length: int | None = None, seed: int = 0) -> None:
        for name, value in (("bptt", bptt), ("min_length", min_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < min_length):
            raise ValueError(f"`max_length` must be None or an integer >= min_length={min_length}, got "
                             f"{max_length!r}. AWD-LSTM runs uncapped (None).")
        if not 0.0 <= p_full <= 1.0:
            raise ValueError(f"`p_full` must be a probability in [0, 1], got {p_full!r}. AWD-LSTM uses 0.95.")
        if not std >= 0.0:
            raise ValueError(f"`std` must be >= 0, got {std!r}. AWD-LSTM uses 5; 0 gives fixed base lengths.")
        self.bptt, self.p_full, self.std = bptt, float(p_full), float(std)
        self.min_length, self.max_length = min_length, max_length
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> BPTTWindow:
        """The next window's length and learning-rate scale."""
        u = torch.rand((), generator=self.generator, dtype=torch.float64).item()
        z = torch.randn((), generator=self.generator, dtype=torch.float64).item()  # both drawn every time
        base = self.bptt if u < self.p_full else self.bptt / 2
        length = max(self.min_length, int(base + self.std * z))
        if self.max_length is not None:
            length = min(length, self.max_length)
        return BPTTWindow(length, length / self.bptt)

    def expected_length(self) -> float:
        """The mean window length of this rule, exactly (summed over the integer lengths it can draw)."""
        if self.std == 0.0:
            lengths = [(self.p_full, self._clip(int(self.bptt))), (1 - self.p_full, self._clip(int(self.bptt / 2)))]
            return sum(p * length for p, length in lengths)

        def below(x: float) -> float:  # P(Normal draw < x)
            return sum(p * 0.5 * (1.0 + math.erf((x - base) / (self.std * math.sqrt(2.0))))
                       for p, base in ((self.p_full, self.bptt), (1 - self.p_full, self.bptt / 2)))

        top = int(self.bptt + 12 * self.std) + 2  # beyond it the probability is below 1e-30
        mean = self._clip(self.min_length) * below(self.min_length + 1)  # every draw below min_length + 1
        for k in range(self.min_length + 1, top):
            mean += self._clip(k) * (below(k + 1) - below(k))
        return mean

    def _clip(self, length: int) -> int:
        length = max(self.min_length, length)
        return length if self.max_length is None else min(length, self.max_length)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state: all a resumed run needs to draw the same lengths."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
