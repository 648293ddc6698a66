"""CoNLL / CoNLL-U readers and `load_tagging_files`: exact output on hand-written files, every error, the cache,
and the published counts of the real CoNLL-2003 and UD English EWT files."""

import re
import time

import pytest
from corpora import CORPORA
from datasets.exceptions import DatasetGenerationError

from rnn_lightning.data import conll
from rnn_lightning.data.conll import CoNLLFormatError, load_tagging_files, read_conll, read_conllu

DATA = CORPORA
CONLL2003 = DATA / "conll2003"
EWT = DATA / "ud-english-ewt"

UD_UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
           "SCONJ", "SYM", "VERB", "X"}  # universaldependencies.org/u/pos: the 17 universal POS tags
IOB1 = {"O"} | {f"{p}-{t}" for p in "IB" for t in ("PER", "ORG", "LOC", "MISC")}


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def _u(*words):
    """CoNLL-U token lines from rows of space-separated columns ('~' stands for a space inside a column)."""
    return "".join("\t".join(c.replace("~", " ") for c in w.split()) + "\n" for w in words)


def _rows(sentences):
    return [(s["tokens"], s["tags"]) for s in sentences]


# -- CoNLL --
CONLL_TEXT = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O


"""


def test_read_conll_skips_docstart_and_blank_runs(tmp_path):
    got = _rows(read_conll(_write(tmp_path, "a.conll", CONLL_TEXT)))
    assert got == [
        (["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS", "1996-08-22"], ["B-LOC", "O"]),
    ]


def test_read_conll_other_columns_and_no_trailing_newline(tmp_path):
    path = _write(tmp_path, "a.conll", "a DT B-NP O\nb NN I-NP O\n\nc VB B-VP O")
    assert _rows(read_conll(path, tag_column=1)) == [(["a", "b"], ["DT", "NN"]), (["c"], ["VB"])]
    assert _rows(read_conll(path, tag_column=2, token_column=-1)) == [(["O", "O"], ["B-NP", "I-NP"]), (["O"], ["B-VP"])]


def test_read_conll_docstart_without_blank_line_still_ends_the_sentence(tmp_path):
    path = _write(tmp_path, "a.conll", "a X O\n-DOCSTART- -X- O\nb X I-PER\n")
    assert _rows(read_conll(path)) == [(["a"], ["O"]), (["b"], ["I-PER"])]


def test_read_conll_tab_separated_keeps_spaces_in_tokens(tmp_path):
    path = _write(tmp_path, "a.tsv", "New York\tNNP\tB-LOC\nis \t VBZ\tO\n\n-DOCSTART-\t-X-\tO\nhi\tUH\tO\n")
    assert _rows(read_conll(path)) == [(["New York", "is"], ["B-LOC", "O"]), (["hi"], ["O"])]


def test_read_conll_crlf_bom_spaces_and_non_ascii(tmp_path):
    # A BOM is dropped; CRLF and runs of spaces/tabs are separators (the first token line has no tab, so the file
    # is whitespace-separated); U+00A0 inside a token is not a separator.
    text = "\ufeffZürich  NNP I-LOC \r\n1\u00a0000\t CD O\r\n \t\r\n"
    assert _rows(read_conll(_write(tmp_path, "a.conll", text))) == [(["Zürich", "1\u00a0000"], ["I-LOC", "O"])]


# -- CoNLL-U --
CONLLU_TEXT = (
    "# newdoc id = d1\n# sent_id = 1\n# text = I don't know.\n"
    + _u("1 I I PRON PRP _ 3 nsubj _ _",
         "2-3 don't _ _ _ _ _ _ _ _",
         "2 do do AUX VBP _ 4 aux _ _",
         "3 n't not PART RB _ 4 advmod _ _",
         "4 know know VERB VB _ 0 root _ SpaceAfter=No",
         "5 . . PUNCT . _ 4 punct _ _")
    + "\n# sent_id = 2\n"
    + _u("1 New~York New~York PROPN NNP _ 2 nsubj _ _",
         "2 sleeps sleep VERB VBZ _ 0 root _ _",
         "2.1 sleeps sleep VERB VBZ _ _ _ 0:root _",
         "3 # # SYM NFP _ 2 punct _ _")
    + "\n\n\n"
)


@pytest.mark.parametrize("field, tags", [
    ("upos", [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["PROPN", "VERB", "SYM"]]),
    ("xpos", [["PRP", "VBP", "RB", "VB", "."], ["NNP", "VBZ", "NFP"]]),
])
def test_read_conllu_skips_comments_multiword_tokens_and_empty_nodes(tmp_path, field, tags):
    got = _rows(read_conllu(_write(tmp_path, "a.conllu", CONLLU_TEXT), tag_field=field))
    assert got == [(["I", "do", "n't", "know", "."], tags[0]), (["New York", "sleeps", "#"], tags[1])]


def test_read_conllu_without_trailing_newline(tmp_path):
    path = _write(tmp_path, "a.conllu", _u("1 a a DET DT _ 0 root _ _").rstrip("\n"))
    assert _rows(read_conllu(path)) == [(["a"], ["DET"])]


# -- errors --
@pytest.mark.parametrize("read", [read_conll, read_conllu])
def test_missing_file_is_named(tmp_path, read):
    with pytest.raises(ValueError, match=r"`path` '.*nope\.txt' does not exist"):
        read(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read(tmp_path)


@pytest.mark.parametrize("read", [read_conll, read_conllu])
def test_empty_file(tmp_path, read):
    with pytest.raises(ValueError, match=r"'.*empty\.txt' is empty \(0 bytes\)"):
        list(read(_write(tmp_path, "empty.txt", "")))


@pytest.mark.parametrize("read, text, only", [
    (read_conll, "\n\n-DOCSTART- -X- O O\n\n", "blank lines and -DOCSTART- lines"),
    (read_conllu, "# just a comment\n\n", "blank lines and # comments"),
])
def test_file_without_sentences(tmp_path, read, text, only):
    with pytest.raises(ValueError, match=rf"'.*x\.txt' has no sentences: it holds only {only}"):
        list(read(_write(tmp_path, "x.txt", text)))


def test_conll_line_with_other_column_count(tmp_path):
    path = _write(tmp_path, "a.conll", "-DOCSTART- -X- O O\n\nEU NNP I-ORG\nrejects VBZ\n")
    msg = ("'.*a\\.conll', line 4: expected 3 whitespace-separated columns like the file's first token line "
           "\\(line 3\\), got 2; the line is 'rejects VBZ'")
    with pytest.raises(CoNLLFormatError, match=msg):
        list(read_conll(path))


def test_conll_tab_file_with_a_space_separated_line(tmp_path):
    path = _write(tmp_path, "a.tsv", "a\tO\nb O\n")
    with pytest.raises(ValueError, match=r"line 2: expected 2 tab-separated columns .* got 1; the line is 'b O'"):
        list(read_conll(path))


def test_conll_too_few_columns_for_tag_column(tmp_path):
    path = _write(tmp_path, "a.conll", "\nEU NNP I-ORG\n")
    with pytest.raises(ValueError, match=r"'.*a\.conll', line 2: tag_column=5 and token_column=0 need at least 6 "
                                         r"columns, the line has 3; the line is 'EU NNP I-ORG'"):
        list(read_conll(path, tag_column=5))
    with pytest.raises(ValueError, match="tag_column=-4 .* need at least 4 columns"):
        list(read_conll(path, tag_column=-4))


def test_conll_single_column_file_has_no_tags(tmp_path):
    with pytest.raises(ValueError, match=r"line 1: tag_column=-1 and token_column=0 name the same column of 1"):
        list(read_conll(_write(tmp_path, "a.conll", "just\ntokens\n")))


COLUMNS = "ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC"


@pytest.mark.parametrize("line, what", [
    ("1 a a DET DT _ 0 root _", f"expected 10 tab-separated columns ({COLUMNS}), got 9"),
    ("1 a a DET DT _ 0 root _ _ extra", f"expected 10 tab-separated columns ({COLUMNS}), got 11"),
    ("x a a DET DT _ 0 root _ _", "the ID column must be an integer, a range such as '1-2' or a decimal such as "
                                  "'8.1', got 'x'"),
    ("3 a a DET DT _ 0 root _ _", "expected word ID 2 (IDs count 1, 2, ... within a sentence), got 3"),
])
def test_conllu_malformed_line(tmp_path, line, what):
    path = _write(tmp_path, "a.conllu", "# c\n" + _u("1 b b DET DT _ 0 root _ _", line))
    bad = line.replace(" ", "\t")
    with pytest.raises(CoNLLFormatError, match=rf"'.*a\.conllu', line 3: {re.escape(what)}; the line is "
                                               rf"{re.escape(repr(bad))}\. [A-Z]"):
        list(read_conllu(path))


def test_conllu_space_separated_file_points_at_conll(tmp_path):
    path = _write(tmp_path, "a.conllu", "1 a a DET DT _ 0 root _ _\n")
    with pytest.raises(ValueError, match=r"line 1: expected 10 tab-separated .* got 1; .* read it with format='conll'"):
        list(read_conllu(path))


def test_conllu_file_read_as_conll_points_at_conllu(tmp_path):
    for text in ("# sent_id = 1\n" + _u("1 a a DET DT _ 0 root _ _"), _u("1 a a DET DT _ 0 root _ _")):
        with pytest.raises(CoNLLFormatError, match=r"line 1: this looks like a CoNLL-U file .* Read it with "
                                                   r"format='conllu' \(TaggingDataModule: path='conllu'\)\.$"):
            list(read_conll(_write(tmp_path, "a.conllu", text)))
    # a '#' token and a 10-column tab file whose first ID is not 1 are CoNLL columns, read as such
    assert _rows(read_conll(_write(tmp_path, "b.conll", "# SYM O\n"))) == [(["#"], ["O"])]


@pytest.mark.parametrize("field, line", [("upos", "1 a a _ DT _ 0 root _ _"), ("xpos", "1 a a DET _ _ 0 root _ _")])
def test_conllu_unspecified_tag_is_refused(tmp_path, field, line):
    path = _write(tmp_path, "a.conllu", _u("1 b b DET DT _ 0 root _ _", "2-3 cd _ _ _ _ _ _ _ _") + "\n" + _u(line))
    with pytest.raises(CoNLLFormatError, match=rf"line 4: the {field.upper()} column \(the tag\) is '_', unspecified"):
        list(read_conllu(path, tag_field=field))


def test_utf16_file_gets_the_utf16_command(tmp_path):
    path = _write(tmp_path, "w.conll", "ok X O\n", encoding="utf-16")
    with pytest.raises(CoNLLFormatError, match=r"byte offset 0 \(line 1\) .* It starts with a UTF-16 byte-order "
                                               r"mark\. .* `iconv -f utf-16 -t utf-8 .*w\.conll > w\.utf8\.conll`\.$"):
        list(read_conll(path))


def test_long_malformed_line_is_cut_short_in_the_message(tmp_path):
    path = _write(tmp_path, "a.conllu", "1 " * 50_000 + "\n")
    with pytest.raises(ValueError, match=r"\.\.\. \(100000 characters\)") as info:
        list(read_conllu(path))
    assert len(str(info.value)) < 600


@pytest.mark.parametrize("read, good", [(read_conll, "ok X O\n"), (read_conllu, _u("1 ok ok X X _ 0 root _ _"))])
def test_non_utf8_names_the_byte_offset(tmp_path, read, good):
    raw = good.encode() + b"\n" + good.replace("ok", "caf\u00e9").encode("latin-1")
    offset = len(good.encode()) + 1 + raw[len(good) + 1:].index(b"\xe9")
    path = _write(tmp_path, "latin.txt", raw)
    with pytest.raises(ValueError, match=rf"'.*latin\.txt' is not valid UTF-8: byte offset {offset} \(line 3\) "
                                         r"holds b'\\xe9.*Re-encode the file as UTF-8"):
        list(read(path))


@pytest.mark.parametrize("kwargs, match", [
    (dict(format="conllx"), r"`format` must be 'conll' .* or 'conllu' .* got 'conllx'"),
    (dict(format="conllu", tag_field="ner"), r"`tag_field` must be one of \['upos', 'xpos'\] .* got 'ner'"),
    (dict(format="conll", tag_column="3"), r"`tag_column` must be an integer column index .* got '3'"),
    (dict(format="conll", data_files="a.conll"), r"`data_files` must be a non-empty dict .* got 'a.conll'"),
    (dict(format="conll", data_files={}), r"`data_files` must be a non-empty dict"),
    (dict(format="conll", data_files={"train": []}), r"`data_files\['train'\]` must be a path or a non-empty list"),
    (dict(format="conll", data_files={"train": "nope.conll"}), r"`data_files\['train'\]` 'nope.conll' does not exist"),
])
def test_load_tagging_files_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_tagging_files(**{"data_files": {"train": "a.conll"}, "cache_dir": str(tmp_path), **kwargs})


@pytest.mark.parametrize("fmt, text, match", [
    ("conll", "a X O\nb X\n", r"'.*bad\.txt', line 2: expected 3 whitespace-separated columns .* the line is 'b X'"),
    ("conllu", "1\ta\n", r"'.*bad\.txt', line 1: expected 10 tab-separated columns"),
    ("conll", "", r"'.*bad\.txt' is empty \(0 bytes\)"),
    ("conllu", "\n\n", r"'.*bad\.txt' has no sentences"),
    ("conll", b"ok X O\n\xff X O\n", r"'.*bad\.txt' is not valid UTF-8: byte offset 7 \(line 2\)"),
])
def test_load_tagging_files_surfaces_the_readers_message(tmp_path, fmt, text, match):
    good = _write(tmp_path, "good.txt", "ok X O\n" if fmt == "conll" else _u("1 ok ok X X _ 0 root _ _"))
    bad = _write(tmp_path, "bad.txt", text)
    for _ in range(2):  # a failed build leaves no cache behind: the second call fails the same way
        with pytest.raises(CoNLLFormatError, match=match) as info:
            load_tagging_files({"train": str(good), "test": [str(good), str(bad)]}, format=fmt,
                               cache_dir=str(tmp_path / "cache"))
        assert not isinstance(info.value, DatasetGenerationError)
        assert info.value.__suppress_context__  # no datasets wrapper printed above our message
        chain, err = [], info.value  # every link, suppressed or not: it ends (a loop here once hung every walker)
        while err is not None and len(chain) < 10:
            chain.append(err)
            err = err.__cause__ or err.__context__
        assert len(chain) <= 2 and not any(isinstance(e, DatasetGenerationError) for e in chain)


# -- datasets, cache --
def test_load_tagging_files_splits_features_and_several_files(tmp_path):
    a = _write(tmp_path, "a.conll", CONLL_TEXT)
    b = _write(tmp_path, "b.conll", "x X O\n")
    out = load_tagging_files({"train": [str(a), b], "validation": str(b)}, format="conll",
                             cache_dir=str(tmp_path / "cache"))
    assert list(out) == ["train", "validation"]
    assert {k: str(v) for k, v in out["train"].features.items()} == {
        "tokens": "List(Value('string'))", "tags": "List(Value('string'))"}
    assert out["train"]["tokens"] == [r[0] for r in _rows(read_conll(a))] + [["x"]]
    assert out["validation"][:] == {"tokens": [["x"]], "tags": [["O"]]}
    assert out["train"].split == "train"

    u = _write(tmp_path, "a.conllu", CONLLU_TEXT)
    xpos = load_tagging_files({"test": str(u)}, format="conllu", tag_field="xpos", cache_dir=str(tmp_path / "cache"))
    assert xpos["test"]["tags"] == [["PRP", "VBP", "RB", "VB", "."], ["NNP", "VBZ", "NFP"]]


def test_second_call_reads_the_cache_without_parsing(tmp_path, monkeypatch):
    path = _write(tmp_path, "a.conllu", CONLLU_TEXT)
    cache = str(tmp_path / "cache")
    first = load_tagging_files({"train": str(path)}, format="conllu", cache_dir=cache)

    def must_not_parse(*args, **kwargs):
        raise AssertionError("the file was parsed again")

    monkeypatch.setattr(conll, "_conllu_sentences", must_not_parse)
    second = load_tagging_files({"train": str(path)}, format="conllu", cache_dir=cache)
    assert second["train"].cache_files == first["train"].cache_files
    assert second["train"][:] == first["train"][:]
    monkeypatch.undo()

    # The cache key is the settings and the bytes: another tag field or an edited file is parsed afresh.
    xpos = load_tagging_files({"train": str(path)}, format="conllu", tag_field="xpos", cache_dir=cache)
    assert xpos["train"].cache_files != first["train"].cache_files
    path.write_text(_u("1 new new ADJ JJ _ 0 root _ _"), encoding="utf-8")
    edited = load_tagging_files({"train": str(path)}, format="conllu", cache_dir=cache)
    assert edited["train"][:] == {"tokens": [["new"]], "tags": [["ADJ"]]}


@pytest.mark.parametrize("fmt", ["conll", "conllu"])
def test_a_100k_token_sentence(tmp_path, fmt):
    n = 100_000
    line = "w{} X O\n" if fmt == "conll" else "{}\tw{}\t_\tX\tX\t_\t0\tdep\t_\t_\n"
    text = "".join(line.format(i + 1, i + 1) for i in range(n)) + "\nshort X O\n" * (fmt == "conll")
    path = _write(tmp_path, "long.txt", text)
    out = load_tagging_files({"train": str(path)}, format=fmt, cache_dir=str(tmp_path / "cache"))["train"]
    lengths = [len(t) for t in out["tokens"]]
    assert lengths == ([n, 1] if fmt == "conll" else [n])
    assert out[0]["tokens"][-1] == f"w{n}"
    assert len(out[0]["tags"]) == n


# -- real data (skipped where the corpora are absent: tests/corpora.py) --
CONLL2003_COUNTS = {"train": ("eng.train", 14_041, 203_621), "validation": ("eng.testa", 3_250, 51_362),
                    "test": ("eng.testb", 3_453, 46_435)}
EWT_COUNTS = {"train": ("en_ewt-ud-train.conllu", 12_544, 204_577),
              "validation": ("en_ewt-ud-dev.conllu", 2_001, 25_147),
              "test": ("en_ewt-ud-test.conllu", 2_077, 25_094)}


def _load_timed(folder, counts, fmt, cache):
    files = {split: str(folder / name) for split, (name, _, _) in counts.items()}
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        data = load_tagging_files(files, format=fmt, cache_dir=cache)
        timings.append(time.perf_counter() - start)
    print(f"{fmt}: cold {timings[0]:.2f} s, warm {timings[1]:.3f} s (all three splits)")
    return data


@pytest.mark.skipif(not CONLL2003.exists(), reason="conll2003/ not present (tests/corpora.py)")
def test_conll2003_counts_and_iob1_tags(tmp_path):
    data = _load_timed(CONLL2003, CONLL2003_COUNTS, "conll", str(tmp_path))
    for split, (name, sentences, tokens) in CONLL2003_COUNTS.items():
        column = data[split].data.column("tokens")
        assert (name, len(data[split]), len(column.combine_chunks().flatten())) == (name, sentences, tokens)
        tags = data[split]["tags"]
        assert {t for s in tags for t in s} <= IOB1
        # IOB1: B- only opens an entity right after one of the same type. The train file breaks this twice
        # (annotation slips: "Atlanta/B-MISC" and "Urdu-speaking/B-MISC" after O), the test files never.
        slips = sum(t.startswith("B-") and (i == 0 or s[i - 1][2:] != t[2:]) for s in tags for i, t in enumerate(s))
        assert slips == (2 if split == "train" else 0)
    assert {t for s in data["train"]["tags"] for t in s} == IOB1 - {"B-PER"}  # eng.train has no B-PER


@pytest.mark.skipif(not EWT.exists(), reason="ud-english-ewt/ not present (tests/corpora.py)")
def test_ud_english_ewt_counts_and_upos(tmp_path):
    # The README's word counts are syntactic words: multiword-token lines (2,614 in train) and empty nodes
    # (37) are not counted, exactly what the reader skips.
    data = _load_timed(EWT, EWT_COUNTS, "conllu", str(tmp_path))
    for split, (name, sentences, words) in EWT_COUNTS.items():
        column = data[split].data.column("tokens")
        assert (name, len(data[split]), len(column.combine_chunks().flatten())) == (name, sentences, words)
        assert {t for s in data[split]["tags"] for t in s} == UD_UPOS


def test_two_splits_may_name_the_same_file(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    data = load_tagging_files({"validation": str(path), "test": str(path)}, "conll", cache_dir=str(tmp_path / "c"))
    assert data["validation"]["tags"] == data["test"]["tags"] == [["B-ORG", "O"], ["B-PER"]]
