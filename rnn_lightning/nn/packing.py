"""Packing padded batches for cuDNN without making the host wait for the GPU.

cuDNN runs a packed batch by the number of sequences still active at each step, a list it needs on the host. So
``pack_padded_sequence`` reads the lengths on the host: lengths on a GPU are copied back first, a copy that waits for
every kernel queued before it, and unpacking with ``pad_packed_sequence`` copies the sort order back. Here lengths
kept on the CPU (our DataModules keep them there) cost no wait: the sort order goes to the device as a non-blocking
copy and is never read back.

On other devices a packed batch whose size changes along the steps (sequences of different lengths) costs time
quadratic in its longest length in backward (PyTorch's native packed RNN), so a long batch there runs one length at
a time instead (:func:`run_by_length`, linear; see ``benchmarks/bench_long_input.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnn_lightning.nn.stack import State, map_state

# Longest length above which a batch runs one length at a time off CUDA: below it, one packed call costs less than
# a call per distinct length.
BY_LENGTH_ABOVE = 128


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


def run_rnn(rnn: nn.Module, inputs: Tensor, lengths: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run ``rnn`` (a ``torch.nn`` RNN or :class:`~rnn_lightning.nn.stack.ConnectedStack`) over a right-padded batch.

    inputs (B, T, D), lengths (B,), state (layers * directions, B, H) -> outputs (B, T, F), zero past each length,
    and each sequence's own final state. On CUDA (cuDNN) or up to ``BY_LENGTH_ABOVE`` steps: one packed call.
    Longer batches elsewhere: :func:`run_by_length`, the same values in time linear in the length.
    """
    lengths = check_lengths(lengths, inputs.shape[0], inputs.shape[1])
    if inputs.device.type == "cuda" or not len(lengths) or int(lengths.max()) <= BY_LENGTH_ABOVE:
        outputs, state = rnn(pack_batch(inputs, lengths), state)
        return unpack_batch(outputs, inputs.shape[1]), state
    return run_by_length(rnn, inputs, lengths, state)


def run_by_length(rnn: nn.Module, inputs: Tensor, lengths: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """:func:`run_rnn` as one unpacked call per distinct length: exact (each sequence sees its own steps only, the
    right-to-left pass starts at its last one), and linear in the length on the CPU, where packing is not."""
    lengths = check_lengths(lengths, inputs.shape[0], inputs.shape[1])
    steps = inputs.shape[1]
    groups = [(lengths == n).nonzero().squeeze(1) for n in lengths.unique().tolist()]  # CPU indices per length
    outputs, finals = [], []
    for group in groups:
        n, rows = int(lengths[group[0]]), to_device(group, inputs.device)
        out, final = rnn(inputs.index_select(0, rows)[:, :n], map_state(state, lambda s, i=rows: s.index_select(1, i)))
        outputs.append(F.pad(out, (0, 0, 0, steps - n)))  # (b, T, F): zeros past the length, as unpacking gives
        finals.append(final)
    unsort = torch.empty(len(lengths), dtype=torch.long)
    unsort[torch.cat(groups)] = torch.arange(len(lengths))
    unsort = to_device(unsort, inputs.device)  # concatenated groups -> the batch's order
    if isinstance(finals[0], tuple):
        joined = tuple(torch.cat(parts, dim=1).index_select(1, unsort) for parts in zip(*finals))
    else:
        joined = torch.cat(finals, dim=1).index_select(1, unsort)
    return torch.cat(outputs).index_select(0, unsort), joined
