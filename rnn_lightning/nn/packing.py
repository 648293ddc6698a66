"""Packing padded batches for cuDNN without making the host wait for the GPU.

cuDNN runs a packed batch by the number of sequences still active at each step, a list it needs on the host. So
``pack_padded_sequence`` reads the lengths on the host: lengths on a GPU are copied back first, a copy that waits for
every kernel queued before it, and unpacking with ``pad_packed_sequence`` copies the sort order back. Here lengths
kept on the CPU (our DataModules keep them there) cost no wait: the sort order goes to the device as a non-blocking
copy and is never read back.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; a CPU tensor goes to a GPU as a non-blocking copy from pinned memory."""
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        pinned = tensor if tensor.is_pinned() else tensor.pin_memory()
        return pinned.to(device, non_blocking=True)
    return tensor.to(device)


def check_lengths(lengths: Tensor, batch: int, steps: int) -> Tensor:
    """``lengths`` on the CPU, checked to be (B,) values in [1, T]; raises a ValueError naming the fix."""
    if lengths.shape != (batch,):
        raise ValueError(f"`lengths` must have shape (B,) = ({batch},), got {tuple(lengths.shape)}.")
    lengths = lengths.cpu()  # free for CPU lengths; one wait for the GPU for lengths on a GPU
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(
            f"`lengths` must lie in [1, T={steps}], got min {int(lengths.min())}, max {int(lengths.max())}. Drop "
            "empty sequences before encoding."
        )
    return lengths


def pack_batch(inputs: Tensor, lengths: Tensor) -> PackedSequence:
    """inputs (B, T, D) right-padded + lengths (B,) -> the ``PackedSequence`` that ``pack_padded_sequence(...,
    enforce_sorted=False)`` gives, with no host wait when ``lengths`` is on the CPU."""
    lengths = check_lengths(lengths, inputs.shape[0], inputs.shape[1])
    sorted_lengths, order = torch.sort(lengths, descending=True)  # (B,), (B,) on the CPU
    unsort = torch.empty_like(order)
    unsort[order] = torch.arange(len(order))
    order, unsort = to_device(order, inputs.device), to_device(unsort, inputs.device)
    packed = pack_padded_sequence(inputs.index_select(0, order), sorted_lengths, batch_first=True)
    return PackedSequence(packed.data, packed.batch_sizes, order, unsort)


def unpack_batch(packed: PackedSequence, total_length: int) -> Tensor:
    """The (B, total_length, F) zero-padded batch of ``packed`` (from :func:`pack_batch`) in its original order, with
    no host wait (``pad_packed_sequence`` copies the order to the host to reorder the lengths, unused here)."""
    padded, _ = pad_packed_sequence(
        PackedSequence(packed.data, packed.batch_sizes), batch_first=True, total_length=total_length
    )  # (B, T, F), sorted by length
    return padded.index_select(0, packed.unsorted_indices)
