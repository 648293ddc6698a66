"""DataLoaders that resume mid-epoch: Lightning saves their ``state_dict`` in checkpoints and restores it before the
resumed epoch, which then skips the batches already trained on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableBatches(DataLoader):
    """Base: counts the batches of the current epoch (``batches_done``, the state Lightning saves).

    Subclasses set where an epoch starts in ``__iter__`` (then wrap the batches in :meth:`_count`) and how a
    restored count moves that start in ``load_state_dict``.
    """

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        # An own generator: iterating never draws on the global RNG (DataLoader draws a seed per epoch), so a
        # resumed run's random stream stays identical.
        super().__init__(dataset, **{"generator": torch.Generator().manual_seed(0), **kwargs})
        self.batches_done = 0

    def _count(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_done": self.batches_done}


class EpochShuffleSampler(DistributedSampler):
    """This process's share of a shuffle fixed by ``(seed, epoch)`` (one process too), resumable mid-epoch.

    ``skip`` drops the first indices of the next epoch's share (the batches a resumed run has already trained on),
    then resets, so the following epochs are whole.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableLoader(ResumableBatches):
    """Batches drawn by an :class:`EpochShuffleSampler`: an order fixed by ``(seed, epoch)`` that resumes mid-epoch
    exactly where it stopped (its first ``batches_done`` batches are skipped).

    Another sampler (e.g. the sequential one Lightning puts in for ``overfit_batches``) works too, without the skip.

    Takes the DataLoader arguments (``sampler=EpochShuffleSampler(...)``, ``batch_size``, ``collate_fn``, ...).
    """

    def __iter__(self) -> Iterator[Any]:
        self.batches_done = getattr(self.sampler, "skip", 0) // self.batch_size
        return self._count(super().__iter__())

    def load_state_dict(self, state: dict[str, int]) -> None:
        done = state["batches_done"]
        if isinstance(self.sampler, EpochShuffleSampler):
            self.sampler.skip = done * self.batch_size if done < len(self) else 0
