"""Renumber page numbers to dense ids ``0, 1, 2, ...`` in order of first appearance, chunk by chunk.

The policies keep their per-page state in arrays indexed by dense id, so a trace is renumbered
once, in a streaming pass, by an open-addressing hash table (linear probing, Fibonacci hashing,
at most half full) that lives across chunks. Its memory grows with the number of distinct pages
only (12 bytes per slot, two slots or more per page), never with the trace length.

NOTE: perf: the hash renumbers 10 M Zipf requests over 1 M pages in about 0.1 s; ``np.unique``
sorts the whole trace (about 1 s per 10 M) and cannot run on one chunk at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio
_MIN_BITS = 16


@njit(cache=True, nogil=True)
def _slot(page, shift, mask):
    return np.int64((np.uint64(page) * _FIBONACCI) >> shift) & mask


@njit(cache=True, nogil=True)
def _map_kernel(pages, keys, values, shift, n_pages, limit, out):
    """Write the id of ``pages[i]`` to ``out[i]`` until the table holds ``limit`` pages.

    Returns (requests done, pages now in the table); the caller grows the table and calls
    again with the rest when fewer than ``pages.size`` were done.
    """
    mask = keys.size - 1
    for i in range(pages.size):
        page = pages[i]
        slot = _slot(page, shift, mask)
        while True:
            key = keys[slot]
            if key == page:
                out[i] = values[slot]
                break
            if key == _EMPTY:
                if n_pages == limit:
                    return i, n_pages
                keys[slot] = page
                values[slot] = n_pages
                out[i] = n_pages
                n_pages += 1
                break
            slot = (slot + 1) & mask
    return pages.size, n_pages


@njit(cache=True, nogil=True)
def _rehash(old_keys, old_values, keys, values, shift):
    mask = keys.size - 1
    for j in range(old_keys.size):
        page = old_keys[j]
        if page != _EMPTY:
            slot = _slot(page, shift, mask)
            while keys[slot] != _EMPTY:
                slot = (slot + 1) & mask
            keys[slot] = page
            values[slot] = old_values[j]


class PageIds:
    """Dense ids of page numbers seen so far; :meth:`map` renumbers the next chunk."""

    def __init__(self, expected_pages: int = 0) -> None:
        bits = max(_MIN_BITS, int(2 * max(expected_pages, 1) - 1).bit_length())
        self._allocate(bits)
        self.n_pages = 0

    def _allocate(self, bits: int) -> None:
        self._bits = bits
        self._keys = np.full(1 << bits, _EMPTY, dtype=np.int64)
        self._values = np.empty(1 << bits, dtype=np.int32)

    def map(self, pages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Dense ``int32`` ids of ``pages`` (non-negative ``int64``), assigning new ids in order."""
        pages = np.ascontiguousarray(pages, dtype=np.int64)
        if out is None or out.size < pages.size:
            out = np.empty(pages.size, dtype=np.int32)
        out = out[:pages.size]
        done = 0
        while True:
            limit = min(self._keys.size // 2, 2**31 - 1)
            step, self.n_pages = _map_kernel(pages[done:], self._keys, self._values,
                                             np.uint64(64 - self._bits), self.n_pages, limit,
                                             out[done:])
            done += step
            if done == pages.size:
                return out
            if self.n_pages >= 2**31 - 1:
                raise OverflowError("more than 2**31 - 1 distinct pages")
            self._grow()

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._allocate(self._bits + 1)
        _rehash(old_keys, old_values, self._keys, self._values, np.uint64(64 - self._bits))

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return int(self._keys.nbytes + self._values.nbytes)
