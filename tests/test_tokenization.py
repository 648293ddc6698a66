"""Tokenizers: the arrow fast path equals HF tokenizers' own encoding; counts match published WikiText-2."""


import pyarrow as pa
import pytest
from corpora import CORPORA

from rnn_lightning.data.tokenization import (
    BOS,
    EOS,
    SPECIAL_TOKENS,
    UNK,
    encode_lines,
    is_whitespace_word_level,
    load_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
)

WIKITEXT = CORPORA / "wikitext-2"
LINES = ["", " ", " the cat  sat\ton the mat ", "the dog\u3000barked", "<unk> rare words", "the end"]


def _reference_rows(tokenizer, lines):
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    return [[bos, *tokenizer.encode(line, add_special_tokens=False).ids, eos] for line in lines]


def test_word_fast_path_equals_tokenizers_encode():
    tok = train_word_tokenizer(LINES[:4])
    assert is_whitespace_word_level(tok)
    assert encode_lines(tok, pa.array(LINES)).to_pylist() == _reference_rows(tok, LINES)
    assert encode_lines(tok, pa.chunked_array([LINES[:3], LINES[3:]])).to_pylist() == _reference_rows(tok, LINES)


def test_trailing_space_before_a_non_ascii_byte_in_the_buffer_is_still_a_separator():
    """Regression: pyarrow's whitespace split read past the string end (seen on memory-mapped datasets)."""
    import numpy as np

    offsets = pa.py_buffer(np.array([0, 2], np.int32).tobytes())
    texts = pa.StringArray.from_buffers(1, offsets, pa.py_buffer(b"a \xff").slice(0, 2))  # the string "a "
    tok = train_word_tokenizer(["a"])
    assert encode_lines(tok, texts).to_pylist() == _reference_rows(tok, ["a "])
    assert train_word_tokenizer(texts).get_vocab_size() == len(SPECIAL_TOKENS) + 1


def test_word_vocabulary_order_min_frequency_and_cap():
    tok = train_word_tokenizer(["b a a c c c", "d"], min_frequency=2)
    vocab = tok.get_vocab()
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])] == [*SPECIAL_TOKENS, "c", "a"]
    assert tok.encode("b").ids == [vocab[UNK]]
    capped = train_word_tokenizer(["b a a c c c"], max_vocab_size=5)
    assert capped.get_vocab_size() == 5 and capped.token_to_id("c") == 4
    with pytest.raises(ValueError, match="`max_vocab_size` must exceed"):
        train_word_tokenizer(["a"], max_vocab_size=4)
    with pytest.raises(ValueError, match="`min_frequency` must be >= 1"):
        train_word_tokenizer(["a"], min_frequency=0)


def test_char_tokenizer_round_trips_and_generic_path_matches():
    text = ["First Citizen:", "Before we proceed any further, hear me speak.", ""]
    tok = train_char_tokenizer(text)
    assert not is_whitespace_word_level(tok)
    assert encode_lines(tok, pa.array(text)).to_pylist() == _reference_rows(tok, text)
    ids = tok.encode(text[1]).ids
    assert tok.decode(ids) == text[1]


def test_load_tokenizer_adds_missing_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    own = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    own.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    own.save(str(path))
    tok = load_tokenizer(str(path))
    assert all(tok.token_to_id(t) is not None for t in SPECIAL_TOKENS)
    assert tok.encode("hello world", add_special_tokens=False).ids == [1, 2]
    with pytest.raises(ValueError, match="is not a readable HF tokenizer.json"):
        load_tokenizer(str(tmp_path / "missing.json"))


@pytest.mark.skipif(not WIKITEXT.exists(), reason="wikitext-2/ not present (tests/corpora.py)")
def test_wikitext2_vocabulary_and_token_count_match_published_counts():
    """Published: vocab 33,278 (with <eos>, <unk>); train 2,088,628 tokens counting one <eos> per line."""
    lines = (WIKITEXT / "train.txt").read_text(encoding="utf-8").split("\n")[:-1]  # trailing newline
    tok = train_word_tokenizer(pa.array(lines))
    assert tok.get_vocab_size() == 33_278 + 2  # + <pad> and <bos>, which the published vocab lacks
    rows = encode_lines(tok, pa.array(lines))
    assert len(rows.values) - len(rows) == 2_088_628  # every token and <eos>; <bos> is input only
    # Independent reference: the plain reader of pytorch/examples (split on whitespace + one <eos> per line).
    assert sum(len(line.split()) + 1 for line in lines) == 2_088_628


@pytest.mark.skipif(not WIKITEXT.exists(), reason="wikitext-2/ not present (tests/corpora.py)")
def test_every_wikitext2_split_matches_the_plain_reader_word_for_word(tmp_path):
    from rnn_lightning import LanguageModelingDataModule

    files = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    dm = LanguageModelingDataModule(path="text", data_files={k: str(WIKITEXT / v) for k, v in files.items()},
                                    cache_dir=str(tmp_path))
    vocab = dm.tokenizer.get_vocab()
    for split, name in files.items():
        ids = dm.token_ids(split).tolist()  # read back from the memory-mapped datasets cache
        expected = []
        for line in (WIKITEXT / name).read_text(encoding="utf-8").split("\n")[:-1]:
            expected += [vocab["<bos>"], *(vocab.get(w, vocab["<unk>"]) for w in line.split()), vocab["<eos>"]]
        assert ids == expected, split
