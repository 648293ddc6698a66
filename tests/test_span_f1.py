"""Tests for ``rnn_lightning.functional.span_f1``, ``.tag_schemes`` and ``rnn_lightning.metrics.SpanF1``.

The reference is seqeval 1.x in its default (conlleval) mode: ``get_entities`` for the spans,
``precision_score``/``recall_score``/``f1_score`` and ``classification_report`` for the scores; and in its strict
mode (``mode="strict"``, ``scheme=IOB2/IOBES/BILOU``): ``seqeval.scheme.Entities`` for the spans, the same functions
for the scores; with the micro, macro and weighted averages.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import BILOU, IOB2, IOBES, Entities

from rnn_lightning.functional.span_f1 import (
    AVERAGES,
    STRICT_SCHEMES,
    extract_spans,
    label_table,
    span_counts,
    span_f1_from_counts,
    tags_to_ids,
)
from rnn_lightning.functional.tag_schemes import (
    SCHEMES,
    allowed_transitions,
    check_tag_sequence,
    convert_tags,
    split_tag,
    tag_spans,
    tag_types,
)
from rnn_lightning.metrics.span_f1 import SpanF1

TYPES = ("LOC", "PER", "MISC")
CONLL = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
SETTINGS = settings(max_examples=200, deadline=None)


def labels_for(types, prefixes="BIES"):
    return ["O"] + [f"{p}-{t}" for t in types for p in prefixes]


SEQEVAL_SCHEMES = {"IOB2": IOB2, "IOBES": IOBES, "BILOU": BILOU}
SCHEME_PREFIXES = {"IOB2": "BI", "IOBES": "BIES", "BILOU": "BILU"}


def our_spans(sentences, labels, **strict):
    """``[[(type, start, end), ...] per sentence]`` from :func:`extract_spans` (``mode``/``scheme`` in ``strict``)."""
    prefixes, types, names = label_table(labels)
    ids, mask = tags_to_ids(sentences, labels)
    out = [[] for _ in sentences]
    for row, start, end, type_ in extract_spans(ids, mask, prefixes, types, **strict).tolist():
        out[row].append((names[type_], start, end))
    return out


def our_scores(y_true, y_pred, labels, average="micro", **strict):
    prefixes, types, names = label_table(labels)
    target, mask = tags_to_ids(y_true, labels)
    preds, _ = tags_to_ids(y_pred, labels)
    counts = span_counts(preds, target, mask, prefixes, types, len(names), **strict)
    return span_f1_from_counts(counts, names, average=average)


# -- strategies -------------------------------------------------------------------------------------------------
@st.composite
def tagged_batches(draw, prefixes="BIES", max_len=12):
    """``(labels, gold, pred)``: random (often ill-formed) tag sentences; ``pred`` copies gold at random places."""
    types = TYPES[: draw(st.integers(2, 3))]
    labels = labels_for(types, prefixes)
    tag = st.sampled_from(labels)
    gold = draw(st.lists(st.lists(tag, max_size=max_len), min_size=1, max_size=6))
    pred = [[draw(st.one_of(st.just(t), tag)) for t in sentence] for sentence in gold]
    return labels, gold, pred


def encode(spans, length, scheme):
    """Independent writer: the tags of ``spans`` ``[(start, end, type)]`` (sorted, disjoint) in ``scheme``."""
    tags = ["O"] * length
    previous = None
    for start, end, type_ in spans:
        if scheme in ("IOBES", "BILOU"):
            single, begin, inside, last = ("S", "B", "I", "E") if scheme == "IOBES" else ("U", "B", "I", "L")
            if start == end:
                tags[start] = f"{single}-{type_}"
            else:
                middle = [f"{inside}-{type_}"] * (end - start - 1)
                tags[start : end + 1] = [f"{begin}-{type_}", *middle, f"{last}-{type_}"]
        else:
            adjacent = previous is not None and previous[1] == start - 1 and previous[2] == type_
            first = "B" if scheme == "IOB2" or adjacent else "I"
            tags[start : end + 1] = [f"{first}-{type_}"] + [f"I-{type_}"] * (end - start)
        previous = (start, end, type_)
    return tags


@st.composite
def span_sets(draw):
    """``(spans, length)``: sorted disjoint spans ``(start, end, type)``, often adjacent and of equal type."""
    pieces = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3), st.sampled_from(TYPES[:2])), max_size=6))
    spans, position = [], 0
    for gap, width, type_ in pieces:
        position += gap
        spans.append((position, position + width - 1, type_))
        position += width
    return spans, position + draw(st.integers(0, 2))


# -- (a) hand examples ------------------------------------------------------------------------------------------
def test_hand_examples_of_conlleval_decoding():
    sentences = [
        ["B-PER", "I-PER", "O", "B-LOC"],  # IOB2
        ["I-PER", "I-PER", "B-PER", "O", "I-LOC"],  # IOB1: B after the same type starts a new span
        ["B-PER", "E-PER", "S-LOC", "O"],  # IOBES
        ["O", "I-PER", "I-LOC", "E-LOC", "E-LOC"],  # ill-formed: type change ends, E after E starts
        ["B-PER", "L-PER", "U-LOC"],  # BILOU reads as IOBES
        [],
    ]
    labels = labels_for(("LOC", "PER"), "BIESLU")
    assert our_spans(sentences, labels) == [
        [("PER", 0, 1), ("LOC", 3, 3)],
        [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)],
        [("PER", 0, 1), ("LOC", 2, 2)],
        [("PER", 1, 1), ("LOC", 2, 3), ("LOC", 4, 4)],
        [("PER", 0, 1), ("LOC", 2, 2)],
        [],
    ]


def test_hand_example_scores():
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = our_scores(y_true, y_pred, CONLL)
    assert scores == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "f1_per_type": {"LOC": 0.0, "MISC": 0.0, "ORG": 0.0, "PER": 1.0},
    }


def test_no_spans_gives_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert our_scores([["O", "O"]], [["O", "O"]], CONLL)["f1"] == 0.0
        metric = SpanF1(CONLL)
        metric.update(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
        assert metric.compute().item() == 0.0


def test_spans_may_run_across_masked_positions():
    labels = labels_for(("PER",), "BI")  # O B-PER I-PER
    ids = torch.tensor([[1, 0, 2, 2, 0]])  # B-PER [O] I-PER I-PER O, the O masked (a word piece)
    mask = torch.tensor([[True, False, True, True, True]])
    prefixes, types, _ = label_table(labels)
    assert extract_spans(ids, mask, prefixes, types).tolist() == [[0, 0, 3, 0]]


# -- (b) property tests against seqeval ------------------------------------------------------------------------
def as_iobes(sentences):
    """BILOU spelled as IOBES (seqeval knows no L/U): the spans seqeval should find."""
    return [[t.replace("L-", "E-").replace("U-", "S-") for t in s] for s in sentences]


@SETTINGS
@given(tagged_batches(prefixes="BIESLU"))
def test_spans_and_scores_equal_seqeval(batch):
    labels, gold, pred = batch
    for sentences in (gold, pred):
        assert our_spans(sentences, labels) == [get_entities(s) for s in as_iobes(sentences)]
    ours = our_scores(gold, pred, labels)
    gold, pred = as_iobes(gold), as_iobes(pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval's zero-division warnings
        assert ours["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-9)
        assert ours["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-9)
        assert ours["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-9)
        report = classification_report(gold, pred, output_dict=True)
    for name, f1 in ours["f1_per_type"].items():
        assert f1 == pytest.approx(report[name]["f1-score"] if name in report else 0.0, abs=1e-9)
    assert set(report) - {"micro avg", "macro avg", "weighted avg"} <= set(ours["f1_per_type"])


@SETTINGS
@given(tagged_batches(), st.integers(0, 2**32 - 1))
def test_masked_positions_are_removed(batch, seed):
    """Dropping positions with the mask gives seqeval's spans of the sentence without them (column-mapped)."""
    labels, gold, _ = batch
    prefixes, types, names = label_table(labels)
    ids, mask = tags_to_ids(gold, labels)
    generator = torch.Generator().manual_seed(seed)
    keep = mask & (torch.rand(mask.shape, generator=generator) < 0.7)
    ids = torch.where(mask, ids, torch.randint(len(labels), ids.shape, generator=generator))  # garbage padding
    got = [[] for _ in gold]
    for row, start, end, type_ in extract_spans(ids, keep, prefixes, types).tolist():
        got[row].append((names[type_], start, end))
    expected = []
    for row, sentence in enumerate(gold):
        cols = [j for j in range(len(sentence)) if keep[row, j]]
        expected.append([(t, cols[s], cols[e]) for t, s, e in get_entities([sentence[j] for j in cols])])
    assert got == expected


def assert_scores_equal_seqeval(gold, pred, labels, **strict):
    """Our scores under each average equal seqeval's ``classification_report`` rows and ``f1_score`` (``strict``:
    ``mode``/``scheme``, passed to seqeval with its scheme class). seqeval's nan (a macro mean over no type) is 0."""
    theirs = {**strict, "scheme": SEQEVAL_SCHEMES[strict["scheme"]]} if strict else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval's zero-division and empty-mean warnings
        report = classification_report(gold, pred, output_dict=True, **theirs)
        for average in AVERAGES:
            ours = our_scores(gold, pred, labels, average, **strict)
            row = report[f"{average} avg"]
            expected = [
                row["precision"],
                row["recall"],
                row["f1-score"],
                f1_score(gold, pred, average=average, **theirs),
            ]
            expected = [0.0 if e != e else e for e in expected]
            got = [ours["precision"], ours["recall"], ours["f1"], ours["f1"]]
            assert got == pytest.approx(expected, abs=1e-12), average
    for name, f1 in ours["f1_per_type"].items():
        assert f1 == pytest.approx(report[name]["f1-score"] if name in report else 0.0, abs=1e-12)
    assert set(report) - {"micro avg", "macro avg", "weighted avg"} <= set(ours["f1_per_type"])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(STRICT_SCHEMES), st.data())
def test_strict_spans_and_scores_equal_seqeval(scheme, data):
    """Random (often ill-formed) sentences in the scheme's prefixes: seqeval's strict spans and scores."""
    labels, gold, pred = data.draw(tagged_batches(prefixes=SCHEME_PREFIXES[scheme]))
    for sentences in (gold, pred):
        expected = [
            [(e.tag, e.start, e.end - 1) for e in sentence]
            for sentence in Entities(sentences, SEQEVAL_SCHEMES[scheme]).entities
        ]
        assert our_spans(sentences, labels, mode="strict", scheme=scheme) == expected
    assert_scores_equal_seqeval(gold, pred, labels, mode="strict", scheme=scheme)


@settings(max_examples=100, deadline=None)
@given(tagged_batches(prefixes="BIES"))
def test_averages_equal_seqeval_in_default_mode(batch):
    labels, gold, pred = batch
    assert_scores_equal_seqeval(gold, pred, labels)


def test_strict_hand_examples():
    """The pieces strict mode refuses and conlleval reads as spans."""
    sentences = [
        ["I-PER", "I-PER", "O", "B-LOC", "I-LOC"],  # IOB2: I-X after O (or first) starts nothing
        ["B-PER", "I-LOC", "I-LOC", "B-PER"],  # I-LOC after B-PER: no span; B-PER alone is one
    ]
    labels = labels_for(("LOC", "PER"), "BI")
    assert our_spans(sentences, labels, mode="strict", scheme="IOB2") == [
        [("LOC", 3, 4)],
        [("PER", 0, 0), ("PER", 3, 3)],
    ]
    assert our_spans(sentences, labels)[0] == [("PER", 0, 1), ("LOC", 3, 4)]
    iobes = [["B-PER", "I-PER", "O", "S-LOC", "B-LOC", "E-LOC", "E-LOC", "B-PER"]]  # unfinished B..I, a lone E
    assert our_spans(iobes, labels_for(("LOC", "PER"), "BIES"), mode="strict", scheme="IOBES") == [
        [("LOC", 3, 3), ("LOC", 4, 5)]
    ]
    bilou = [["U-PER", "B-LOC", "L-LOC", "B-LOC", "O"]]
    assert our_spans(bilou, labels_for(("LOC", "PER"), "BILU"), mode="strict", scheme=BILOU) == [
        [("PER", 0, 0), ("LOC", 1, 2)]
    ]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(STRICT_SCHEMES), st.sampled_from(AVERAGES), st.integers(1, 3), st.data())
def test_strict_metric_accumulates_like_one_batch(scheme, average, chunk, data):
    labels, gold, pred = data.draw(tagged_batches(prefixes=SCHEME_PREFIXES[scheme]))
    expected = our_scores(gold, pred, labels, average, mode="strict", scheme=scheme)
    metric = SpanF1(labels, average, mode="strict", scheme=scheme)
    for lo in range(0, len(gold), chunk):
        target, mask = tags_to_ids(gold[lo : lo + chunk], labels)
        preds, _ = tags_to_ids(pred[lo : lo + chunk], labels)
        metric.update(preds, torch.where(mask, target, -100))
    assert metric.report() == expected
    assert metric.compute().item() == pytest.approx(expected["f1"], abs=1e-6)


def test_strict_and_average_argument_errors():
    prefixes, types, names = label_table(CONLL)
    ids, mask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    with pytest.raises(ValueError, match=r"span_counts: `mode` must be None .* or 'strict', got 'lenient'"):
        span_counts(ids, ids, mask, prefixes, types, 4, mode="lenient")
    with pytest.raises(
        ValueError, match=r"extract_spans: mode='strict' needs `scheme` to be one of IOB2, IOBES, BILOU"
    ):
        extract_spans(ids, mask, prefixes, types, mode="strict")
    with pytest.raises(ValueError, match=r"got 'IOB1' \(seqeval's strict IOB1 is not supported: convert"):
        extract_spans(ids, mask, prefixes, types, mode="strict", scheme="IOB1")
    with pytest.raises(ValueError, match=r"`scheme` applies only with mode='strict'.*got scheme='IOB2'"):
        span_counts(ids, ids, mask, prefixes, types, 4, scheme=IOB2)
    iobes_prefixes, iobes_types, _ = label_table(labels_for(("PER",), "BIES"))
    with pytest.raises(ValueError, match=r"`prefixes` must use only the prefixes of IOB2 \(O B I\)"):
        extract_spans(ids, mask, iobes_prefixes, iobes_types, mode="strict", scheme="IOB2")
    with pytest.raises(ValueError, match=r"SpanF1: `labels\[3\]` is 'E-PER', but IOB2 has no prefix 'E'"):
        SpanF1(labels_for(("PER",), "BIES"), mode="strict", scheme="IOB2")
    with pytest.raises(ValueError, match=r"SpanF1: mode='strict' needs `scheme`"):
        SpanF1(CONLL, mode="strict")
    with pytest.raises(ValueError, match=r"span_f1_from_counts: `average` must be one of 'micro', 'macro', 'weighted'"):
        span_f1_from_counts(torch.zeros(2, 3, dtype=torch.long), average="samples")
    assert span_f1_from_counts(torch.zeros(2, 3, dtype=torch.long), average="macro")["f1"] == 0.0  # seqeval: nan
    assert SpanF1(CONLL, "weighted", mode="strict", scheme=IOB2).scheme == "IOB2"  # seqeval's class names it


# -- (c) tag schemes -------------------------------------------------------------------------------------------
@SETTINGS
@given(span_sets())
def test_valid_sequences_are_accepted_and_convert(spans_length):
    spans, length = spans_length
    tags = {scheme: encode(spans, length, scheme) for scheme in SCHEMES}
    for source, target in itertools.product(SCHEMES, SCHEMES):
        check_tag_sequence(tags[source], source)
        assert tag_spans(tags[source], source) == spans
        assert convert_tags(tags[source], source, target) == tags[target]


@SETTINGS
@given(st.sampled_from(SCHEMES), st.data())
def test_check_accepts_exactly_the_sequences_its_scheme_writes(scheme, data):
    """Valid iff re-writing its (conlleval-decoded) spans in the scheme gives the sequence back; IOB1 also admits a
    B-X that starts any span (as CoNLL-2003's eng.train has), so there only the prefixes matter. Valid sequences
    keep their spans through ``convert_tags``."""
    prefixes = {"IOB1": "BI", "IOB2": "BI", "IOBES": "BIES", "BILOU": "BILU"}[scheme]
    tags = data.draw(
        st.lists(st.sampled_from(labels_for(TYPES[:2], prefixes + "ES"[: data.draw(st.integers(0, 2))])), max_size=8)
    )
    decoded = get_entities([t.replace("L-", "E-").replace("U-", "S-") for t in tags])
    canonical = encode([(s, e, t) for t, s, e in decoded], len(tags), scheme)
    expected = all(t[0] in "BIO" for t in tags) if scheme == "IOB1" else canonical == tags
    try:
        check_tag_sequence(tags, scheme)
        valid = True
    except ValueError as error:
        valid = False
        assert scheme in str(error) and "position" in str(error)
    assert valid == expected
    if valid:
        assert convert_tags(tags, scheme, scheme) == canonical


VIOLATIONS = [
    ("IOB1", ["I-PER", "E-PER"], 1),
    ("IOB1", ["O", "S-PER"], 1),
    ("IOB2", ["I-PER"], 0),
    ("IOB2", ["O", "O", "I-PER", "O"], 2),
    ("IOB2", ["B-LOC", "I-PER"], 1),
    ("IOB2", ["B-PER", "S-PER"], 1),
    ("IOBES", ["B-PER"], 0),
    ("IOBES", ["B-PER", "O"], 1),
    ("IOBES", ["B-PER", "I-PER"], 1),
    ("IOBES", ["I-PER", "E-PER"], 0),
    ("IOBES", ["B-PER", "E-LOC"], 1),
    ("IOBES", ["O", "E-PER"], 1),
    ("IOBES", ["S-PER", "E-PER"], 1),
    ("IOBES", ["B-PER", "S-PER"], 1),
    ("IOBES", ["B-PER", "L-PER"], 1),
    ("BILOU", ["B-PER", "O"], 1),
    ("BILOU", ["U-PER", "L-PER"], 1),
    ("BILOU", ["S-PER"], 0),
]


@pytest.mark.parametrize("scheme, tags, position", VIOLATIONS)
def test_check_rejects_violations_naming_the_position(scheme, tags, position):
    with pytest.raises(ValueError, match=rf"not valid {scheme} at position {position}: .*\[{tags[position]}\]") as e:
        check_tag_sequence(tags, scheme, where="train sentence 17")
    assert "train sentence 17" in str(e.value) and "convert" in str(e.value)


def test_iob1_accepts_b_at_the_start_of_any_span():
    tags = ["O", "O", "B-MISC", "I-MISC", "O"]  # CoNLL-2003 eng.train sentence 10227 (from position 10)
    check_tag_sequence(tags, "IOB1")
    assert convert_tags(tags, "IOB1", "IOB1") == ["O", "O", "I-MISC", "I-MISC", "O"]
    assert convert_tags(tags, "IOB1", "IOBES") == ["O", "O", "B-MISC", "E-MISC", "O"]


def test_check_suggests_the_scheme_the_data_uses():
    with pytest.raises(ValueError, match="valid IOB1: declare `tag_scheme='IOB1'`"):
        check_tag_sequence(["I-PER", "I-PER", "O"], "IOB2")


def accepted(tags, scheme):
    try:
        check_tag_sequence(tags, scheme)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("scheme", SCHEMES)
def test_crf_masks_allow_exactly_what_the_check_accepts(scheme):
    """For every (previous, next) pair of tags of two types, and every tag at the start and at the end: the masks of
    ``allowed_transitions`` allow the move iff ``check_tag_sequence`` accepts some sentence with it (the pair, with
    at most one tag before and after it); and a sentence of up to three tags is accepted iff every move is allowed."""
    labels = labels_for(("LOC", "PER"), {"IOB1": "BI", "IOB2": "BI", "IOBES": "BIES", "BILOU": "BILU"}[scheme])
    start, trans, end = (mask.tolist() for mask in allowed_transitions(labels, scheme))
    around = [[]] + [[label] for label in labels]  # nothing, or one tag
    for i, a in enumerate(labels):
        assert start[i] == any(accepted([a, *after], scheme) for after in around), (scheme, "start", a)
        assert end[i] == any(accepted([*before, a], scheme) for before in around), (scheme, a, "end")
        for j, b in enumerate(labels):
            found = any(accepted([*before, a, b, *after], scheme) for before in around for after in around)
            assert trans[i][j] == found, (scheme, a, b)
    for length in range(1, 4):
        for path in itertools.product(range(len(labels)), repeat=length):
            allowed = start[path[0]] and end[path[-1]] and all(trans[x][y] for x, y in zip(path, path[1:]))
            assert accepted([labels[y] for y in path], scheme) == allowed, (scheme, [labels[y] for y in path])


def test_iob1_masks_allow_b_after_o_and_first():
    labels = ["O", "B-MISC", "I-MISC"]
    start, trans, end = allowed_transitions(labels, "IOB1")
    assert start.all() and trans.all() and end.all()  # every B/I/O sequence is valid IOB1
    check_tag_sequence(["B-MISC", "I-MISC", "O", "B-MISC", "I-MISC"], "IOB1")


@pytest.mark.parametrize("scheme", ["iob2", "BIO", ""])
def test_unknown_scheme(scheme):
    with pytest.raises(ValueError, match="`scheme` must be one of IOB1, IOB2, IOBES, BILOU"):
        check_tag_sequence(["O"], scheme)
    with pytest.raises(ValueError, match="`target` must be one of"):
        convert_tags(["O"], "IOB2", scheme)


# -- (d) the metric --------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(tagged_batches(), st.integers(1, 3), st.booleans())
def test_metric_accumulates_like_one_batch(batch, chunk, scores):
    labels, gold, pred = batch
    expected = our_scores(gold, pred, labels)
    metric = SpanF1(labels)
    for lo in range(0, len(gold), chunk):
        target, mask = tags_to_ids(gold[lo : lo + chunk], labels)
        preds, _ = tags_to_ids(pred[lo : lo + chunk], labels)
        target = torch.where(mask, target, -100)
        preds = torch.where(mask, preds, torch.randint_like(preds, len(labels)))  # padding: any prediction
        if scores:
            preds = torch.nn.functional.one_hot(preds, len(labels)).float() + 0.1 * torch.rand(*preds.shape, 1)
        metric.update(preds, target)
    assert metric.report() == expected
    assert metric.compute().item() == pytest.approx(expected["f1"], abs=1e-6)


def test_padding_never_produces_spans():
    labels = labels_for(("PER",), "BIES")
    prefixes, types, _ = label_table(labels)
    ids = torch.tensor([[1, 4, 2, 3], [2, 2, 2, 4]])  # B-PER S-PER I-PER E-PER ...
    mask = torch.zeros_like(ids, dtype=torch.bool)
    assert extract_spans(ids, mask, prefixes, types).shape == (0, 4)
    mask[0, 0] = True  # one B-PER, then padding full of span tags: the span ends at the last token
    assert extract_spans(ids, mask, prefixes, types).tolist() == [[0, 0, 0, 0]]
    metric = SpanF1(labels)
    metric.update(ids, torch.full_like(ids, -100))
    metric.update(ids, ids, mask=torch.zeros_like(mask))
    assert metric.counts.sum().item() == 0


def test_metric_keeps_int64_counts_under_dtype_casts():
    metric = SpanF1(CONLL)
    metric.set_dtype(torch.float16)
    metric = metric.to(torch.float64)
    assert metric.counts.dtype == torch.long and metric.prefixes.dtype == torch.long
    metric.update(torch.tensor([[1, 2]]), torch.tensor([[1, 2]]))
    assert metric.compute().item() == 1.0
    metric.reset()
    assert metric.counts.dtype == torch.long and metric.counts.sum() == 0


# -- (e) errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tag, problem",
    [
        ("PER", "no one-letter prefix"),
        ("X-PER", "prefix 'X'"),
        ("B-", "type is empty"),
        ("B", "no one-letter prefix"),
        ("O-PER", "'O' takes no type"),
        ("b-PER", "prefix 'b'"),
    ],
)
def test_malformed_tags(tag, problem):
    with pytest.raises(ValueError, match=rf"malformed tag '{tag}' \(.*{problem}.*Expected 'O' or '<prefix>-<TYPE>'"):
        split_tag(tag)
    with pytest.raises(ValueError, match=rf"SpanF1: `labels\[1\]`: malformed tag '{tag}'"):
        SpanF1(["O", tag])
    with pytest.raises(ValueError, match=rf"\(where, position 1\): malformed tag '{tag}'"):
        check_tag_sequence(["O", tag], "IOB2", where="where")


def test_split_tag_and_tag_types():
    assert split_tag("B-PER-NAME") == ("B", "PER-NAME")
    assert split_tag("U-LOC") == ("U", "LOC")
    assert tag_types(CONLL) == ["LOC", "MISC", "ORG", "PER"]


def test_metric_argument_errors():
    with pytest.raises(ValueError, match="more than once"):
        SpanF1(["O", "B-PER", "O"])
    with pytest.raises(ValueError, match="SpanF1: `average` must be one of 'micro', 'macro', 'weighted'.*'samples'"):
        SpanF1(CONLL, average="samples")
    with pytest.raises(ValueError, match="`labels` must be a sequence of tags"):
        SpanF1("O B-PER")
    metric = SpanF1(CONLL)
    target = torch.tensor([[1, 2, -100]])
    with pytest.raises(ValueError, match=r"SpanF1.update: `preds` must hold label ids in \[0, 9\).*got 9 at \[0, 1\]"):
        metric.update(torch.tensor([[1, 9, 0]]), target)
    with pytest.raises(ValueError, match=r"`target` must hold label ids in \[0, 9\).*got -1 at \[0, 0\]"):
        metric.update(torch.tensor([[1, 2, 0]]), torch.tensor([[-1, 2, 0]]))
    with pytest.raises(ValueError, match=r"score `preds` must have shape \(B, T, C=9\).*got \(1, 3, 4\)"):
        metric.update(torch.zeros(1, 3, 4), target)
    with pytest.raises(ValueError, match=r"`preds` and `target` must have the same shape \(B, T\), got \(1, 2\) and "
                                         r"\(1, 3\)"):
        metric.update(torch.tensor([[1, 2]]), target)
    with pytest.raises(TypeError, match="`mask` must be a bool tensor"):
        metric.update(torch.tensor([[1, 2, 0]]), target, mask=torch.ones(1, 3))
    metric.update(torch.tensor([[1, 2, 5]]), target)  # -100 hides an out-of-labels prediction too: fine
    assert metric.compute().item() == 1.0


def test_functional_argument_errors():
    prefixes, types, names = label_table(CONLL)
    ids, mask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    with pytest.raises(ValueError, match=r"`types` must hold type ids in \[-1, num_types=2\)"):
        span_counts(ids, ids, mask, prefixes, types, 2)
    with pytest.raises(TypeError, match="`tag_ids` must be an integer tensor"):
        extract_spans(ids.float(), mask, prefixes, types)
    with pytest.raises(ValueError, match=r"`labels\[0\]`: malformed tag 'PER'"):
        label_table(["PER"])
    with pytest.raises(ValueError, match=r"the tag 'B-FOO' of sentence 1, position 0, is not in `labels`"):
        tags_to_ids([["O"], ["B-FOO"]], CONLL)
    with pytest.raises(ValueError, match=r"`counts` must be a \(num_types, 3\) tensor"):
        span_f1_from_counts(torch.zeros(4, 2))
    assert span_f1_from_counts(torch.tensor([[2, 4, 2]]))["f1_per_type"] == {0: pytest.approx(2 / 3)}
    assert len(names) == 4


def test_forward_gives_the_batch_value_and_accumulates():
    metric = SpanF1(CONLL)
    target = torch.tensor([[7, 8, 0, 1]])  # PER [0, 1], LOC [3, 3]
    assert metric(torch.tensor([[7, 8, 0, 1]]), target).item() == 1.0
    assert metric(torch.tensor([[7, 0, 0, 0]]), target).item() == 0.0
    assert metric.counts.tolist() == [[1, 1, 2], [0, 0, 0], [0, 0, 0], [1, 2, 2]]


def test_tags_to_ids_beyond_one_byte_of_labels():
    labels = ["O"] + [f"{p}-T{i}" for i in range(150) for p in "BI"]  # 301 labels
    ids, mask = tags_to_ids([["B-T149", "I-T149"], ["O"]], labels)
    assert ids.tolist() == [[299, 300], [0, 0]] and mask.tolist() == [[True, True], [True, False]]
    prefixes, types, names = label_table(labels)
    assert extract_spans(ids, mask, prefixes, types).tolist() == [[0, 0, 1, names.index("T149")]]


def test_the_package_exports_the_strict_schemes_and_averages_seqeval_has():
    import rnn_lightning.functional as F

    assert set(F.STRICT_SCHEMES) == {scheme.__name__ for scheme in (IOB2, IOBES, BILOU)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]  # micro and weighted F1 2/3, macro 1/2
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"]]
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    prefixes, types, names = F.label_table(["O", "B-LOC", "B-PER", "I-PER"])
    (g, mask), (p, _) = (F.tags_to_ids(tags, ["O", "B-LOC", "B-PER", "I-PER"]) for tags in (gold, pred))
    counts = F.span_counts(p, g, mask, prefixes, types, len(names))
    for average in F.AVERAGES:  # each is a row of seqeval's report, with the same F1
        f1 = F.span_f1_from_counts(counts, names, average=average)["f1"]
        assert float(f1) == pytest.approx(report[f"{average} avg"]["f1-score"])

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("average", AVERAGES)
def test_strict_metric_on_cuda_equals_cpu(average):
    labels = labels_for(("LOC", "PER"), "BIES")
    g = torch.Generator().manual_seed(0)
    preds, target = torch.randint(0, 9, (16, 40), generator=g), torch.randint(0, 9, (16, 40), generator=g)
    mask = torch.arange(40)[None] < torch.randint(1, 41, (16,), generator=g)[:, None]
    results = []
    for device in ("cpu", "cuda"):
        metric = SpanF1(labels, average, mode="strict", scheme="IOBES").to(device)
        metric.update(preds.to(device), target.to(device), mask.to(device))
        results.append((metric.report(), metric.compute().item()))
    assert results[0] == results[1]
