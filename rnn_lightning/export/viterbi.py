"""Viterbi decoding as a TorchScript function: its loop over the steps stays a loop in a traced graph (TorchScript)
and becomes an ONNX ``Loop``, so the exported tagger decodes sentences of any length.

The same best paths as :meth:`rnn_lightning.nn.crf.CRF.decode` (which unrolls no loop of its own but is written for
speed with in-place ops and pointer doubling, neither of which exports).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.jit.script
def viterbi(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
    """The best tag path of each sequence.

    Args:
        emissions: (B, T, C) tag scores.
        mask: (B, T) bool, True on real tokens, right-padded, ``mask[:, 0]`` all True.
        start: (C,) first-tag scores; ``transitions``: (C, C) ``[from, to]``; ``end``: (C,) last-tag scores;
            forbidden moves at ``-inf``.

    Returns:
        (B, T) int64 tag ids, 0 on padding.
    """
    batch, steps, num_tags = emissions.shape[0], emissions.shape[1], emissions.shape[2]
    identity = torch.arange(num_tags, device=emissions.device).unsqueeze(0).expand(batch, num_tags)  # (B, C)
    score = start.unsqueeze(0) + emissions[:, 0]  # (B, C): best path ending in each tag
    pointers = [identity]  # pointers[t][b, j]: the tag at t - 1 of the best path at tag j at t (t = 0: unused)
    for t in range(1, steps):
        moves = transitions + emissions[:, t].unsqueeze(1)  # (B, C, C) [from, to]: the sums CRF.decode adds
        best, previous = (score.unsqueeze(2) + moves).max(dim=1)  # (B, C)
        real = mask[:, t].unsqueeze(1)  # (B, 1)
        score = torch.where(real, best, score)  # padding carries the score through
        pointers.append(torch.where(real, previous, identity))  # and points each tag to itself
    tag = (score + end.unsqueeze(0)).argmax(dim=1)  # (B,) at each sequence's last real token, carried to T - 1
    path = [tag]
    for t in range(steps - 1, 0, -1):
        tag = pointers[t].gather(1, tag.unsqueeze(1)).squeeze(1)
        path.append(tag)
    return torch.stack(path, dim=1).flip(1).masked_fill(~mask, 0)  # (B, T), built from the end
