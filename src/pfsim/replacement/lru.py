"""LRU: evict the page whose last request is the oldest.

Pseudocode (a doubly linked list of resident pages, most recently used at ``head``)::

    for page in trace:
        if resident[page]:
            hit; move page to head
        else:
            fault
            if used == frames: unlink tail; resident[tail] = False   # least recently used
            else: used += 1
            push page at head; resident[page] = True

The list lives in two arrays indexed by page id (``newer``, ``older``), so every step is O(1);
``older[page] == -2`` marks a page that is not resident (no separate residency array).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy

_HEAD, _TAIL, _USED = 1, 2, 3
_OUT = -2  # older[] of a page that is not resident


class LruPolicy(Policy):
    """Least recently used: the victim is the resident page requested longest ago."""

    name = "lru"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, _OUT)}
    n_state = 4

    def _setup(self) -> None:
        self.state[_HEAD] = self.state[_TAIL] = -1

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _lru_kernel(ids, self.frames, self.newer, self.older, self.state, hits)


@njit(cache=True, nogil=True)
def _lru_kernel(ids, frames, newer, older, state, hits):
    record = hits.size > 0
    head = state[_HEAD]
    tail = state[_TAIL]
    used = state[_USED]
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        after = older[page]
        if after != _OUT:  # resident
            if record:
                hits[i] = 1
            if page == head:
                continue
            before = newer[page]  # not -1: page is not the head
            older[before] = after
            if after == -1:
                tail = before
            else:
                newer[after] = before
        else:
            faults += 1
            if used == frames:
                victim = tail
                tail = newer[victim]
                if tail == -1:
                    head = -1
                else:
                    older[tail] = -1
                older[victim] = _OUT
            else:
                used += 1
        newer[page] = -1
        older[page] = head
        if head == -1:
            tail = page
        else:
            newer[head] = page
        head = page
    state[0] = faults
    state[_HEAD] = head
    state[_TAIL] = tail
    state[_USED] = used
