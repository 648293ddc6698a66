"""Token streams for truncated BPTT: one long id sequence -> parallel contiguous streams -> bptt windows.

A split of M ids gives M - 1 (input, target) pairs. They are cut into S contiguous streams (one row each, a range
of the ids, which may be a memory-mapped token file: a window reads only its own slices);
stream i predicts its own slice of targets, and its first input is the last id of the slice before, so every
target is predicted exactly once whatever S is. Each rank of a DDP job takes its own block of rows.

Training windows may vary in length (AWD-LSTM's rule, :class:`~rnn_lightning.nn.variable_bptt.VariableBPTT`): each
epoch draws its own cut from a generator seeded by (seed, epoch), the same on every rank, so a resumed run and every
rank see the same windows. Lightning counts an epoch's batches once, so the number of windows is fixed: the length
of the stream over the rule's mean length; the drawn lengths are then stretched (rounded) to tile the stream
exactly, which moves each by well under one step on a real corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.resumable import ResumableLoader, ResumableSampler
from rnn_lightning.nn.variable_bptt import VariableBPTT

SEED_STRIDE = 1_000_003  # the generator of epoch e is seeded with seed * SEED_STRIDE + e


class TokenStreams:
    """``num_streams`` contiguous streams of (input, target) pairs over one id sequence, read a window at a time.

    The ids stay where they are (a memory-mapped token file, any integer dtype): a read gathers only the asked
    rows' columns, and only that batch becomes int64, so a process touches the pages of its own streams alone.

    Args:
        ids: (M,) the whole split: a numpy array or memmap, or a tensor.
        num_streams: S, the number of parallel streams (rows).
        pad_id: input id for the padding of shorter rows.
        drop_remainder: for training: give every row the same length and drop the last < S targets.
            Otherwise rows differ in length by at most one, padded, and every target is kept.
        ignore_ids: targets with these ids are not predicted (e.g. ``<bos>``).
    """

    def __init__(self, ids: np.ndarray | Tensor, num_streams: int, *, pad_id: int, drop_remainder: bool,
                 ignore_ids: tuple[int, ...] = ()) -> None:
        self.ids = ids.numpy() if isinstance(ids, Tensor) else ids  # (M,)
        num_targets = len(self.ids) - 1
        if num_streams < 1 or num_targets < num_streams:
            raise ValueError(
                f"cannot cut {len(self.ids)} tokens into {num_streams} streams: each stream needs at least one "
                "(input, target) pair. Use a smaller batch size or more data."
            )
        if drop_remainder:  # equal rows
            self.lengths = np.full(num_streams, num_targets // num_streams)  # (S,)
        else:  # the first `extra` rows are one longer; every target is kept
            base, extra = divmod(num_targets, num_streams)
            self.lengths = np.full(num_streams, base) + (np.arange(num_streams) < extra)  # (S,)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])  # (S,) each row's first input
        self.width = int(self.lengths.max())  # L, the longest row
        self.pad_id, self.ignore_ids = pad_id, tuple(ignore_ids)

    def __len__(self) -> int:
        return len(self.lengths)

    def read(self, rows: slice, start: int, end: int) -> tuple[Tensor, Tensor]:
        """Columns ``[start, end)`` of stream ``rows``: inputs and targets (R, end - start) int64, padding and
        ignored targets set to ``pad_id`` / ``IGNORE_INDEX``."""
        cols = np.arange(start, end + 1)  # (W + 1,): the inputs' columns and one more for the last target
        at = np.minimum(self.starts[rows, None] + cols, len(self.ids) - 1)  # (R, W + 1)
        gathered = np.asarray(self.ids[at], dtype=np.int64)  # (R, W + 1): the only copy, of this batch alone
        valid = cols[None, :-1] < self.lengths[rows, None]  # (R, W)
        targets = np.where(valid, gathered[:, 1:], IGNORE_INDEX)
        if self.ignore_ids:
            targets[np.isin(targets, self.ignore_ids)] = IGNORE_INDEX
        return torch.from_numpy(np.where(valid, gathered[:, :-1], self.pad_id)), torch.from_numpy(targets)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ids": portable_ids(self.ids)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "ids": restored_ids(state["ids"])})


def portable_ids(ids: Any) -> Any:
    """A memory-mapped file travels as its name (to spawned workers and processes), not as its contents."""
    if isinstance(ids, np.memmap) and ids.filename is not None:
        return ("memmap", ids.filename, ids.dtype.str, ids.offset, len(ids))
    return ids


def restored_ids(state: Any) -> Any:
    """The ids :func:`portable_ids` sent, the memory map reopened."""
    if isinstance(state, tuple):
        _, filename, dtype, offset, count = state
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=(count,))
    return state


class BackwardIds:
    """A backward model's view of a split's ids (M,), read by index without a copy: the lines in reverse order,
    each ``<bos> xn .. x1 <eos>`` (what :func:`~rnn_lightning.data.language_modeling.reverse_lines` builds).

    Flipping the sequence turns each line into ``<eos> xn .. x1 <bos>``; swapping the two frame ids puts them back,
    so position ``i`` is id ``M - 1 - i`` with ``<bos>`` and ``<eos>`` exchanged. Both ids frame lines only (the
    word and character tokenizers never produce them inside a line).
    """

    def __init__(self, ids: np.ndarray, *, bos_id: int, eos_id: int) -> None:
        self.ids, self.bos_id, self.eos_id = ids, bos_id, eos_id

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, at: np.ndarray) -> np.ndarray:
        return self._frames_swapped(np.asarray(self.ids[len(self.ids) - 1 - np.asarray(at)]))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole view (``np.asarray(view)``): one pass over the ids, no index array."""
        whole = self._frames_swapped(np.asarray(self.ids)[::-1])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _frames_swapped(self, got: np.ndarray) -> np.ndarray:
        return np.where(got == self.bos_id, self.eos_id, np.where(got == self.eos_id, self.bos_id, got))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ids": portable_ids(self.ids)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "ids": restored_ids(state["ids"])})


def split_streams(
    ids: Tensor, num_streams: int, pad_id: int, drop_remainder: bool, ignore_ids: tuple[int, ...] = ()
) -> tuple[Tensor, Tensor]:
    """Cut ``ids`` (M,) into ``num_streams`` whole rows of (input, target) pairs (:class:`TokenStreams`, read at
    once: for small corpora and tests).

    Returns:
        inputs (S, L) and targets (S, L), int64, padding and ignored targets set to ``IGNORE_INDEX``.

    Example:
        >>> import torch
        >>> x, y = split_streams(torch.arange(8), 3, pad_id=-1, drop_remainder=False)
        >>> x.tolist(), y.tolist()
        ([[0, 1, 2], [3, 4, -1], [5, 6, -1]], [[1, 2, 3], [4, 5, -100], [6, 7, -100]])
    """
    streams = TokenStreams(ids, num_streams, pad_id=pad_id, drop_remainder=drop_remainder, ignore_ids=ignore_ids)
    return streams.read(slice(None), 0, streams.width)


def variable_bounds(length: int, bptt: int, *, seed: int, epoch: int) -> Tensor:
    """Boundaries (n + 1,) of n windows that tile ``[0, length)``, their lengths drawn by AWD-LSTM's rule.

    n = max(1, round(length / mean length)) for every epoch; the n drawn lengths are scaled to sum to ``length``.

    Example:
        >>> bounds = variable_bounds(1000, 70, seed=0, epoch=0)
        >>> int(bounds[0]), int(bounds[-1]), len(bounds) - 1  # 1000 / 67.75 = 14.8 windows
        (0, 1000, 15)
    """
    rule = VariableBPTT(bptt, seed=seed * SEED_STRIDE + epoch)
    n = max(1, round(length / rule.expected_length()))
    drawn = torch.tensor([rule.sample().length for _ in range(n)], dtype=torch.float64)  # (n,)
    ends = (drawn.cumsum(0) * (length / drawn.sum())).round().long()  # (n,), the last one = length
    bounds = torch.cat([ends.new_zeros(1), ends])
    assert bool((bounds[1:] > bounds[:-1]).all()), "every window has at least one step"
    return bounds


class StreamWindows(Dataset):
    """This rank's block of stream rows, cut into ``bptt``-long column windows: item ``i`` is window ``i``.

    A map-style dataset whose items are whole batches: DataLoader workers take windows by index and the loader
    keeps their order.

    Args:
        streams: the streams of all ranks.
        bptt: window length (steps backpropagated through).
        rank: this process's index among ``world_size``; it takes rows ``[rank * S/world, (rank+1) * S/world)``.
        world_size: number of processes sharing the streams.
        variable_seed: draw each epoch's window lengths by AWD-LSTM's rule around ``bptt`` from this seed (the same
            on every rank; see :func:`variable_bounds`); ``None``: every window ``bptt`` long.

    Items:
        (inputs, targets), each (S / world_size, <= bptt); with ``variable_seed`` (inputs, targets, lr_scale), the
        window's length / bptt as a Python float (AWD-LSTM scales the step's learning rate by it).
    """

    def __init__(self, streams: TokenStreams, bptt: int, *, rank: int = 0, world_size: int = 1,
                 variable_seed: int | None = None) -> None:
        if bptt < 1:
            raise ValueError(f"`bptt` must be a positive integer, got {bptt!r}.")
        rows = len(streams) // world_size
        assert rows * world_size == len(streams), "streams must divide evenly across ranks"
        self.streams, self.rows = streams, slice(rank * rows, (rank + 1) * rows)
        self.bptt, self.rank, self.world_size = bptt, rank, world_size
        self.variable_seed = variable_seed
        self.bounds: Tensor | None = None  # (n + 1,) column boundaries of the epoch's variable windows
        self.set_epoch(0)

    @property
    def inputs(self) -> Tensor:
        """(S / world_size, L) this rank's whole rows of inputs, read at once (for small corpora and tests)."""
        return self.streams.read(self.rows, 0, self.streams.width)[0]

    @property
    def targets(self) -> Tensor:
        """(S / world_size, L) this rank's whole rows of targets, read at once (for small corpora and tests)."""
        return self.streams.read(self.rows, 0, self.streams.width)[1]

    def set_epoch(self, epoch: int) -> None:
        """Draw the window lengths of ``epoch`` (variable windows only; the loader calls it each epoch)."""
        if self.variable_seed is not None:
            self.bounds = variable_bounds(self.streams.width, self.bptt, seed=self.variable_seed, epoch=epoch)

    def __len__(self) -> int:
        if self.bounds is not None:
            return len(self.bounds) - 1
        return -(-self.streams.width // self.bptt)

    def __getitem__(self, window: int) -> tuple[Tensor, ...]:
        if not 0 <= window < len(self):
            raise IndexError(f"window {window} of {len(self)}")
        if self.bounds is None:
            start, end = window * self.bptt, min((window + 1) * self.bptt, self.streams.width)
            return self.streams.read(self.rows, start, end)  # (S / world_size, <= bptt) each
        start, end = int(self.bounds[window]), int(self.bounds[window + 1])
        return (*self.streams.read(self.rows, start, end), (end - start) / self.bptt)


class StreamLoader(ResumableLoader):
    """DataLoader over :class:`StreamWindows`, in order, that can resume mid-epoch (Lightning saves its
    ``state_dict``: the batches done and the epoch, whose cut variable-length windows follow).

    Args:
        dataset: the windows to serve, in order.
        num_workers: DataLoader workers (each produces some windows; the order is kept).
        pin_memory: pin batches for faster host-to-GPU copies.
        kwargs: other DataLoader arguments (Lightning re-creates loaders with them).
    """

    def __init__(self, dataset: StreamWindows, *, num_workers: int = 0, pin_memory: bool = False, **kwargs) -> None:
        # Windows are already batched (streams x bptt); the sampler's skip resumes mid-epoch.
        kwargs = {"batch_size": None, "sampler": ResumableSampler(dataset, shuffle=False), **kwargs}
        super().__init__(dataset, num_workers=num_workers, pin_memory=pin_memory, **kwargs)
        self.epoch = 0  # the epoch whose windows are served (variable-length windows change with it)
        self._resumed_epoch: int | None = None

    def __iter__(self) -> Iterator[Any]:
        # The windows of the epoch: Lightning sets the sampler's epoch before each epoch but the first one of a run,
        # whose iterator it makes earlier; a resumed run takes that one's epoch from the loader's saved state.
        epoch, self._resumed_epoch = self._resumed_epoch, None
        self.epoch = epoch if epoch is not None else getattr(self.sampler, "epoch", 0)
        self.dataset.set_epoch(self.epoch)
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        super().load_state_dict(state)
        if "epoch" in state:  # a finished epoch resumes at the next one
            self._resumed_epoch = state["epoch"] + (0 if state["batches_done"] < len(self) else 1)
