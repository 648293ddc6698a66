"""Keeping a memory-mapped file's pages out of this process's resident memory while a pass reads it.

``datasets`` memory-maps its Arrow cache files. Every page a pass over the corpus reads stays mapped into the
process and counts in its resident memory (what ``top`` shows as RES) until the kernel needs the memory back, so
one pass over a 4 GB corpus shows as a 4 GB process. :meth:`MappedFiles.release` unmaps those pages
(``madvise(MADV_DONTNEED)``): they stay in the page cache, and a later read maps them back from it. Only
read-only mappings of files are touched, whose pages the file itself holds (anonymous memory would be lost).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import pyarrow as pa

PAGE = mmap.PAGESIZE
_MAPS = Path("/proc/self/maps")  # Linux; elsewhere no mapping is found and release() does nothing


@cache
def _madvise() -> Callable[[int, int, int], int] | None:
    if not hasattr(mmap, "MADV_DONTNEED") or not _MAPS.is_file():
        return None
    fn = ctypes.CDLL(None, use_errno=True).madvise
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


class MappedFiles:
    """This process's read-only memory mappings of ``paths`` (none where the OS does not list them), found once:
    use it only while whatever mapped the files (e.g. the dataset) is alive, as a new mapping could take the range.

    Args:
        paths: the files, e.g. a dataset's ``cache_files`` names.

    Example:
        >>> import numpy as np, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "values.bin")
        >>> np.arange(4096, dtype=np.int64).tofile(path)
        >>> data = np.memmap(path, dtype=np.int64, mode="r")
        >>> total = int(data.sum())  # every page read: now resident
        >>> MappedFiles([path]).release()  # unmapped, still in the file
        >>> int(data.sum()) == total
        True
    """

    def __init__(self, paths: Iterable[str | os.PathLike]) -> None:
        wanted = {os.path.realpath(path) for path in paths}
        self.ranges: list[tuple[int, int]] = []  # (start, end) addresses, page-aligned
        if not wanted or _madvise() is None:
            return
        for line in _MAPS.read_text().splitlines():  # "start-end perms offset dev inode path"
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and "w" not in fields[1] and fields[5] in wanted:
                start, end = (int(address, 16) for address in fields[0].split("-"))
                self.ranges.append((start, end))

    def release(self, arrays: pa.Array | pa.ChunkedArray | None = None) -> None:
        """Unmap the files' pages from this process (a later read maps a page back): all of them, or those under
        ``arrays``' buffers (a pass's chunk: the cost then follows the chunk, not the file)."""
        low, high = (0, 2**64) if arrays is None else _buffer_span(arrays)
        low, high = low // PAGE * PAGE, -(-high // PAGE) * PAGE  # whole pages: the mapping holds them all
        for start, end in self.ranges:
            lo, hi = max(start, low), min(end, high)
            if lo < hi and _madvise()(lo, hi - lo, mmap.MADV_DONTNEED) != 0:
                raise OSError(ctypes.get_errno(), f"madvise(MADV_DONTNEED) failed on {hi - lo:,} mapped bytes")


def _buffer_span(arrays: pa.Array | pa.ChunkedArray) -> tuple[int, int]:
    """The lowest and one past the highest address of ``arrays``' buffers ((0, 0) when it has none)."""
    chunks = arrays.chunks if isinstance(arrays, pa.ChunkedArray) else [arrays]
    buffers = [buf for chunk in chunks for buf in chunk.buffers() if buf is not None and buf.size]
    if not buffers:
        return 0, 0
    return min(buf.address for buf in buffers), max(buf.address + buf.size for buf in buffers)
