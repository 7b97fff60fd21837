"""Exact LRU stack distances in one pass (Mattson et al., 1970), with a Fenwick tree.

The stack distance of a request is the number of distinct other pages requested since the
previous request to its page (``None``, a compulsory miss, at its first request). LRU with
``F`` frames hits exactly the requests whose distance is below ``F``, so one histogram of
distances gives LRU's faults at every memory size at once::

    faults(F) = compulsory + sum(histogram[d] for d >= F)

Each request gets a time position ``1, 2, 3...``; a position is *live* while it holds the
latest request of its page and becomes a *hole* when the page is requested again. The pages
requested after position ``p`` are the live positions after it, so with ``t`` positions used
and a Fenwick tree counting holes (Bennett and Kruskal, 1975 use the same idea)::

    for page in trace:
        p = last[page]
        if p is None: compulsory += 1
        else:
            distance = (t - p) - (holes - holes_up_to(p)); histogram[distance] += 1
            mark p as a hole; holes += 1
        t += 1; last[page] = t

That is one prefix query and one update of O(log t) per request. When the positions run out,
the live ones are renumbered ``1..k`` in order (the holes dropped) and the tree is cleared, so
memory stays proportional to the number of distinct pages (positions for twice as many), not
to the trace length.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_T, _HOLES, _COLD, _CAP = 0, 1, 2, 3


class StackDistances:
    """A histogram of LRU stack distances, fed dense page ids chunk by chunk."""

    def __init__(self) -> None:
        self.state = np.zeros(4, dtype=np.int64)
        self.last = np.full(0, -1, dtype=np.int64)
        self.histogram = np.zeros(0, dtype=np.int64)
        self.tree = np.zeros(1, dtype=np.int32)
        self.page_at = np.zeros(1, dtype=np.int32)
        self.requests = 0
        self._grow(1024)

    @property
    def compulsory(self) -> int:
        """First requests of a page (compulsory misses of any policy)."""
        return int(self.state[_COLD])

    def feed(self, ids: np.ndarray, n_pages: int) -> None:
        """Add the next chunk of dense page ids (every id below ``n_pages``)."""
        if n_pages > self.last.size or 2 * n_pages + 2 > self.state[_CAP]:
            self._grow(n_pages)
        _stack_kernel(ids, self.last, self.tree, self.page_at, self.histogram, self.state)
        self.requests += int(ids.size)

    def _grow(self, n_pages: int) -> None:
        capacity = max(n_pages, 2 * self.last.size, 1024)
        if capacity > self.last.size:
            last = np.full(capacity, -1, dtype=np.int64)
            last[:self.last.size] = self.last
            histogram = np.zeros(capacity, dtype=np.int64)
            histogram[:self.histogram.size] = self.histogram
            self.last, self.histogram = last, histogram
        positions = 2 * capacity + 2
        if positions > self.state[_CAP]:
            tree = np.zeros(positions + 1, dtype=np.int32)
            page_at = np.zeros(positions + 1, dtype=np.int32)
            _compact(self.last, self.tree, self.page_at, tree, page_at, self.state)
            self.tree, self.page_at = tree, page_at
            self.state[_CAP] = positions

    def faults(self, frames: np.ndarray) -> np.ndarray:
        """LRU faults at each frame count of ``frames`` (``int64`` array, counts >= 1)."""
        frames = np.asarray(frames, dtype=np.int64)
        tail = np.concatenate([np.cumsum(self.histogram[::-1])[::-1], [0]])  # sum of d >= i
        return self.compulsory + tail[np.minimum(frames, self.histogram.size)]


@njit(cache=True, nogil=True)
def _compact(last, old_tree, old_page_at, tree, page_at, state):
    """Renumber the live positions ``1..k`` in order into ``page_at``; clear ``tree``."""
    t = state[_T]
    k = 0
    for position in range(1, t + 1):
        page = old_page_at[position]
        if last[page] == position:
            k += 1
            page_at[k] = page
            last[page] = k
    tree[:] = 0
    state[_T] = k
    state[_HOLES] = 0


@njit(cache=True, nogil=True)
def _stack_kernel(ids, last, tree, page_at, histogram, state):
    t = state[_T]
    holes = state[_HOLES]
    cold = state[_COLD]
    cap = tree.size - 1
    for i in range(ids.size):
        page = ids[i]
        p = last[page]
        if p < 0:
            cold += 1
        else:
            before = 0  # holes at positions 1..p
            j = p
            while j > 0:
                before += tree[j]
                j -= j & -j
            histogram[(t - p) - (holes - before)] += 1
            j = p
            while j <= cap:
                tree[j] += 1
                j += j & -j
            holes += 1
            last[page] = -1  # p is a hole now (a compaction must not keep it)
        if t == cap:  # out of positions: drop the holes
            state[_T] = t
            state[_HOLES] = holes
            _compact(last, tree, page_at, tree, page_at, state)
            t = state[_T]
            holes = 0
        t += 1
        last[page] = t
        page_at[t] = page
    state[_T] = t
    state[_HOLES] = holes
    state[_COLD] = cold
