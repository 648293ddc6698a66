"""Transfer learning building blocks (ULMFiT, Howard & Ruder 2018): embedding rows copied by word from another
vocabulary, and a network's parameters split into layer groups (for discriminative learning rates and gradual
unfreezing)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rnn_lightning.nn.encoder import RecurrentEncoder

# a fused torch RNN's `weight_ih_l1` / `..._l1_reverse`; a ConnectedStack's `layers.1.` and its gate into layer 1
_LAYER = re.compile(r"^rnn\.layers\.(\d+)\.|_l(\d+)(?:_reverse)?$|^rnn\.gates\.(\d+)\.")
_STACKED = re.compile(r"rnn\.layers\.(\d+)\.(\w+)_l0(_reverse)?")


def _fused_name(name: str) -> str:
    """A ConnectedStack layer's ``rnn.layers.1.weight_ih_l0`` as the fused RNN names it: ``rnn.weight_ih_l1``."""
    match = _STACKED.fullmatch(name)
    return f"rnn.{match[2]}_l{match[1]}{match[3] or ''}" if match else name


@torch.no_grad()
def load_encoder_weights(encoder: RecurrentEncoder, state: Mapping[str, Tensor]) -> None:
    """Load another :class:`RecurrentEncoder`'s ``state_dict`` into ``encoder``, which may run the same layers fused
    or one by one (a language model with ``locked_dropout`` steps its layers singly; a classifier fuses them).

    Raises ``ValueError`` when the two encoders' parameters differ in name or shape.
    """
    ours = {_fused_name(name): name for name in encoder.state_dict()}
    theirs = {_fused_name(name): tensor for name, tensor in state.items()}
    shapes = {name: tuple(tensor.shape) for name, tensor in encoder.state_dict().items()}
    differ = sorted(set(ours) ^ set(theirs)) or [
        name for name in ours if shapes[ours[name]] != tuple(theirs[name].shape)]
    if differ:
        raise ValueError(f"the recurrent encoders differ (in {differ[:3]}): they need the same cell, sizes, layers and "
                         "connection.")
    encoder.load_state_dict({ours[name]: tensor for name, tensor in theirs.items()})


@torch.no_grad()
def copy_rows_by_word(
    target: Tensor, target_vocab: Mapping[str, int], source: Tensor, source_vocab: Mapping[str, int],
    *, skip: set[int] = frozenset(),
) -> list[str]:
    """Copy ``source``'s row of every word both vocabularies hold into ``target``'s row of that word.

    A target word the source lacks in its own case takes the row of the source's word with the same lower case, the
    most frequent such word (the lowest row: vocabularies list words most frequent first), so a lower-cased corpus
    (SST-2's "hollywood") starts from a cased one's rows ("Hollywood") and the other way round.

    Args:
        target: (V_t, ...) the table to fill in place (e.g. a classifier's embedding weight).
        target_vocab: word -> row of ``target``.
        source: (V_s, ...) the rows to copy (e.g. a language model's embedding weight or decoder bias).
        source_vocab: word -> row of ``source``.
        skip: target rows left alone (the padding row).

    Returns:
        The target's words that ``source_vocab`` lacks in any case, in target row order (their rows are left as they
        are).

    Example:
        >>> target, source = torch.zeros(4, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
        >>> copy_rows_by_word(target, {"a": 0, "b": 1, "c": 2, "d": 3}, source, {"b": 0, "a": 1, "C": 2})
        ['d']
        >>> target.tolist()
        [[2.0, 2.0], [1.0, 1.0], [3.0, 3.0], [0.0, 0.0]]
    """
    if target.shape[1:] != source.shape[1:]:
        raise ValueError(f"the rows differ in shape: target {tuple(target.shape)}, source {tuple(source.shape)}.")
    by_lower: dict[str, int] = {}
    for word, row in sorted(source_vocab.items(), key=lambda item: item[1]):
        by_lower.setdefault(word.lower(), row)
    shared, missing = [], []
    for word, row in sorted(target_vocab.items(), key=lambda item: item[1]):
        if row in skip:
            continue
        from_row = source_vocab.get(word, by_lower.get(word.lower()))
        if from_row is None:
            missing.append(word)
        else:
            shared.append((row, from_row))
    if shared:
        rows, from_rows = (torch.tensor(ids) for ids in zip(*shared))
        target[rows] = source[from_rows].to(target.dtype)
    return missing


def encoder_layer_groups(encoder: RecurrentEncoder) -> list[list[nn.Parameter]]:
    """The parameters of each stacked layer of ``encoder``, bottom layer first (both directions of a layer, and the
    highway gate into it, together)."""
    groups: list[list[nn.Parameter]] = [[] for _ in range(encoder.num_layers)]
    for name, param in encoder.named_parameters():
        match = _LAYER.search(name)
        assert match is not None, f"no layer index in the encoder parameter {name!r}"
        stacked, fused, gate = match.groups()
        index = int(stacked) if stacked is not None else int(fused) if fused is not None else int(gate) + 1
        groups[index].append(param)
    return groups


def layer_groups(net: nn.Module, body: nn.Module, encoder: RecurrentEncoder) -> list[list[nn.Parameter]]:
    """``net``'s parameters in ULMFiT's layer groups, bottom first: the input layer (``body``'s parameters outside
    ``encoder``: embeddings, character or string features), each recurrent layer of ``encoder``, then the head (every
    other parameter of ``net``: the classifier or tagger layers, a CRF)."""
    layers = encoder_layer_groups(encoder)
    in_encoder = {id(p) for p in encoder.parameters()}
    inputs = [p for p in body.parameters() if id(p) not in in_encoder]
    taken = in_encoder | {id(p) for p in inputs}
    head = [p for p in net.parameters() if id(p) not in taken]
    return [inputs, *layers, head]
