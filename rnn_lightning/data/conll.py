"""Readers for local CoNLL (CoNLL-2003 columns) and CoNLL-U files -> HF ``datasets`` for sequence tagging.

Every sentence becomes one row ``{"tokens": [...], "tags": [...]}``. ``load_tagging_files`` builds one
``datasets.Dataset`` per split with ``Dataset.from_generator``, cached under a fingerprint of the files' bytes
and the reader settings: a second call on unchanged files reads the Arrow cache and does not parse again, and
an edited file is parsed afresh.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, DatasetDict, Features, NamedSplit, Sequence, Value
from datasets.exceptions import DatasetGenerationError

from rnn_lightning.data.corpus import find_in_chain, local_files, reencode_hint

_READER_VERSION = "conll-v2"  # bump when a reader's output changes, to invalidate cached datasets
TAGGING_FEATURES = Features({"tokens": Sequence(Value("string")), "tags": Sequence(Value("string"))})
CONLLU_TAG_FIELDS = {"upos": 3, "xpos": 4}  # 0-based column of each tag field in a CoNLL-U token line
_CONLLU_COLUMNS = "ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC"
_BLANKS = re.compile(r"[ \t]+")  # CoNLL columns: ASCII spaces/tabs only (str.split() would also cut at U+00A0)
_SKIPPED_ID = re.compile(r"[0-9]+-[0-9]+|[0-9]+\.[0-9]+")  # multiword token "1-2", empty node "8.1"
_CONLLU_COMMENT = re.compile(r"#\s*[\w.-]+( id)?\s*=")  # "# sent_id = 1", "# text = ...", "# newdoc id = d1"


class CoNLLFormatError(ValueError):
    """A file's contents are not what its format needs (the message names the file, the line and the fix).

    ``load_tagging_files`` re-raises it as is when ``datasets`` wraps it in a ``DatasetGenerationError``.
    """


# -- lines, decoded, with their line number and an exact byte offset for non-UTF-8 input --
def _existing_file(path: str | os.PathLike, arg: str = "path") -> Path:
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise ValueError(
            f"`{arg}` {str(path)!r} {what}: expected a CoNLL/CoNLL-U file (resolved to {str(file.resolve())!r}). "
            "Check the path."
        )
    return file


def _show(line: str, limit: int = 200) -> str:
    """``repr`` of a line, cut short (a line of a long sentence need not fill the terminal)."""
    return repr(line) if len(line) <= limit else f"{line[:limit]!r}... ({len(line)} characters)"


def _line_error(path: Path, lineno: int, line: str, problem: str, fix: str) -> CoNLLFormatError:
    return CoNLLFormatError(f"{str(path)!r}, line {lineno}: {problem}; the line is {_show(line)}. {fix}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text without the line break)`` for every line of a UTF-8 file (a leading BOM dropped)."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                at = offset + err.start
                raise CoNLLFormatError(
                    f"{str(path)!r} is not valid UTF-8: byte offset {at} (line {lineno}) holds "
                    f"{raw[err.start:err.start + 4]!r} ({err.reason}). {reencode_hint(path)}"
                ) from None
            offset += len(raw)
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text.rstrip("\r\n")
    if offset == 0:
        raise CoNLLFormatError(f"{str(path)!r} is empty (0 bytes): expected sentences. Give it a non-empty file.")


def _no_sentences(path: Path, what: str) -> CoNLLFormatError:
    return CoNLLFormatError(
        f"{str(path)!r} has no sentences: it holds only {what}. Expected token lines, one sentence per block "
        "of lines, blocks separated by blank lines. Check that this is the file you meant."
    )


# -- CoNLL (CoNLL-2003 style columns) --
def _check_column(value: Any, arg: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(
            f"`{arg}` must be an integer column index (0 = first, -1 = last), got {value!r}. Pass e.g. {arg}=-1."
        )


def _conll_sentences(path: Path, tag_column: int, token_column: int) -> Iterator[dict[str, list[str]]]:
    tokens: list[str] = []
    tags: list[str] = []
    columns = first = 0  # number of columns and line number of the file's first token line
    tab_separated = False
    found = False
    for lineno, line in _lines(path):
        stripped = line.strip(" \t")
        if stripped:
            if not columns:
                tab_separated = "\t" in stripped
            if tab_separated:
                fields = [field.strip(" ") for field in stripped.split("\t")]
            else:
                fields = stripped.split() if stripped.isascii() else _BLANKS.split(stripped)
        if not stripped or fields[0] == "-DOCSTART-":  # blank line or document separator: the sentence ends
            if tokens:
                yield {"tokens": tokens, "tags": tags}
                tokens, tags, found = [], [], True
            continue
        if len(fields) != columns:
            if columns:
                raise _line_error(
                    path, lineno, line,
                    f"expected {columns} {'tab' if tab_separated else 'whitespace'}-separated columns like the "
                    f"file's first token line (line {first}), got {len(fields)}",
                    "Every token line needs the same columns; fix or remove this line.",
                )
            if _CONLLU_COMMENT.match(stripped) or (tab_separated and len(fields) == 10 and fields[0] == "1"):
                raise _line_error(
                    path, lineno, line, "this looks like a CoNLL-U file (a '# key = value' comment or 10 "
                    "tab-separated columns starting with word ID 1), not CoNLL-2003 columns",
                    "Read it with format='conllu' (TaggingDataModule: path='conllu').",
                )
            columns, first = len(fields), lineno
            needed = max(c + 1 if c >= 0 else -c for c in (tag_column, token_column))
            if columns < needed:
                raise _line_error(
                    path, lineno, line,
                    f"tag_column={tag_column} and token_column={token_column} need at least {needed} columns, "
                    f"the line has {columns}",
                    f"Pick columns that exist (0..{columns - 1}, or -1 for the last).",
                )
            if tag_column % columns == token_column % columns:
                raise _line_error(
                    path, lineno, line,
                    f"tag_column={tag_column} and token_column={token_column} name the same column of "
                    f"{columns}",
                    "A tagging file needs a token column and a separate tag column; point them at different ones.",
                )
        tokens.append(fields[token_column])
        tags.append(fields[tag_column])
    if tokens:
        yield {"tokens": tokens, "tags": tags}
    elif not found:
        raise _no_sentences(path, "blank lines and -DOCSTART- lines")


def read_conll(
    path: str | os.PathLike, tag_column: int = -1, token_column: int = 0
) -> Iterator[dict[str, list[str]]]:
    """Sentences of a CoNLL-2003-style file: one token per line, columns split by whitespace (or tabs).

    Blank lines end a sentence; ``-DOCSTART-`` lines separate documents and are skipped. A file whose first
    token line holds a tab is read as tab-separated (tokens may then contain spaces; spaces around a column are
    dropped); otherwise columns are split at runs of spaces and tabs. Every token line must have as many
    columns as the first one.

    Args:
        path: the file, UTF-8.
        tag_column: column of the tag, 0-based; negative counts from the end (``-1``: the NER column of
            CoNLL-2003's ``token POS chunk NER``).
        token_column: column of the token, 0-based; negative counts from the end.

    Returns:
        An iterator of ``{"tokens": [...], "tags": [...]}``, one per sentence, lists of equal length. The file
        is read lazily; a malformed line raises ``ValueError`` naming the file, the line number and the line.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "eng.train"
        ...     _ = path.write_text("-DOCSTART- -X- O O\\n\\nEU NNP I-NP I-ORG\\nrejects VBZ I-VP O\\n\\n")
        ...     list(read_conll(path))
        [{'tokens': ['EU', 'rejects'], 'tags': ['I-ORG', 'O']}]
    """
    _check_column(tag_column, "tag_column")
    _check_column(token_column, "token_column")
    return _conll_sentences(_existing_file(path), tag_column, token_column)


# -- CoNLL-U --
def _check_tag_field(tag_field: Any) -> int:
    if tag_field not in CONLLU_TAG_FIELDS:
        raise ValueError(
            f"`tag_field` must be one of {sorted(CONLLU_TAG_FIELDS)} (the CoNLL-U column 4 UPOS or 5 XPOS), got "
            f"{tag_field!r}. For format='conll' files choose the tag's column with `tag_column` instead."
        )
    return CONLLU_TAG_FIELDS[tag_field]


def _conllu_sentences(path: Path, tag_index: int) -> Iterator[dict[str, list[str]]]:
    tokens: list[str] = []
    tags: list[str] = []
    found = False
    for lineno, line in _lines(path):
        if not line.strip(" \t"):
            if tokens:
                yield {"tokens": tokens, "tags": tags}
                tokens, tags, found = [], [], True
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise _line_error(
                path, lineno, line,
                f"expected 10 tab-separated columns ({_CONLLU_COLUMNS}), got {len(fields)}",
                "Fix the line (columns are split by single tabs); a file of space-separated columns is not "
                "CoNLL-U: read it with format='conll'.",
            )
        word_id = fields[0]
        if not (word_id.isascii() and word_id.isdigit()):
            if _SKIPPED_ID.fullmatch(word_id):
                continue  # a multiword token (its words follow on their own lines) or an empty node
            raise _line_error(
                path, lineno, line,
                f"the ID column must be an integer, a range such as '1-2' or a decimal such as '8.1', got "
                f"{word_id!r}",
                "Fix the ID of this line.",
            )
        if int(word_id) != len(tokens) + 1:
            raise _line_error(
                path, lineno, line,
                f"expected word ID {len(tokens) + 1} (IDs count 1, 2, ... within a sentence), got {word_id}",
                "Number the words of the sentence in order, or add the blank line that ends the previous sentence.",
            )
        if fields[tag_index] == "_":
            name = _CONLLU_COLUMNS.split()[tag_index]
            raise _line_error(
                path, lineno, line, f"the {name} column (the tag) is '_', unspecified",
                "Tag every word, or pick the other tag field (tag_field='upos' or 'xpos'): many treebanks have "
                "no XPOS tags." if name == "XPOS" else "Tag every word (empty nodes and multiword tokens may "
                "leave it '_', words may not).",
            )
        tokens.append(fields[1])
        tags.append(fields[tag_index])
    if tokens:
        yield {"tokens": tokens, "tags": tags}
    elif not found:
        raise _no_sentences(path, "blank lines and # comments")


def read_conllu(path: str | os.PathLike, tag_field: str = "upos") -> Iterator[dict[str, list[str]]]:
    """Sentences of a CoNLL-U file (Universal Dependencies): the words of each sentence with a POS tag.

    Token lines have 10 tab-separated columns; ``#`` lines are comments; blank lines end sentences.
    Multiword-token lines (IDs such as ``1-2``) and empty nodes (``8.1``) are skipped, so ``tokens`` are the
    syntactic words, the units UD's POS tags and word counts refer to.

    Args:
        path: the file, UTF-8.
        tag_field: ``"upos"`` (column 4, the 17 universal tags) or ``"xpos"`` (column 5, language-specific).

    Returns:
        An iterator of ``{"tokens": [...], "tags": [...]}``, one per sentence. The file is read lazily; a
        malformed line raises ``ValueError`` naming the file, the line number and the line.

    Example:
        >>> import tempfile
        >>> words = [["1-2", "don't"] + ["_"] * 8, ["1", "do", "do", "AUX", "VBP", "_", "0", "root", "_", "_"],
        ...          ["2", "n't", "not", "PART", "RB", "_", "1", "advmod", "_", "_"]]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "en-ud-train.conllu"
        ...     _ = path.write_text("# text = don't\\n" + "".join("\\t".join(w) + "\\n" for w in words))
        ...     list(read_conllu(path, tag_field="xpos"))
        [{'tokens': ['do', "n't"], 'tags': ['VBP', 'RB']}]
    """
    return _conllu_sentences(_existing_file(path), _check_tag_field(tag_field))


# -- datasets --
def _generate_conll(paths: list[str], tag_column: int, token_column: int) -> Iterator[dict[str, list[str]]]:
    """``Dataset.from_generator`` generator (module level: it must pickle)."""
    for path in paths:
        yield from _conll_sentences(Path(path), tag_column, token_column)


def _generate_conllu(paths: list[str], tag_index: int) -> Iterator[dict[str, list[str]]]:
    """``Dataset.from_generator`` generator (module level: it must pickle)."""
    for path in paths:
        yield from _conllu_sentences(Path(path), tag_index)


def _fingerprint(paths: list[str], settings: str) -> str:
    """Hash of the files' bytes and the reader settings: the cache key of one split.

    Bytes, not paths or modification times: an edited file gets a fresh cache, a moved one keeps its cache.
    """
    digest = hashlib.sha256(f"{_READER_VERSION}|{settings}".encode())
    for path in paths:
        digest.update(f"|{os.path.getsize(path)}|".encode())  # file boundaries
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:32]


def load_tagging_files(
    data_files: dict[str, str | list[str]],
    format: Literal["conll", "conllu"],
    tag_field: str = "upos",
    tag_column: int = -1,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Local CoNLL or CoNLL-U files -> a ``DatasetDict`` of sentences with columns ``tokens`` and ``tags``.

    Each split is built with ``datasets.Dataset.from_generator`` and cached (Arrow files under ``cache_dir``)
    under a fingerprint of the files' bytes and the settings below: a second call on the same files loads
    the cache without parsing them; editing a file makes a fresh cache.

    Args:
        data_files: files per split, e.g. ``{"train": "eng.train", "validation": "eng.testa"}``; a split may
            list several files, read in order.
        format: ``"conll"`` (CoNLL-2003 columns, see ``read_conll``) or ``"conllu"`` (see ``read_conllu``).
        tag_field: CoNLL-U only: ``"upos"`` or ``"xpos"``.
        tag_column: CoNLL only: the tag's column (``-1``: the last; the token is column 0).
        cache_dir: ``datasets`` cache folder (default: ``datasets``' own, ``~/.cache/huggingface/datasets``).

    Returns:
        A ``DatasetDict`` with one ``Dataset`` per key of ``data_files``, features
        ``tokens: Sequence(string)``, ``tags: Sequence(string)``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "eng.testa"
        ...     _ = path.write_text("CRICKET NNP I-NP O\\n- : O O\\n\\nLONDON NNP I-NP I-LOC\\n")
        ...     splits = load_tagging_files({"validation": str(path)}, format="conll", cache_dir=tmp)
        ...     splits["validation"][:]
        {'tokens': [['CRICKET', '-'], ['LONDON']], 'tags': [['O', 'O'], ['I-LOC']]}
    """
    if format not in ("conll", "conllu"):
        raise ValueError(
            f"`format` must be 'conll' (CoNLL-2003-style columns) or 'conllu' (CoNLL-U, 10 tab-separated "
            f"columns), got {format!r}. Pick the one that matches the files."
        )
    if not isinstance(data_files, dict) or not data_files:
        raise ValueError(
            f"`data_files` must be a non-empty dict of split -> file or list of files, got {data_files!r}. "
            "Pass e.g. {'train': 'eng.train', 'validation': 'eng.testa'}."
        )
    for split, files in data_files.items():
        if not isinstance(files, (str, os.PathLike)) and (not isinstance(files, list) or not files):
            raise ValueError(
                f"`data_files[{split!r}]` must be a path or a non-empty list of paths, got {files!r}. "
                "Name the split's files, or leave the split out."
            )
    if format == "conllu":
        gen, settings = _generate_conllu, {"tag_index": _check_tag_field(tag_field)}
    else:
        _check_column(tag_column, "tag_column")
        gen, settings = _generate_conll, {"tag_column": tag_column, "token_column": 0}
    per_split: dict[str, list[str]] = {split: [] for split in data_files}
    listed = {split: [os.fspath(f) for f in (files if isinstance(files, list) else [files])]
              for split, files in data_files.items()}
    for split, path in local_files(listed):
        per_split[split].append(str(_existing_file(path, f"data_files[{split!r}]").resolve()))

    out = {}
    for split, paths in per_split.items():
        # the split is part of the key: datasets caches one split per fingerprint, and two splits may share a file
        fingerprint = _fingerprint(paths, f"{split}|{format}|{sorted(settings.items())}")
        try:
            out[split] = Dataset.from_generator(
                gen,
                features=TAGGING_FEATURES,
                cache_dir=cache_dir,
                gen_kwargs={"paths": paths, **settings},
                split=NamedSplit(split),
                fingerprint=fingerprint,
            )
        except DatasetGenerationError as err:
            ours = find_in_chain(err, CoNLLFormatError)
            if ours is None:
                raise
        else:
            continue
        # Our message (file, line, what) rather than datasets' generic wrapper, raised outside the `except` block:
        # inside it Python would make `err` the context of `ours`, whose cause `err` is (a loop that chain walkers
        # and traceback printers follow forever).
        raise ours from None
    return DatasetDict(out)
