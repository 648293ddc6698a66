"""Loading a corpus for any DataModule: local-file checks, a clear error for non-UTF-8 files, holdout splits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from datasets import DatasetDict

E = TypeVar("E", bound=BaseException)


def load_corpus(load: Callable[[], DatasetDict], data_files: Any, holdout: dict[str, float] | None) -> DatasetDict:
    """``load()`` the corpus, refusing empty local files up front and naming a non-UTF-8 file and byte offset;
    then carve the ``holdout`` splits off the end of train."""
    _check_not_empty(data_files)
    try:
        corpus = load()
    except Exception as err:
        if find_in_chain(err, FileNotFoundError) is not None:
            _check_named_files_exist(data_files, err)
        if find_in_chain(err, UnicodeDecodeError) is None:
            raise
        raise _non_utf8_error(data_files) from err
    return _carve_holdout(corpus, holdout) if holdout else corpus


def files_note(data_files: Any, split: str) -> str:
    if isinstance(data_files, dict) and split in data_files:
        return f" (data_files[{split!r}] = {data_files[split]!r})"
    return f" (data_files = {data_files!r})" if data_files else ""


def local_files(data_files: Any) -> list[tuple[str, str]]:
    """``(split, path)`` for every file named in ``data_files`` (a path, a list, or a dict of either)."""
    per_split = data_files.items() if isinstance(data_files, dict) else [("train", data_files)]
    return [(split, path) for split, files in per_split
            for path in ([files] if isinstance(files, str) else files or [])]


def _check_not_empty(data_files: Any) -> None:
    """Refuse an empty local file up front (``datasets`` would only say 'corresponds to no data')."""
    for split, path in local_files(data_files):
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise ValueError(
                f"the {split!r} split is empty (0 rows): `data_files` {path!r} is an empty file. Give it a "
                "non-empty file, or leave the split out and carve it off train with `holdout`."
            )


class DataFileNotFound(FileNotFoundError, ValueError):
    """A ``data_files`` path that names no file: bad input (a ``ValueError``) that ``except FileNotFoundError`` still
    catches, as it caught the error of ``datasets``."""


def _check_named_files_exist(data_files: Any, err: BaseException) -> None:
    """After ``datasets`` found no file: name the first local path of ``data_files`` (no glob pattern, no URL) that
    is missing or a folder. Hub datasets resolve ``data_files`` inside their repository, so this runs only on a
    failure, never up front."""
    for split, path in local_files(data_files):
        file = Path(path)
        if any(c in str(path) for c in "*?[") or "://" in str(path) or file.is_file():
            continue
        what = "is a directory" if file.is_dir() else "does not exist"
        raise DataFileNotFound(
            f"`data_files[{split!r}]` {str(path)!r} {what}: expected a file of the corpus (resolved to "
            f"{str(file.resolve())!r}). Check the path."
        ) from err


def exception_chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions Python prints above it (``__cause__``, else an unsuppressed ``__context__``),
    each once: a chain may loop (an exception re-raised inside a handler of its own wrapper becomes that
    wrapper's context)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        yield err
        seen.add(id(err))
        err = err.__cause__ if err.__cause__ is not None else None if err.__suppress_context__ else err.__context__


def find_in_chain(err: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exception_chain(err)``, or ``None``."""
    return next((cause for cause in exception_chain(err) if isinstance(cause, kind)), None)


def _non_utf8_error(data_files: Any) -> ValueError:
    """Find the first local file that is not UTF-8 and say where."""
    for _, path in local_files(data_files):
        try:
            raw = Path(path).read_bytes()
        except OSError:
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return ValueError(
                f"`data_files` {path!r} is not valid UTF-8: byte offset {err.start} holds "
                f"{raw[err.start:err.start + 4]!r} ({err.reason}). {reencode_hint(path)}"
            )
    return ValueError(f"the corpus is not valid UTF-8 (`data_files` = {data_files!r}); re-encode it as UTF-8.")


def reencode_hint(path: str | Path) -> str:
    """How to re-encode a non-UTF-8 file: from UTF-16 if it starts with a UTF-16 byte-order mark, else Latin-1."""
    path = Path(path)
    with open(path, "rb") as f:
        utf16 = f.read(2) in (b"\xff\xfe", b"\xfe\xff")
    source = "utf-16" if utf16 else "latin1"
    note = "It starts with a UTF-16 byte-order mark. " if utf16 else ""
    command = f"iconv -f {source} -t utf-8 {path} > {path.stem}.utf8{path.suffix}"
    return f"{note}Re-encode the file as UTF-8, e.g. `{command}`."


def _carve_holdout(corpus: DatasetDict, holdout: dict[str, float]) -> DatasetDict:
    """Split the last rows of ``train`` into the named splits, contiguously and in order."""
    clash = sorted(set(holdout) & set(corpus))
    total = sum(holdout.values())
    if clash or not all(0 < f < 1 for f in holdout.values()) or total >= 1:
        raise ValueError(
            f"`holdout` must name splits the corpus lacks (it has {sorted(corpus)}) with fractions in (0, 1) "
            f"summing below 1, got {holdout}. Drop the clashing names or shrink the fractions."
        )
    train, n = corpus["train"], len(corpus["train"])
    start = n - sum(int(n * f) for f in holdout.values())
    out = DatasetDict({**corpus, "train": train.select(range(start))})
    for split, fraction in holdout.items():
        out[split] = train.select(range(start, start + int(n * fraction)))
        start += int(n * fraction)
    return out
