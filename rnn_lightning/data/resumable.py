"""DataLoaders that resume mid-epoch: Lightning saves their ``state_dict`` in checkpoints and restores it before the
resumed epoch, which then skips the batches already trained on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """This process's share of ``dataset`` (all of it for one process), in order or in a shuffle fixed by
    ``(seed, epoch)``, without its first ``skip`` indices.

    A :class:`ResumableLoader` sets ``skip`` at the start of every epoch. Being a ``DistributedSampler``, Lightning
    keeps it under DDP instead of putting in its own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, *, shuffle: bool, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            return iter(list(super().__iter__())[self.skip :])
        # In order: DistributedSampler's indices (rank::replicas of 0..n-1, wrapped to pad), made lazily: a corpus
        # may cut into millions of windows, and a list of them would grow a process's memory with it.
        n, start = len(self.dataset), self.rank + self.skip * self.num_replicas
        return (position % n for position in range(start, self.total_size, self.num_replicas))


class ResumableLoader(DataLoader):
    """A DataLoader that counts the batches of the current epoch (``batches_done``, the state Lightning saves) and,
    with a :class:`ResumableSampler`, resumes a restored epoch exactly where it stopped.

    Another sampler (e.g. the sequential one Lightning puts in for ``overfit_batches``) works too, without the skip.

    Takes the DataLoader arguments (``sampler=ResumableSampler(...)``, ``batch_size``, ``collate_fn``, ...);
    ``batch_size=None`` for a dataset whose items are batches.
    """

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        # An own generator: iterating never draws on the global RNG (DataLoader draws a seed per epoch), so a
        # resumed run's random stream stays identical.
        super().__init__(dataset, **{"generator": torch.Generator().manual_seed(0), **kwargs})
        self.batches_done = 0
        self._resume_at = 0  # batches of the next epoch already trained on (set by load_state_dict)

    def __iter__(self) -> Iterator[Any]:
        resume_at, self._resume_at = self._resume_at, 0
        if not isinstance(self.sampler, ResumableSampler):
            resume_at = 0
        else:  # read whenever the epoch reads its sampler: lazily, and twice when workers start
            self.sampler.skip = resume_at * (self.batch_size or 1)
        self.batches_done = resume_at
        return self._count(super().__iter__())

    def _count(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        done = state["batches_done"]
        self._resume_at = done if done < len(self) else 0  # a finished epoch resumes at the next one's start
