"""Tag schemes of sequence tagging (NER, chunking): the grammar, checks, spans, conversions and CRF masks.

A tag is ``"O"`` (outside any span) or ``"<prefix>-<TYPE>"`` with a one-letter prefix from ``B I O E S L U``:

- IOB1 (CoNLL-2003 files): ``I-X`` inside a span; ``B-X`` on the first token of a span that directly follows a
  span of the same type. ``B-X`` is also accepted at the start of any other span (after ``O``, another type, or
  at the start of a sentence): it is unambiguous (``B`` always starts a span, in every scheme and in conlleval),
  and the CoNLL-2003 files have it (``eng.train`` sentences 10227 and 11569: ``O B-MISC I-MISC``). So every
  ``B``/``I``/``O`` sequence is valid IOB1, IOB2 tags are valid IOB1, and ``convert_tags(tags, "IOB1", "IOB1")``
  writes the canonical form. A CRF over IOB1 tags is therefore unconstrained.
- IOB2: ``B-X`` on the first token of every span, ``I-X`` on the others.
- IOBES: ``S-X`` single-token span; ``B-X`` first, ``I-X`` middle, ``E-X`` last token of a longer span.
- BILOU: IOBES with ``U`` for ``S`` and ``L`` for ``E``.

:data:`GRAMMAR` states these rules once, as the moves each scheme allows between neighbouring tags; the checks
(:func:`check_tag_sequence`), the span reader (:func:`tag_spans`) and the CRF masks (:func:`allowed_transitions`)
all derive from it. Training in IOBES often helps a tagger (Lample et al. 2016, "Neural Architectures for Named
Entity Recognition"); :func:`convert_tags` converts the gold tags, and the span F1 of :mod:`.span_f1` reads all four.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "GRAMMAR",
    "SCHEMES",
    "allowed_transitions",
    "check_scheme",
    "check_tag_sequence",
    "convert_tags",
    "split_tag",
    "tag_spans",
    "tag_types",
]

SCHEMES = ("IOB1", "IOB2", "IOBES", "BILOU")
PREFIXES = "BIOESLU"
START, END = ("^", ""), ("$", "")  # the sentence boundaries, as (prefix, type) pseudo-tags
_CONTEXT = 2  # tags shown on each side of a violation


def _moves(before: str, after: str) -> dict[tuple[str, str], None]:
    """Every (previous prefix, next prefix) pair, in order (a dict as an ordered set)."""
    return dict.fromkeys(product(before, after))


class Grammar(NamedTuple):
    """The moves a scheme allows between neighbouring tags ``(prefix, type)``; ``^`` is the start, ``$`` the end.

    A move is allowed when its prefix pair is ``free`` (whatever the types), or ``continuing`` with both tags of the
    same type: then the next tag continues the previous tag's span. Any other move is forbidden, and so is any
    prefix the scheme does not use.
    """

    free: dict[tuple[str, str], None]
    continuing: dict[tuple[str, str], None]


# The one definition of the four schemes (see the module docstring).
GRAMMAR = {
    "IOB1": Grammar(free=_moves("^OBI", "OBI$"), continuing=_moves("BI", "I")),
    "IOB2": Grammar(free=_moves("^OBI", "OB$"), continuing=_moves("BI", "I")),
    "IOBES": Grammar(free=_moves("^OES", "OBS$"), continuing=_moves("BI", "IE")),
    "BILOU": Grammar(free=_moves("^OLU", "OBU$"), continuing=_moves("BI", "IL")),
}
# The prefixes each scheme uses.
_SCHEME_PREFIXES = {
    scheme: "".join(p for p in PREFIXES if any(p in pair for pair in (*rules.free, *rules.continuing)))
    for scheme, rules in GRAMMAR.items()
}
# The letters :func:`convert_tags` writes for (begin, inside, last, single); IOB1/IOB2 mark neither last nor single.
_LETTERS = {"IOB1": "BI", "IOB2": "BI", "IOBES": "BIES", "BILOU": "BILU"}


def _continues(previous: tuple[str, str], following: tuple[str, str], scheme: str) -> bool:
    """Whether the tag ``following`` continues the span of the tag ``previous`` in ``scheme``."""
    return (previous[0], following[0]) in GRAMMAR[scheme].continuing and previous[1] == following[1]


def _allows(previous: tuple[str, str], following: tuple[str, str], scheme: str) -> bool:
    """Whether ``scheme`` allows the tag ``following`` right after ``previous`` (``START``/``END`` at the edges)."""
    return (previous[0], following[0]) in GRAMMAR[scheme].free or _continues(previous, following, scheme)


def split_tag(tag: str) -> tuple[str, str]:
    """Split a tag into its prefix and its type: ``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``.

    Args:
        tag: ``"O"`` or ``"<prefix>-<TYPE>"`` with a prefix from ``B I O E S L U`` and a non-empty type (which
            may itself contain ``-``, as in ``"B-PER-NAME"``).

    Returns:
        ``(prefix, type)``; the type of ``"O"`` is ``""``.

    Raises:
        ValueError: If ``tag`` is not of that form (``"PER"``, ``"X-PER"``, ``"B-"``, ``"B"``, ``"O-PER"``).

    Example:
        >>> split_tag("B-PER"), split_tag("I-MISC"), split_tag("O")
        (('B', 'PER'), ('I', 'MISC'), ('O', ''))
    """
    if not isinstance(tag, str):
        raise ValueError(
            f"split_tag: a tag must be a string such as 'B-PER' or 'O', got {type(tag).__name__} {tag!r}. "
            "Map label ids back to their names first."
        )
    if tag == "O":
        return "O", ""
    if len(tag) >= 3 and tag[1] == "-" and tag[0] in PREFIXES and tag[0] != "O":
        return tag[0], tag[2:]
    if len(tag) >= 2 and tag[1] == "-" and tag[0] in PREFIXES and tag[0] != "O":
        problem = "its type is empty"
    elif len(tag) >= 2 and tag[1] == "-" and tag[0] == "O":
        problem = "'O' takes no type"
    elif len(tag) >= 2 and tag[1] == "-":
        problem = f"its prefix {tag[0]!r} is not one of B I E S L U"
    else:
        problem = "it has no one-letter prefix and '-'"
    raise ValueError(
        f"split_tag: malformed tag {tag!r} ({problem}). Expected 'O' or '<prefix>-<TYPE>' with a prefix from "
        "B I O E S L U, such as 'B-PER' or 'I-LOC'. Fix the label list (e.g. 'PER' -> 'B-PER'/'I-PER')."
    )


def tag_types(labels: Iterable[str]) -> list[str]:
    """The sorted span types named by ``labels``, e.g. ``["LOC", "PER"]``.

    Args:
        labels: Tags such as ``"B-PER"``, ``"O"``.

    Raises:
        ValueError: If a tag is malformed (see :func:`split_tag`).

    Example:
        >>> tag_types(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        ['LOC', 'PER']
    """
    return sorted({split_tag(label)[1] for label in labels} - {""})


def _check_scheme(scheme: str, name: str, caller: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(
            f"{caller}: `{name}` must be one of {', '.join(SCHEMES)}, got {scheme!r}. CoNLL-2003 files are "
            "IOB1; most Hugging Face datasets are IOB2."
        )


def _tag(tag: tuple[str, str]) -> str:
    return "O" if tag[0] == "O" else f"{tag[0]}-{tag[1]}"


def _reason(previous: tuple[str, str], following: tuple[str, str], scheme: str) -> str:
    """Why ``scheme`` forbids the move ``previous -> following``, read off :data:`GRAMMAR`."""
    rules = GRAMMAR[scheme]
    if not any(p == previous[0] for p, _ in rules.free):  # an open span: only its continuation may follow
        after = " or ".join(f"{n}-{previous[1]}" for p, n in rules.continuing if p == previous[0])
        return f"{_tag(previous)} must be followed by {after}" + (", not the end" if following == END else "")
    before = " or ".join(f"{p}-{following[1]}" for p, n in rules.continuing if n == following[0])
    return f"{_tag(following)} must follow {before}" + (", not the start" if previous == START else "")


def _violation(parsed: list[tuple[str, str]], scheme: str) -> tuple[int, str] | None:
    """The first ``(position, reason)`` at which ``parsed`` breaks ``scheme``, or None if it is valid."""
    prefixes = _SCHEME_PREFIXES[scheme]
    for i, (previous, following) in enumerate(zip([START, *parsed], [*parsed, END])):
        if following != END and following[0] not in prefixes:
            return i, f"prefix {following[0]!r} is not used by {scheme} (its prefixes are {' '.join(prefixes)})"
        if not _allows(previous, following, scheme):
            return min(i, len(parsed) - 1), _reason(previous, following, scheme)
    return None


def _parse(tags: Sequence[str], caller: str, where: str) -> list[tuple[str, str]]:
    parsed = []
    for i, tag in enumerate(tags):
        try:
            parsed.append(split_tag(tag))
        except ValueError as error:
            at = f"{where}, position {i}" if where else f"position {i}"
            raise ValueError(f"{caller} ({at}): {str(error).removeprefix('split_tag: ')}") from None
    return parsed


def _context(tags: Sequence[str], i: int) -> str:
    lo, hi = max(0, i - _CONTEXT), min(len(tags), i + _CONTEXT + 1)
    shown = [f"[{tag}]" if j == i else tag for j, tag in enumerate(tags[lo:hi], start=lo)]
    return ("... " if lo else "<start> ") + " ".join(shown) + (" ..." if hi < len(tags) else " <end>")


def check_scheme(name: str, scheme: str | None) -> None:
    """Raise a ``ValueError`` naming the argument ``name`` unless ``scheme`` is one of :data:`SCHEMES` or None."""
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"`{name}` must be one of {SCHEMES} or None, got {scheme!r}.")


def check_tag_sequence(tags: Sequence[str], scheme: str, where: str = "") -> None:
    """Raise a ``ValueError`` if the gold tag sequence ``tags`` breaks ``scheme``.

    The rules are those of :data:`GRAMMAR` (see the module docstring); a scheme admits only its own prefixes (IOB2
    has no ``E``/``S``). The message names the scheme, the position, the tags around it, ``where``, the schemes the
    sequence is valid in, and the fix.

    Args:
        tags: One sentence's tags, e.g. ``["B-PER", "I-PER", "O"]``.
        scheme: One of :data:`SCHEMES`.
        where: Where the sentence comes from, for the message, e.g. ``"train sentence 17"``.

    Raises:
        ValueError: If ``scheme`` is unknown, a tag is malformed, or the sequence breaks ``scheme``.

    Example:
        >>> check_tag_sequence(["B-PER", "I-PER", "O", "B-LOC"], "IOB2")
        >>> check_tag_sequence(["I-PER", "I-PER", "B-PER"], "IOB1")
        >>> check_tag_sequence(["O", "I-PER"], "IOB2", where="train sentence 17")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: check_tag_sequence (train sentence 17): the tags are not valid IOB2 at position 1: ...
    """
    _check_scheme(scheme, "scheme", "check_tag_sequence")
    parsed = _parse(tags, "check_tag_sequence", where)
    found = _violation(parsed, scheme)
    if found is None:
        return
    i, reason = found
    # The most specific scheme first: IOB1 accepts every IOB2 sequence.
    preference = ("IOBES", "BILOU", "IOB2", "IOB1")
    valid_in = [other for other in preference if other != scheme and _violation(parsed, other) is None]
    hint = (
        f"The sequence is valid {' and '.join(valid_in)}: declare `tag_scheme='{valid_in[0]}'`, or convert it "
        f"with `convert_tags(tags, source='{valid_in[0]}', target='{scheme}')`."
        if valid_in
        else f"Declare the `tag_scheme` the data uses, or fix the tags (convert with `convert_tags`) to {scheme}."
    )
    at = f" ({where})" if where else ""
    raise ValueError(
        f"check_tag_sequence{at}: the tags are not valid {scheme} at position {i}: {_context(tags, i)}; "
        f"{reason}. {hint}"
    )


def _spans_of_valid(parsed: list[tuple[str, str]], scheme: str) -> list[tuple[int, int, str]]:
    """``(start, end inclusive, type)`` spans of a sequence already checked against ``scheme``: a tag other than
    ``O`` starts a span unless it continues the previous tag's (:data:`GRAMMAR`)."""
    spans: list[tuple[int, int, str]] = []
    for i, (previous, tag) in enumerate(zip([START, *parsed], parsed)):
        if _continues(previous, tag, scheme):
            spans[-1] = (spans[-1][0], i, tag[1])
        elif tag[0] != "O":
            spans.append((i, i, tag[1]))
    return spans


def tag_spans(tags: Sequence[str], scheme: str) -> list[tuple[int, int, str]]:
    """The spans ``(start, end inclusive, type)`` of a tag sequence valid in ``scheme``.

    Args:
        tags: One sentence's tags.
        scheme: One of :data:`SCHEMES`; the sequence is checked against it first.

    Raises:
        ValueError: If ``scheme`` is unknown or ``tags`` is not valid in it (see :func:`check_tag_sequence`).

    Example:
        >>> tag_spans(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1")
        [(0, 1, 'PER'), (2, 2, 'PER'), (4, 4, 'LOC')]
    """
    check_tag_sequence(tags, scheme)
    return _spans_of_valid(_parse(tags, "tag_spans", ""), scheme)


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert one sentence's tags from the ``source`` scheme to the ``target`` scheme (via its spans).

    Args:
        tags: One sentence's tags, valid in ``source``.
        source: The scheme of ``tags``, one of :data:`SCHEMES`.
        target: The scheme to write, one of :data:`SCHEMES`.

    Returns:
        The same spans tagged in ``target``.

    Raises:
        ValueError: If a scheme is unknown or ``tags`` is not valid ``source`` (see :func:`check_tag_sequence`).

    Example:
        >>> convert_tags(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1", "IOBES")
        ['B-PER', 'E-PER', 'S-PER', 'O', 'S-LOC']
        >>> convert_tags(["B-PER", "E-PER", "S-PER", "O", "S-LOC"], "IOBES", "IOB1")
        ['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC']
    """
    _check_scheme(source, "source", "convert_tags")
    _check_scheme(target, "target", "convert_tags")
    spans = tag_spans(tags, source)
    begin, inside, *last_single = _LETTERS[target]
    out = ["O"] * len(tags)
    previous_end, previous_type = -2, ""
    for start, end, type_ in spans:
        out[start : end + 1] = [f"{inside}-{type_}"] * (end + 1 - start)
        if last_single:
            last, single = last_single
            if start == end:
                out[start] = f"{single}-{type_}"
            else:
                out[start], out[end] = f"{begin}-{type_}", f"{last}-{type_}"
        elif target == "IOB2" or (previous_end == start - 1 and previous_type == type_):
            out[start] = f"B-{type_}"
        previous_end, previous_type = end, type_
    return out


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """Masks of the tag moves ``scheme`` allows (:data:`GRAMMAR`), for :class:`~rnn_lightning.nn.CRF`.

    Args:
        labels: tag names in index order, each ``"O"`` or ``"<prefix>-<TYPE>"`` (e.g. ``"B-PER"``) with a prefix
            that ``scheme`` uses.
        scheme: One of :data:`SCHEMES`.

    Returns:
        ``start`` (C,), ``transitions`` (C, C) [from, to] and ``end`` (C,) bool tensors: True where a sequence may
        start with a tag, where tag ``j`` may follow tag ``i``, where a sequence may end with a tag. Pass them as
        ``CRF(C, transitions, allowed_start=start, allowed_end=end)``.

    Raises:
        ValueError: If ``scheme`` is unknown, or ``labels`` is empty, repeats a tag, or holds a malformed tag or one
            whose prefix ``scheme`` does not use.

    Example:
        >>> start, trans, end = allowed_transitions(["O", "B-LOC", "I-LOC"], "IOB2")
        >>> start.tolist(), trans[0].tolist(), end.tolist()
        ([True, True, False], [True, True, False], [True, True, True])
    """
    _check_scheme(scheme, "scheme", "allowed_transitions")
    if isinstance(labels, str) or len(labels) == 0:
        raise ValueError(
            f"allowed_transitions: `labels` must be a non-empty sequence of tag names, got {labels!r}. Pass the tag "
            "of each label id, e.g. ['O', 'B-PER', 'I-PER']."
        )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"allowed_transitions: `labels` must name each tag once, got duplicates {repeated}. Pass each tag name "
            "once, in index order."
        )
    parsed = _parse(labels, "allowed_transitions", "`labels`")
    for i, (prefix, _) in enumerate(parsed):
        if prefix not in _SCHEME_PREFIXES[scheme]:
            raise ValueError(
                f"allowed_transitions: `labels[{i}]` is {labels[i]!r}, but {scheme} has no prefix {prefix!r} (its "
                f"prefixes are {' '.join(_SCHEME_PREFIXES[scheme])}). Pass the scheme the labels use, or drop special "
                "labels such as padding."
            )
    start = torch.tensor([_allows(START, tag, scheme) for tag in parsed])  # (C,)
    transitions = torch.tensor([[_allows(a, b, scheme) for b in parsed] for a in parsed])  # (C, C) [from, to]
    end = torch.tensor([_allows(tag, END, scheme) for tag in parsed])  # (C,)
    return start, transitions, end
