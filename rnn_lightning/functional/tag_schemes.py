"""Tag schemes of sequence tagging (NER, chunking): parse tags, check a gold sequence, convert between schemes.

A tag is ``"O"`` (outside any span) or ``"<prefix>-<TYPE>"`` with a one-letter prefix from ``B I O E S L U``:

- IOB1 (CoNLL-2003 files): ``I-X`` inside a span; ``B-X`` on the first token of a span that directly follows a
  span of the same type. :func:`check_tag_sequence` also accepts ``B-X`` at the start of any other span: it is
  unambiguous (``B`` always starts a span, in every scheme and in conlleval), and the CoNLL-2003 files have it
  (``eng.train`` sentences 10227 and 11569: ``O B-MISC I-MISC``). So IOB2 tags are valid IOB1, and
  ``convert_tags(tags, "IOB1", "IOB1")`` writes the canonical form.
- IOB2: ``B-X`` on the first token of every span, ``I-X`` on the others.
- IOBES: ``S-X`` single-token span; ``B-X`` first, ``I-X`` middle, ``E-X`` last token of a longer span.
- BILOU: IOBES with ``U`` for ``S`` and ``L`` for ``E``.

Training in IOBES often helps a tagger (Lample et al. 2016, "Neural Architectures for Named Entity
Recognition"); :func:`convert_tags` converts the gold tags, and the span F1 of :mod:`.span_f1` reads all four.

This module is plain Python: it imports neither torch nor lightning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["SCHEMES", "check_tag_sequence", "convert_tags", "split_tag", "tag_spans", "tag_types"]

SCHEMES = ("IOB1", "IOB2", "IOBES", "BILOU")
PREFIXES = "BIOESLU"
_SCHEME_PREFIXES = {"IOB1": "BIO", "IOB2": "BIO", "IOBES": "BIOES", "BILOU": "BILOU"}
# The scheme's letters for (begin, inside, last, single); IOB1/IOB2 mark neither last nor single tokens.
_LETTERS = {"IOB1": "BI", "IOB2": "BI", "IOBES": "BIES", "BILOU": "BILU"}
_CONTEXT = 2  # tags shown on each side of a violation


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


def _violation(parsed: list[tuple[str, str]], scheme: str) -> tuple[int, str] | None:
    """The first ``(position, reason)`` at which ``parsed`` breaks ``scheme``, or None if it is valid."""
    allowed = _SCHEME_PREFIXES[scheme]
    begin, inside, *last_single = _LETTERS[scheme]
    last = last_single[0] if last_single else None
    for i, (prefix, type_) in enumerate(parsed):
        if prefix not in allowed:
            return i, f"prefix {prefix!r} is not used by {scheme} (its prefixes are {' '.join(allowed)})"
        prev_prefix, prev_type = parsed[i - 1] if i else ("O", "")
        opens = prev_prefix in (begin, inside)  # the previous tag leaves a span open (IOBES/BILOU)
        if scheme == "IOB1":
            continue  # B-X may start any span (see the module docstring); I-X may too
        if scheme == "IOB2":
            if prefix == "I" and (prev_prefix == "O" or prev_type != type_):
                return i, f"I-{type_} must follow B-{type_} or I-{type_}"
        else:
            if prefix in (inside, last) and not (opens and prev_type == type_):
                return i, f"{prefix}-{type_} must follow {begin}-{type_} or {inside}-{type_}"
            if prefix not in (inside, last) and opens:
                return i, f"{prev_prefix}-{prev_type} must be followed by {inside}-{prev_type} or {last}-{prev_type}"
            if prefix in (begin, inside) and i + 1 == len(parsed):
                return i, f"{prefix}-{type_} must be followed by {inside}-{type_} or {last}-{type_}, not the end"
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


def check_tag_sequence(tags: Sequence[str], scheme: str, where: str = "") -> None:
    """Raise a ``ValueError`` if the gold tag sequence ``tags`` breaks ``scheme``.

    The rules (``X`` a type): IOB1: any ``B``/``I``/``O`` sequence (``B-X`` is required only directly after a
    span of type ``X``, and accepted elsewhere: see the module docstring). IOB2: ``I-X`` only after
    ``B-X``/``I-X``. IOBES: ``B-X``/``I-X`` followed by ``I-X``/``E-X``, ``I-X``/``E-X`` only after
    ``B-X``/``I-X``, ``S-X`` on its own. BILOU: as IOBES with ``L`` and ``U``. A scheme admits only its own
    prefixes (IOB2 has no ``E``/``S``). The message names the scheme, the position, the tags around it,
    ``where``, the schemes the sequence is valid in, and the fix.

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
    """``(start, end inclusive, type)`` spans of a sequence already checked against ``scheme``."""
    begin, inside = _LETTERS[scheme][:2]
    spans: list[tuple[int, int, str]] = []
    for i, (prefix, type_) in enumerate(parsed):
        if prefix == "O":
            continue
        prev_prefix, prev_type = parsed[i - 1] if i else ("O", "")
        # In IOB1 an I-X starts a span after O or another type; B-X always starts one (after the same type).
        # In the other (checked) schemes only the begin/single prefixes start a span.
        continues = prefix not in (begin, "S", "U") and prev_prefix != "O" and prev_type == type_
        if continues and spans and spans[-1][1] == i - 1:
            spans[-1] = (spans[-1][0], i, type_)
        else:
            spans.append((i, i, type_))
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
