"""The page ids of a trace-driven access step (``trace = "file.npy"``), loaded once per file.

The ``.npy`` array of page numbers (``pfsim trace record`` writes one) is memory-mapped and
renumbered to dense ids in order of first appearance (:class:`pfsim.replacement.PageIds`), so
that the step can lay its pages onto the range it works on; every thread of every process
running the same file shares one read-only array (4 bytes per access). The cache is keyed by the
file's identity (path, size, modification time): a file rewritten between two runs of one
process is read again.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from pfsim.errors import TraceFormatError


def trace_page_ids(path: str) -> np.ndarray:
    """Dense ``int32`` page ids of the trace at ``path``, in request order."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read the trace of an access step: "
                               f"{exc.strerror or exc}") from None
    return _page_ids(path, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _page_ids(path: str, size: int, mtime_ns: int) -> np.ndarray:
    try:
        pages = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TraceFormatError(f"{path}: not a .npy array of page numbers: {exc}") from None
    if pages.ndim != 1 or pages.dtype.kind not in "iu" or pages.size == 0:
        raise TraceFormatError(f"{path}: expected a non-empty 1-D array of integer page numbers")
    from pfsim.replacement import PageIds  # only runs with trace steps load the replay code

    ids = PageIds()
    out = np.empty(pages.size, dtype=np.int32)
    block = 1 << 20
    for start in range(0, pages.size, block):
        chunk = np.asarray(pages[start:start + block], dtype=np.int64)
        if chunk.min() < 0:
            raise TraceFormatError(f"{path}: negative page number {int(chunk.min())} at "
                                   f"index {start + int(np.argmin(chunk))}")
        ids.map(chunk, out=out[start:start + block])
    out.setflags(write=False)
    return out
