"""Tokenizers (HF ``tokenizers``) for language modeling: word level, character level, or the user's own.

Every tokenizer carries ``<pad> <unk> <bos> <eos>``. Lines are encoded as ``<bos> tokens... <eos>``:
``<eos>`` is the PTB/WikiText end-of-line token (predicted and counted); ``<bos>`` is the start symbol
generation begins from (fed as input, never counted as a target).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from rnn_lightning.constants import BOS, EOS, PAD, UNK

SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)


def _split_lines(texts: pa.ChunkedArray | pa.Array) -> pa.ListArray:
    """Each line's whitespace-separated words (rows of empty lines hold one empty string)."""
    # Trim first: pyarrow's split reads one byte past a string that ends in whitespace (when the next byte
    # in the buffer is non-ASCII it keeps the trailing space in the last word); trimming has no such bug.
    split = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(texts))
    return split.combine_chunks() if isinstance(split, pa.ChunkedArray) else split


def _split_words(texts: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Split lines on whitespace as ``str.split()`` does: the words (N,) and each word's line index (N,)."""
    split = _split_lines(texts)
    words = pc.list_flatten(split)
    line_of_word = pc.list_parent_indices(split).to_numpy()
    keep = pc.not_equal(words, "")  # leading/trailing whitespace leaves empty strings
    return words.filter(keep), line_of_word[keep.to_numpy(zero_copy_only=False)]


def word_counts(words: pa.Array | pa.ChunkedArray) -> pa.Table:
    """How often each distinct string of ``words`` occurs: a table of ``values`` (string) and ``counts`` (int64).

    Counts of several chunks add up (:func:`merge_counts`), so a corpus can be counted a chunk at a time.
    """
    return pa.Table.from_struct_array(pc.value_counts(words)).select(["values", "counts"])


def merge_counts(parts: list[pa.Table]) -> pa.Table:
    """The :func:`word_counts` of several chunks summed into one table."""
    if len(parts) == 1:
        return parts[0]
    summed = pa.concat_tables(parts).group_by("values").aggregate([("counts", "sum")])
    return pa.table({"values": summed["values"], "counts": summed["counts_sum"]})


def line_word_counts(texts: pa.ChunkedArray | pa.Array) -> pa.Table:
    """:func:`word_counts` of the whitespace-separated words of lines ``texts``."""
    return word_counts(pc.list_flatten(_split_lines(texts)))


def line_chars(texts: pa.ChunkedArray | pa.Array) -> set[str]:
    """Every character of lines ``texts`` (missing values count as empty lines)."""
    lines = texts.to_pylist() if hasattr(texts, "to_pylist") else texts
    return set("".join(line for line in lines if line))


def word_tokenizer_from_counts(counts: pa.Table, min_frequency: int = 1, max_vocab_size: int | None = None
                               ) -> Tokenizer:
    """The whitespace word-level tokenizer of word ``counts`` (:func:`word_counts`): the special tokens, then the
    words seen at least ``min_frequency`` times, most frequent first, ties in code-point (UTF-8 byte) order, at most
    ``max_vocab_size`` entries."""
    if min_frequency < 1:
        raise ValueError(f"`min_frequency` must be >= 1, got {min_frequency!r}.")
    if max_vocab_size is not None and max_vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"`max_vocab_size` must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_vocab_size!r}; "
            "use None to keep every word."
        )
    words = counts["values"]
    keep = pc.and_(pc.and_(pc.is_valid(words), pc.greater_equal(counts["counts"], min_frequency)),
                   pc.invert(pc.is_in(words, value_set=pa.array(["", *SPECIAL_TOKENS]))))
    ordered = counts.filter(keep).sort_by([("counts", "descending"), ("values", "ascending")])
    vocab = list(SPECIAL_TOKENS) + ordered["values"].to_pylist()
    return _word_level(vocab if max_vocab_size is None else vocab[:max_vocab_size])


def train_word_tokenizer(
    texts: pa.ChunkedArray | pa.Array | list[str],
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    pretokenized: bool = False,
) -> Tokenizer:
    """A whitespace word-level tokenizer whose vocabulary is every word of ``texts``.

    Words are ordered by decreasing frequency (ties alphabetically), after the special tokens.

    Args:
        texts: the training lines, or with ``pretokenized`` their words (a flat array of strings).
        min_frequency: drop words seen fewer times (they become ``<unk>``).
        max_vocab_size: keep at most this many entries, special tokens included (``None``: all).
        pretokenized: ``texts`` already holds one word per entry (tagging corpora).

    Example:
        >>> tok = train_word_tokenizer(["the cat sat", "the dog"])
        >>> tok.get_vocab_size(), tok.encode("the cow").ids
        (8, [4, 1])
    """
    texts = pa.array(texts, pa.string()) if isinstance(texts, list) else texts
    counts = word_counts(texts) if pretokenized else line_word_counts(texts)
    return word_tokenizer_from_counts(counts, min_frequency, max_vocab_size)


def extend_word_tokenizer(tokenizer: Tokenizer, words: list[str]) -> Tokenizer:
    """The word-level ``tokenizer`` with ``words`` it lacks added after its own entries (ids unchanged).

    Example:
        >>> tok = extend_word_tokenizer(train_word_tokenizer(["the cat"]), ["dog", "cat"])
        >>> tok.get_vocab_size(), tok.encode("the dog cow").ids
        (7, [5, 6, 1])
    """
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    known = {word for word, _ in vocab}
    return _word_level([word for word, _ in vocab] + [w for w in dict.fromkeys(words) if w not in known])


def _word_level(vocab: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def encode_words(tokenizer: Tokenizer, words: pa.Array | pa.ChunkedArray, by_id: pa.Array | None = None) -> np.ndarray:
    """Look words up in a word-level vocabulary: (N,) strings -> (N,) int64 ids (``<unk>`` if absent)."""
    by_id = vocabulary_by_id(tokenizer) if by_id is None else by_id
    ids = pc.fill_null(pc.index_in(words, value_set=by_id), tokenizer.token_to_id(UNK))
    return ids.to_numpy().astype(np.int64)


def train_char_tokenizer(texts: pa.ChunkedArray | pa.Array | list[str]) -> Tokenizer:
    """A character-level tokenizer over every character of ``texts`` (spaces included).

    Example:
        >>> tok = train_char_tokenizer(["ab a"])
        >>> tok.encode("ba c").tokens, tok.decode(tok.encode("ba").ids)
        (['b', 'a', ' ', '<unk>'], 'ba')
    """
    return char_tokenizer_from_chars(line_chars(texts))


def char_tokenizer_from_chars(chars: set[str]) -> Tokenizer:
    """The character-level tokenizer of ``chars``: the special tokens, then the characters in code-point order."""
    chars = sorted(chars)
    vocab = list(SPECIAL_TOKENS) + [c for c in chars if c not in SPECIAL_TOKENS]
    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(vocab)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # any char, \n too
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """Load a ``tokenizer.json`` and add any of ``<pad> <unk> <bos> <eos>`` it lacks."""
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as err:  # tokenizers raises a bare Exception for a missing or invalid file
        raise ValueError(f"`tokenizer` {path!r} is not a readable HF tokenizer.json file ({err}). Pass 'word' or "
                         "'char' to count a vocabulary from train, or the path of a tokenizer.json.") from err
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.add_special_tokens(missing)
    return tokenizer


def is_whitespace_word_level(tokenizer: Tokenizer) -> bool:
    """True when encoding is exactly 'split on whitespace, look each word up' (the fast arrow path)."""
    return (
        isinstance(tokenizer.model, models.WordLevel)
        and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.WhitespaceSplit)
        and tokenizer.normalizer is None
        and not tokenizer.get_added_tokens_decoder()
    )


def vocabulary_by_id(tokenizer: Tokenizer) -> pa.Array:
    """The tokenizer's tokens as an arrow array whose position is the id."""
    vocab = tokenizer.get_vocab()
    return pa.array(sorted(vocab, key=vocab.__getitem__), pa.string())


def encode_lines(
    tokenizer: Tokenizer, texts: pa.ChunkedArray | pa.Array, by_id: pa.Array | None = None
) -> pa.ListArray:
    """Encode each line as ``<bos> ids... <eos>``; returns a list<int32> array, one row per line.

    ``by_id`` (:func:`vocabulary_by_id`, for the fast word-level path) can be passed to save recomputing it.
    """
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    if is_whitespace_word_level(tokenizer):
        words, line_of_token = _split_words(texts)  # (N,), (N,)
        by_id = vocabulary_by_id(tokenizer) if by_id is None else by_id
        ids = pc.fill_null(pc.index_in(words, value_set=by_id), tokenizer.token_to_id(UNK)).to_numpy()
    else:
        lines = pc.fill_null(texts, "").to_pylist()  # a missing value is an empty line
        encodings = tokenizer.encode_batch_fast(lines, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        line_of_token = np.repeat(np.arange(len(lengths)), lengths)
    return _wrap_lines(ids.astype(np.int32), line_of_token, len(texts), bos, eos)


def _wrap_lines(ids: np.ndarray, line_of_token: np.ndarray, num_lines: int, bos: int, eos: int) -> pa.ListArray:
    # ids (N,) flat token ids, line_of_token (N,) their line index; output rows are <bos> ids <eos>.
    lengths = np.bincount(line_of_token, minlength=num_lines)  # (L,)
    new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + 2, out=new_offsets[1:])
    out = np.empty(new_offsets[-1], dtype=np.int32)
    out[new_offsets[:-1]] = bos
    out[new_offsets[1:] - 1] = eos
    out[np.arange(len(ids)) + 2 * line_of_token + 1] = ids
    return pa.ListArray.from_arrays(pa.array(new_offsets.astype(np.int32)), pa.array(out))
