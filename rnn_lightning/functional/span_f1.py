"""Span-level (entity) precision, recall and F1 of sequence tagging, equal to conlleval and seqeval.

Spans are decoded with the rules of ``conlleval.pl``, which ``seqeval`` uses in its default (non-strict) mode
(``start_of_chunk``/``end_of_chunk`` in ``seqeval/metrics/sequence_labeling.py``): they accept IOB1, IOB2 and
IOBES tags, and ill-formed sequences too (an ``I-X`` after ``O`` starts a span; a type change ends one). ``L``
reads as ``E`` and ``U`` as ``S``, so BILOU tags give the spans of their IOBES spelling. A predicted span is
correct when a gold span has the same sentence, start, end and type.

``mode="strict"`` reads the spans as seqeval's strict mode does for a given ``scheme`` (IOB2, IOBES or BILOU;
``seqeval.scheme.Tokens.entities``): a span starts only at a tag that may follow ``O`` (``B``, or ``S``/``U``),
runs while the tags continue it (:data:`.tag_schemes.GRAMMAR`), and counts only if its last tag may precede ``O``
(``E``/``L`` or ``S``/``U`` in IOBES/BILOU): ill-formed pieces such as ``O I-X`` or ``B-X O`` (IOBES) are no span.
Both modes share the tables below; averages over types are seqeval's ``"micro"``, ``"macro"`` and ``"weighted"``.

Everything is tensor ops, with no Python loop over tokens or sentences. Each row of a ``(B, T)`` batch is one
sentence; ``mask`` is True at its tokens. The kept tokens are gathered into one sequence, each sentence between
two ids ``C`` (``C`` labels; ``C`` reads "outside"), as seqeval joins sentences with ``"O"``, so the work scales
with the tokens, not with the padded grid (many times the tokens when lengths vary). conlleval's rules become two
``(C + 1) ** 2`` tables over pairs of neighbouring label ids, so every token's start and end flags are one lookup
each, and each span start finds its end with a reverse ``cummin``. Spans never cross rows. Masked positions are
skipped: a span may run across them (e.g. the ``-100`` of non-first word pieces), as if they were removed.

This module is pure torch: it imports neither lightning nor torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
from torch import Tensor

from rnn_lightning.functional.tag_schemes import GRAMMAR, split_tag

__all__ = [
    "AVERAGES",
    "PREFIX_CODES",
    "STRICT_SCHEMES",
    "extract_spans",
    "label_table",
    "span_counts",
    "span_f1_from_counts",
    "tags_to_ids",
]

O, B, I, E, S = range(5)  # noqa: E741
PREFIX_CODES = {"O": O, "B": B, "I": I, "E": E, "S": S, "L": E, "U": S}
STRICT_SCHEMES = ("IOB2", "IOBES", "BILOU")  # the schemes of seqeval's strict mode that rnn_lightning knows
AVERAGES = ("micro", "macro", "weighted")

# conlleval's rules on prefixes, as (5 * previous + current) -> flag tables. A span also starts at a non-O tag
# whose type differs from the previous tag's, and ends at a non-O tag whose type differs from the next one's.
_STARTS = torch.zeros(5, 5, dtype=torch.bool)  # [previous, current]
_STARTS[:, [B, S]] = True  # B and S always start a span
for _prev in (E, S, O):
    _STARTS[_prev, [I, E]] = True  # I or E after E, S or O (no span open) start one
_ENDS = torch.zeros(5, 5, dtype=torch.bool)  # [current, next]
_ENDS[[E, S], :] = True  # E and S always end a span
for _cur in (B, I):
    _ENDS[_cur, [B, S, O]] = True  # B or I followed by B, S or O (not by I or E) end one


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _is_integer_tensor(t: object) -> bool:
    return isinstance(t, Tensor) and not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def label_table(labels: Sequence[str]) -> tuple[Tensor, Tensor, list[str]]:
    """Per label id, its prefix code and its type id, and the sorted type names.

    Args:
        labels: The tag of each label id, e.g. ``["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]``, in any scheme
            (prefixes ``B I O E S L U``).

    Returns:
        ``(prefixes, types, type_names)``: two int64 tensors of shape ``(C,)`` for ``C = len(labels)``, with the
        prefix codes of :data:`PREFIX_CODES` (``O=0, B=1, I=2, E=L=3, S=U=4``) and the index of each label's
        type in ``type_names`` (``-1`` for ``O``), and the sorted list of type names.

    Raises:
        ValueError: If ``labels`` is empty or a label is malformed (see :func:`.split_tag`).

    Example:
        >>> label_table(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        (tensor([0, 1, 2, 1, 2]), tensor([-1,  1,  1,  0,  0]), ['LOC', 'PER'])
    """
    if isinstance(labels, str) or len(labels) == 0:
        raise ValueError(
            f"label_table: `labels` must be a non-empty sequence of tags, got {labels!r}. Pass the tag of each "
            "label id, e.g. ['O', 'B-PER', 'I-PER']."
        )
    parsed = []
    for i, label in enumerate(labels):
        try:
            parsed.append(split_tag(label))
        except ValueError as error:
            raise ValueError(f"label_table: `labels[{i}]`: {str(error).removeprefix('split_tag: ')}") from None
    type_names = sorted({type_ for _, type_ in parsed} - {""})
    type_ids = {name: i for i, name in enumerate(type_names)}
    prefixes = torch.tensor([PREFIX_CODES[prefix] for prefix, _ in parsed], dtype=torch.long)
    types = torch.tensor([type_ids.get(type_, -1) for _, type_ in parsed], dtype=torch.long)
    return prefixes, types, type_names


def tags_to_ids(sentences: Sequence[Sequence[str]], labels: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Encode tag strings as a right-padded ``(B, T)`` id tensor and its mask.

    Args:
        sentences: ``B`` sentences of tags, e.g. ``[["B-PER", "O"], ["O"]]``.
        labels: The tag of each label id; every tag of ``sentences`` must be one of them.

    Returns:
        ``(ids, mask)``: int64 ids ``(B, T)`` (0 at padding) and a bool mask ``(B, T)`` True at the tags, with
        ``T`` the longest sentence.

    Raises:
        ValueError: If a tag is not in ``labels``.

    Example:
        >>> tags_to_ids([["B-PER", "I-PER", "O"], ["B-LOC"]], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        (tensor([[1, 2, 0],
                [3, 0, 0]]), tensor([[ True,  True,  True],
                [ True, False, False]]))
    """
    lookup = {label: i for i, label in enumerate(labels)}
    lengths = torch.tensor(list(map(len, sentences)), dtype=torch.long)  # (B,)
    ids_of_tags = map(lookup.__getitem__, chain.from_iterable(sentences))
    try:
        if len(lookup) <= 256:  # one byte per id: faster than torch.tensor(list) from Python ints
            flat = torch.frombuffer(bytearray(ids_of_tags) or bytearray(1), dtype=torch.uint8).long()
            flat = flat[: int(lengths.sum())]  # (N,) (a dummy byte stands in for no tag at all)
        else:
            flat = torch.tensor(list(ids_of_tags), dtype=torch.long)  # (N,)
    except KeyError:
        b, t, tag = next((b, t, tag) for b, s in enumerate(sentences) for t, tag in enumerate(s) if tag not in lookup)
        raise ValueError(
            f"tags_to_ids: the tag {tag!r} of sentence {b}, position {t}, is not in `labels` {list(labels)}. "
            "Add it to `labels` (or fix the data)."
        ) from None
    width = int(lengths.max()) if len(lengths) else 0
    mask = torch.arange(width) < lengths[:, None]  # (B, T)
    ids = torch.zeros(mask.shape, dtype=torch.long).masked_scatter_(mask, flat)  # row-major, like the flattening
    return ids, mask


def _check(tag_ids: dict[str, Tensor], mask: Tensor, prefixes: Tensor, types: Tensor, caller: str) -> None:
    """Validate shapes and dtypes (no host sync); raise a ``TypeError``/``ValueError`` naming the argument."""
    for name, value in (("prefixes", prefixes), ("types", types)):
        if not _is_integer_tensor(value) or value.ndim != 1:
            got = f"{value.dtype} {_shape(value)}" if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(
                f"{caller}: `{name}` must be a 1-d integer tensor (one entry per label id), got {got}. "
                "Build it with `label_table(labels)`."
            )
    if prefixes.shape != types.shape:
        raise ValueError(
            f"{caller}: `prefixes` and `types` must have one entry per label id, got shapes {_shape(prefixes)} "
            f"and {_shape(types)}. Build both with `label_table(labels)`."
        )
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{caller}: `mask` must be a bool tensor (True at tokens), got {got}. Pass e.g. `ids != pad`.")
    for name, value in tag_ids.items():
        if not _is_integer_tensor(value):
            got = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(
                f"{caller}: `{name}` must be an integer tensor of label ids, got {got}. Take the argmax of scores "
                "first, e.g. `logits.argmax(-1)`."
            )
        if value.ndim != 2 or value.shape != mask.shape:
            raise ValueError(
                f"{caller}: `{name}` must have shape (B, T) equal to the shape of `mask`, got {_shape(value)} and "
                f"mask {_shape(mask)}. Pass one row per sentence, padded on the right."
            )


def _flatten(tag_ids: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
    """The kept tokens in row-major order: their flat indices into the ``(B, T)`` grid ``(N,)``, and the ids of
    each tensor of ``tag_ids`` there, stacked ``(k, N)``."""
    index = mask.flatten().nonzero().squeeze(1)  # (N,)
    return index, torch.stack([ids.flatten().index_select(0, index).long() for ids in tag_ids])


def _check_range(names: list[str], flat: Tensor, index: Tensor, steps: int, num_labels: int, caller: str) -> None:
    """Raise a ``ValueError`` if a kept id lies outside ``[0, num_labels)`` (one host sync)."""
    if flat.numel() == 0:
        return
    low, high = torch.aminmax(flat)
    if int(low) >= 0 and int(high) < num_labels:
        return
    which, position = (int(i) for i in ((flat < 0) | (flat >= num_labels)).nonzero()[0])
    row, col = divmod(int(index[position]), steps)
    raise ValueError(
        f"{caller}: `{names[which]}` must hold label ids in [0, {num_labels}) (one per entry of `labels`) where "
        f"`mask` is True, got {int(flat[which, position])} at [{row}, {col}]. Mask the padding (`mask=False`) or "
        "fix the label list."
    )


def _check_mode(mode: str | None, scheme: object, caller: str) -> str | None:
    """The strict ``scheme``'s name, or None for conlleval's rules; a ``ValueError`` for a bad combination."""
    if mode not in (None, "strict"):
        raise ValueError(
            f"{caller}: `mode` must be None (conlleval's rules, seqeval's default) or 'strict', got {mode!r}."
        )
    name = getattr(scheme, "__name__", scheme)  # seqeval's scheme classes (seqeval.scheme.IOB2) name themselves
    if mode is None:
        if scheme is not None:
            raise ValueError(
                f"{caller}: `scheme` applies only with mode='strict' (seqeval ignores it otherwise), got "
                f"scheme={name!r} and mode=None. Pass mode='strict', or drop `scheme`."
            )
        return None
    if name not in STRICT_SCHEMES:
        hint = " (seqeval's strict IOB1 is not supported: convert the tags to IOB2)" if name == "IOB1" else ""
        raise ValueError(
            f"{caller}: mode='strict' needs `scheme` to be one of {', '.join(STRICT_SCHEMES)}, got {name!r}{hint}."
        )
    return name


def _check_strict(mode: str | None, scheme: object, prefixes: Tensor, caller: str) -> str | None:
    """:func:`_check_mode`, and in strict mode a ``ValueError`` if ``prefixes`` holds a prefix the scheme lacks."""
    name = _check_mode(mode, scheme, caller)
    if name is not None:
        used = _strict_rules(name)[0].to(prefixes.device)
        if prefixes.numel() and not bool(used[prefixes.clamp(0, 4)].all() and (prefixes >= 0).all()):
            letters = "OBILU" if name == "BILOU" else "OBIES"
            raise ValueError(
                f"{caller}: `prefixes` must use only the prefixes of {name} "
                f"({' '.join(c for c, ok in zip(letters, used.tolist()) if ok)}), got codes {prefixes.tolist()} "
                f"(O=0 B=1 I=2 E/L=3 S/U=4). Pass the scheme the labels are written in."
            )
    return name


def _checked(
    tag_ids: dict[str, Tensor], mask: Tensor, prefixes: Tensor, types: Tensor, mode: str | None, scheme: object,
    caller: str,
) -> tuple[Tensor, Tensor, str | None]:
    """The checks of the public span functions (:func:`_check`, :func:`_check_strict`): ``prefixes`` and ``types``
    on the ids' device, and the strict scheme's name (``None``: conlleval's rules)."""
    _check(tag_ids, mask, prefixes, types, caller)
    name = _check_strict(mode, scheme, prefixes, caller)
    device = next(iter(tag_ids.values())).device
    return prefixes.to(device), types.to(device), name


def _strict_rules(scheme: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """seqeval's strict rules per prefix code, read off :data:`.GRAMMAR`: which prefixes the scheme uses, which may
    start a span (follow ``O``), which pairs continue one (with equal types), and which may end one (precede ``O``).

    Returns:
        ``used`` (5,), ``starts`` (5,), ``continues`` (5, 5) ``[previous, current]`` and ``complete`` (5,) bools.
    """
    letters = "OBILU" if scheme == "BILOU" else "OBIES"  # the letter of each code in this scheme (L = E, U = S)
    rules = GRAMMAR[scheme]
    moves = (*rules.free, *rules.continuing)
    used = torch.tensor([any(c in move for move in moves) for c in letters])
    starts = torch.tensor([c != "O" and ("O", c) in rules.free for c in letters])
    continues = torch.tensor([[(a, b) in rules.continuing for b in letters] for a in letters])
    complete = torch.tensor([c != "O" and (c, "O") in rules.free for c in letters])
    return used, starts, continues, complete


def _transition_tables(prefixes: Tensor, types: Tensor, scheme: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The rules per pair of label ids ``(a, b)``, flattened to ``a * (C + 1) + b``, with id ``C`` for "outside the
    sentence": does a span start at ``b`` after ``a``, and does a span end at ``a`` before ``b``; and per id
    ``(C + 1,)``, may a span end there (always, but in strict mode). conlleval's rules, or seqeval's strict rules of
    ``scheme``."""
    prefix = torch.cat([prefixes, prefixes.new_tensor([O])])  # (C + 1,)
    type_ = torch.cat([types, types.new_tensor([-1])])
    other_type = type_[:, None] != type_[None, :]  # (C + 1, C + 1) [a, b]
    if scheme is not None:
        _, may_start, continues, may_end = (rule.to(prefix.device) for rule in _strict_rules(scheme))
        starts = may_start[prefix][None, :].expand(len(prefix), -1).flatten()
        ends = ~(continues[prefix[:, None], prefix[None, :]] & ~other_type).flatten()
        complete = may_end[prefix].clone()
        complete[-1] = False
        return starts, ends, complete
    pairs = (prefix[:, None] * 5 + prefix[None, :]).flatten()
    starts = _STARTS.to(prefix.device).flatten()[pairs] | (other_type & (prefix != O)[None, :]).flatten()
    ends = _ENDS.to(prefix.device).flatten()[pairs] | (other_type & (prefix != O)[:, None]).flatten()
    return starts, ends, torch.ones_like(prefix, dtype=torch.bool)


def _spans(
    tag_ids: list[Tensor],
    mask: Tensor,
    prefixes: Tensor,
    types: Tensor,
    names: list[str],
    caller: str,
    scheme: str | None = None,
):
    """Decode the spans of each tensor of ``tag_ids`` ``(B, T)`` under ``mask`` (seqeval's strict rules of
    ``scheme``, or conlleval's when it is None).

    The kept tokens of each row are written into one sequence ``seq`` ``(k, L)``, ``L = N + B + 1``, each
    sentence preceded and followed by id ``C`` ("outside"), as seqeval joins sentences with ``"O"``. The pair
    ``(seq[j], seq[j + 1])`` says, through the transition tables, whether a span starts at ``j + 1`` and whether
    one ends at ``j``; the span starting at ``i`` ends at the first end at or after ``i`` (always in its own
    sentence, as "outside" ends any open span). In strict mode a start whose last tag may not end a span is dropped.

    Returns:
        ``(starts, end, type_, index, position)``: bool ``(k, L)`` where a span starts, int64 ``(k, L)`` the
        position in ``seq`` of the last token of the span starting there, int64 ``(k, L)`` the type id (-1 for
        ``O`` and "outside"), and for each kept token ``(N,)`` its flat index into the ``(B, T)`` grid and its
        position in ``seq``.
    """
    batch, steps = mask.shape
    outside = prefixes.numel()  # the id C
    index, flat = _flatten(tag_ids, mask)  # (N,), (k, N)
    _check_range(names, flat, index, steps, outside, caller)
    row = torch.div(index, steps, rounding_mode="floor")  # (N,)
    position = torch.arange(index.numel(), device=index.device) + row + 1  # (N,) row b is shifted by b + 1
    length = index.numel() + batch + 1
    seq = flat.new_full((flat.shape[0], length), outside).index_copy_(1, position, flat)  # (k, L)
    table_starts, table_ends, complete = _transition_tables(prefixes, types, scheme)
    pairs = (seq[:, :-1] * (outside + 1) + seq[:, 1:]).flatten()  # (k * (L - 1),)
    starts = torch.zeros_like(seq, dtype=torch.bool)  # (k, L)
    starts[:, 1:] = table_starts.index_select(0, pairs).view(seq.shape[0], length - 1)
    ends = torch.zeros_like(starts)
    ends[:, :-1] = table_ends.index_select(0, pairs).view(seq.shape[0], length - 1)
    at = torch.arange(length, device=seq.device)
    end = torch.where(ends, at, length).flip(-1).cummin(dim=-1).values.flip(-1)  # (k, L) the next end
    if scheme is not None:  # keep the spans whose last tag may end one
        starts &= complete.index_select(0, seq.gather(1, end.clamp(max=length - 1)).flatten()).view_as(starts)
    type_ = torch.cat([types, types.new_tensor([-1])]).index_select(0, seq.flatten()).view_as(seq)  # (k, L)
    return starts, end, type_, index, position


def extract_spans(
    tag_ids: Tensor,
    mask: Tensor,
    prefixes: Tensor,
    types: Tensor,
    *,
    mode: str | None = None,
    scheme: str | None = None,
) -> Tensor:
    """The spans of a batch of tag-id sequences, decoded with conlleval's rules (or seqeval's strict ones).

    Args:
        tag_ids: Label ids of shape ``(B, T)``, one sentence per row, any integer dtype (any value where
            ``mask`` is False).
        mask: Bool tensor ``(B, T)``, True at the tokens of each sentence; masked positions are skipped.
        prefixes: Prefix code per label id ``(C,)``, from :func:`label_table`.
        types: Type id per label id ``(C,)``, from :func:`label_table` (``-1`` for ``O``).
        mode: None for conlleval's rules (seqeval's default), ``"strict"`` for seqeval's strict mode.
        scheme: With ``mode="strict"``, the tag scheme: one of :data:`STRICT_SCHEMES` (or seqeval's class of that
            name).

    Returns:
        int64 tensor ``(N, 4)`` of ``[row, start, end (inclusive), type]``, sorted by row then start. Columns
        index ``tag_ids``.

    Raises:
        TypeError: If an argument has the wrong dtype.
        ValueError: If the shapes disagree, an id under ``mask`` is not in ``[0, C)``, or ``mode``/``scheme`` are
            not a valid pair (a strict ``scheme`` must use every prefix of ``prefixes``).

    Example:
        >>> import torch
        >>> prefixes, types, names = label_table(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        >>> tag_ids = torch.tensor([[1, 2, 0, 4], [2, 3, 0, 0]])  # B-PER I-PER O I-LOC | I-PER B-LOC pad pad
        >>> mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
        >>> extract_spans(tag_ids, mask, prefixes, types)  # names[0] = 'LOC', names[1] = 'PER'
        tensor([[0, 0, 1, 1],
                [0, 3, 3, 0],
                [1, 0, 0, 1],
                [1, 1, 1, 0]])
        >>> extract_spans(tag_ids, mask, prefixes, types, mode="strict", scheme="IOB2")  # no I-X after O or at 0
        tensor([[0, 0, 1, 1],
                [1, 1, 1, 0]])
    """
    prefixes, types, scheme = _checked({"tag_ids": tag_ids}, mask, prefixes, types, mode, scheme, "extract_spans")
    steps = tag_ids.shape[1]
    starts, end, type_, index, position = _spans([tag_ids], mask, prefixes, types, ["tag_ids"], "extract_spans", scheme)
    grid = torch.full_like(end[0], -1).index_copy_(0, position, index)  # (L,) position in seq -> flat grid index
    at = starts[0].nonzero().squeeze(1)  # (S,) where the spans start in seq
    first, last = grid[at], grid[end[0, at]]
    return torch.stack([first // steps, first % steps, last % steps, type_[0, at]], dim=1)


def _span_counts(
    preds: Tensor,
    target: Tensor,
    mask: Tensor,
    prefixes: Tensor,
    types: Tensor,
    num_types: int,
    caller: str = "span_counts",
    scheme: str | None = None,
) -> Tensor:
    """:func:`span_counts` without the argument checks (the range check stays: it guards the table lookups)."""
    names = ["preds", "target"]
    starts, end, type_, _, _ = _spans([preds, target], mask, prefixes, types, names, caller, scheme)  # (2, L) each
    correct = starts[0] & starts[1] & (end[0] == end[1]) & (type_[0] == type_[1])  # (L,)
    return torch.stack(
        [torch.bincount(type_[0][m], minlength=num_types) for m in (correct, starts[0])]
        + [torch.bincount(type_[1][starts[1]], minlength=num_types)],
        dim=1,
    )  # (num_types, 3)


def span_counts(
    preds: Tensor,
    target: Tensor,
    mask: Tensor,
    prefixes: Tensor,
    types: Tensor,
    num_types: int,
    *,
    mode: str | None = None,
    scheme: str | None = None,
) -> Tensor:
    """Per span type, the number of correct, predicted and gold spans of a batch.

    Args:
        preds: Predicted label ids ``(B, T)``, any integer dtype.
        target: Gold label ids ``(B, T)``, any integer dtype.
        mask: Bool tensor ``(B, T)``, True at the tokens of each sentence (the same for both).
        prefixes: Prefix code per label id ``(C,)``, from :func:`label_table`.
        types: Type id per label id ``(C,)``, from :func:`label_table`.
        num_types: Number of span types (``len(type_names)`` of :func:`label_table`).
        mode: None for conlleval's rules (seqeval's default), ``"strict"`` for seqeval's strict mode.
        scheme: With ``mode="strict"``, the tag scheme: one of :data:`STRICT_SCHEMES` (or seqeval's class of that
            name).

    Returns:
        int64 tensor ``(num_types, 3)`` of ``[correct, predicted, gold]`` per type; rows add up over batches
        (and processes) before :func:`span_f1_from_counts`.

    Raises:
        TypeError: If an argument has the wrong dtype.
        ValueError: If the shapes disagree, an id under ``mask`` is not in ``[0, C)``, a type id is not in
            ``[-1, num_types)``, or ``mode``/``scheme`` are not a valid pair.

    Example:
        >>> import torch
        >>> prefixes, types, names = label_table(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        >>> target = torch.tensor([[1, 2, 0, 3]])  # PER [0, 1], LOC [3, 3]
        >>> preds = torch.tensor([[1, 0, 0, 3]])  # PER [0, 0], LOC [3, 3]
        >>> span_counts(preds, target, torch.ones(1, 4, dtype=torch.bool), prefixes, types, len(names))
        tensor([[1, 1, 1],
                [0, 1, 1]])
    """
    prefixes, types, scheme = _checked({"preds": preds, "target": target}, mask, prefixes, types, mode, scheme,
                                       "span_counts")
    if isinstance(num_types, bool) or not isinstance(num_types, int) or num_types < 0:
        raise ValueError(
            f"span_counts: `num_types` must be a non-negative int, got {num_types!r}. Pass `len(type_names)` from "
            "`label_table(labels)`."
        )
    if types.numel() and not bool(((types >= -1) & (types < num_types)).all()):
        raise ValueError(
            f"span_counts: `types` must hold type ids in [-1, num_types={num_types}), got "
            f"{types.tolist()}. Pass `num_types=len(type_names)` from `label_table(labels)`."
        )
    return _span_counts(preds, target, mask, prefixes, types, num_types, scheme=scheme)


def _precision_recall_f1(correct: Tensor, predicted: Tensor, gold: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """float64 precision, recall and F1 (0 where undefined), in the order of operations of seqeval."""
    correct, predicted, gold = correct.double(), predicted.double(), gold.double()
    precision = torch.where(predicted > 0, correct / predicted.clamp(min=1), 0.0)
    recall = torch.where(gold > 0, correct / gold.clamp(min=1), 0.0)
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / torch.where(denominator > 0, denominator, 1.0), 0.0)
    return precision, recall, f1


def _averaged(counts: Tensor, average: str) -> tuple[Tensor, Tensor, Tensor]:
    """float64 precision, recall and F1 of ``counts`` ``(num_types, 3)`` under seqeval's ``average``.

    ``"micro"``: of the summed counts. ``"macro"``: the mean over the types with a predicted or gold span (seqeval's
    ``target_names``; 0 when there is none, where seqeval gives nan). ``"weighted"``: the mean weighted by the gold
    spans (0 when there is none, as seqeval gives).
    """
    if average == "micro":
        return _precision_recall_f1(*counts.sum(0))
    values = torch.stack(_precision_recall_f1(*counts.unbind(1)))  # (3, num_types)
    weights = (counts[:, 1] + counts[:, 2] > 0) if average == "macro" else counts[:, 2]  # (num_types,)
    weights = weights.double()
    total = weights.sum()
    return tuple((values * weights).sum(1) / torch.where(total > 0, total, 1.0))


def span_f1_from_counts(counts: Tensor, type_names: Sequence[str] | None = None, *, average: str = "micro") -> dict:
    """Precision, recall and F1 (``average`` over types), and the F1 of each type, from ``[correct, predicted,
    gold]`` counts.

    Undefined values (no predicted span for precision, no gold span for recall, both 0 for F1) are 0, as
    seqeval's default ``zero_division`` gives, without its warning. The micro values equal seqeval's to the last
    bit (same float64 operations); the macro and weighted ones sum in another order (equal to ~1e-16).

    Args:
        counts: Integer tensor ``(num_types, 3)`` from :func:`span_counts`, summed over batches.
        type_names: Names of the types, keys of ``"f1_per_type"`` (default: the type ids).
        average: ``"micro"`` (of the summed counts: conlleval's number), ``"macro"`` (the mean over the types
            that have a predicted or gold span, as seqeval takes it; 0 with none, where seqeval gives nan) or
            ``"weighted"`` (the mean weighted by each type's gold spans), seqeval's ``average``.

    Returns:
        ``{"precision": float, "recall": float, "f1": float, "f1_per_type": {name: float}}``.

    Raises:
        ValueError: If ``counts`` is not ``(num_types, 3)``, ``type_names`` has another length, or ``average``
            is not one of :data:`AVERAGES`.

    Example:
        >>> import torch
        >>> span_f1_from_counts(torch.tensor([[1, 1, 1], [0, 1, 1]]), ["LOC", "PER"])
        {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'f1_per_type': {'LOC': 1.0, 'PER': 0.0}}
        >>> span_f1_from_counts(torch.tensor([[1, 1, 1], [1, 3, 1], [0, 0, 0]]), average="macro")["f1"]  # (1 + 0.5) / 2
        0.75
    """
    if not isinstance(counts, Tensor) or counts.ndim != 2 or counts.shape[1] != 3:
        got = _shape(counts) if isinstance(counts, Tensor) else type(counts).__name__
        raise ValueError(
            f"span_f1_from_counts: `counts` must be a (num_types, 3) tensor of [correct, predicted, gold], got "
            f"{got}. Pass the output of `span_counts`."
        )
    _check_average(average, "span_f1_from_counts")
    names = list(range(counts.shape[0])) if type_names is None else list(type_names)
    if len(names) != counts.shape[0]:
        raise ValueError(
            f"span_f1_from_counts: `type_names` must name the {counts.shape[0]} rows of `counts`, got "
            f"{len(names)} names. Pass the `type_names` of `label_table(labels)`."
        )
    counts = counts.detach().cpu()
    precision, recall, f1 = _averaged(counts, average)
    per_type = _precision_recall_f1(*counts.unbind(1))[2].tolist()
    return {
        "precision": precision.item(),
        "recall": recall.item(),
        "f1": f1.item(),
        "f1_per_type": dict(zip(names, per_type)),
    }


def _check_average(average: str, caller: str) -> None:
    if average not in AVERAGES:
        raise ValueError(
            f"{caller}: `average` must be one of {', '.join(map(repr, AVERAGES))} (seqeval's), got {average!r}. "
            "The F1 of each type is in `f1_per_type`."
        )
