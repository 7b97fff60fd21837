"""LRU reclaim: evict the page whose last request is the oldest.

Pseudocode (a doubly linked list of resident pages, most recently used at ``head``)::

    for page in trace:
        if resident[page]:
            hit; move page to head
        else:
            fault
            if used == frames: unlink tail; resident[tail] = False   # least recently used
            else: used += 1
            push page at head; resident[page] = True

The list lives in two arrays indexed by page id (``newer``, ``older``), so every step is O(1).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.resident import (
    INSERT_LRU,
    TOUCH_LRU,
    ResidentPolicy,
    lru_push_front,
    lru_unlink,
)


class LruPolicy(ReclaimPolicy):
    """Least recently used: the victim is the resident page requested longest ago."""

    name = "lru"

    def _replay(self, trace: DenseTrace, frames: int, hits: np.ndarray) -> int:
        return _lru_kernel(trace.ids, trace.n_pages, frames, hits)


@njit(cache=True)
def _lru_kernel(ids, n_pages, frames, hits):
    """Fault count of LRU over dense page ``ids``; sets ``hits[i] = 1`` on hits if recording."""
    record = hits.size > 0
    resident = np.zeros(n_pages, dtype=np.bool_)
    newer = np.full(n_pages, -1, dtype=np.int32)  # towards head (most recent); -1 at head
    older = np.full(n_pages, -1, dtype=np.int32)  # towards tail (least recent); -1 at tail
    head = -1
    tail = -1
    used = 0
    faults = 0
    for i in range(ids.size):
        page = ids[i]
        if resident[page]:
            if record:
                hits[i] = 1
            if page == head:
                continue
            before = newer[page]  # not -1: page is not the head
            after = older[page]
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
                resident[victim] = False
            else:
                used += 1
            resident[page] = True
        newer[page] = -1
        older[page] = head
        if head == -1:
            tail = page
        else:
            newer[head] = page
        head = page
    return faults


# ---------------------------------------------------------------- in a running simulation


class LruResident(ResidentPolicy):
    touch = TOUCH_LRU
    insert = INSERT_LRU

    def inserted(self, gfn: int) -> None:
        lru_push_front(self.lru_prev, self.lru_next, self.lru_ends, gfn)

    def unlink(self, gfn: int) -> None:
        lru_unlink(self.lru_prev, self.lru_next, self.lru_ends, gfn)

    def select_victims(self, count: int) -> list[int]:
        victims: list[int] = []
        gfn = int(self.lru_ends[1])
        while gfn != -1 and len(victims) < count:
            before = int(self.lru_prev[gfn])
            if self._evictable(gfn):
                lru_unlink(self.lru_prev, self.lru_next, self.lru_ends, gfn)
                victims.append(gfn)
            gfn = before
        return victims
