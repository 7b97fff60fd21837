"""The event heap as arrays, for compiled event loops: same order as :class:`Simulator`.

An event is an integer ``kind`` and three integer arguments scheduled at an absolute time; the
heap orders events by (time, priority, sequence) exactly as :mod:`pfsim.engine.simulator` does,
so a compiled loop and the interpreted one run ties in the same order.  Like the engine, it
knows nothing of what the kinds mean.

Layout: ``ev`` is int64 ``[EV_FIELDS, capacity]`` (one column per event slot); ``heap`` holds
slot numbers in heap order; ``free`` is a stack of unused slots; ``g`` holds the scalars
(clock, sequence counter, heap size, free-stack size).
"""

from __future__ import annotations

import numpy as np
from numba import njit

EV_TIME, EV_PRIO, EV_SEQ, EV_KIND, EV_A0, EV_A1, EV_A2 = range(7)
EV_FIELDS = 7
H_NOW, H_SEQ, H_SIZE, H_FREE = range(4)
H_FIELDS = 4


def new_heap(capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ev, heap, free, g) for ``capacity`` events."""
    ev = np.zeros((EV_FIELDS, capacity), dtype=np.int64)
    heap = np.zeros(capacity, dtype=np.int64)
    free = np.arange(capacity - 1, -1, -1, dtype=np.int64)
    g = np.zeros(H_FIELDS, dtype=np.int64)
    g[H_FREE] = capacity
    return ev, heap, free, g


def grow_heap(ev: np.ndarray, heap: np.ndarray, free: np.ndarray,
              g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twice the capacity, same contents (called between events, from Python)."""
    old = ev.shape[1]
    new_ev = np.zeros((EV_FIELDS, 2 * old), dtype=np.int64)
    new_ev[:, :old] = ev
    new_heap = np.zeros(2 * old, dtype=np.int64)
    new_heap[:old] = heap
    nfree = int(g[H_FREE])
    new_free = np.zeros(2 * old, dtype=np.int64)
    new_free[:nfree] = free[:nfree]
    added = np.arange(2 * old - 1, old - 1, -1, dtype=np.int64)
    new_free[nfree:nfree + old] = added
    g[H_FREE] = nfree + old
    return new_ev, new_heap, new_free


@njit(cache=True, nogil=True, _nrt=False)  # no allocation: no refcounting
def _less(ev: np.ndarray, a: int, b: int) -> bool:
    if ev[EV_TIME, a] != ev[EV_TIME, b]:
        return ev[EV_TIME, a] < ev[EV_TIME, b]
    if ev[EV_PRIO, a] != ev[EV_PRIO, b]:
        return ev[EV_PRIO, a] < ev[EV_PRIO, b]
    return ev[EV_SEQ, a] < ev[EV_SEQ, b]


@njit(cache=True, nogil=True, _nrt=False)  # no allocation: no refcounting
def heap_push(ev: np.ndarray, heap: np.ndarray, free: np.ndarray, g: np.ndarray, time: int,
              prio: int, kind: int, a0: int, a1: int, a2: int) -> bool:
    """Schedule an event; False when the time is in the past or no slot is free."""
    if time < g[H_NOW] or g[H_FREE] == 0:
        return False
    g[H_FREE] -= 1
    slot = free[g[H_FREE]]
    g[H_SEQ] += 1
    ev[EV_TIME, slot] = time
    ev[EV_PRIO, slot] = prio
    ev[EV_SEQ, slot] = g[H_SEQ]
    ev[EV_KIND, slot] = kind
    ev[EV_A0, slot] = a0
    ev[EV_A1, slot] = a1
    ev[EV_A2, slot] = a2
    i = g[H_SIZE]
    g[H_SIZE] = i + 1
    while i > 0:  # sift up
        parent = (i - 1) >> 1
        if not _less(ev, slot, heap[parent]):
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = slot
    return True


@njit(cache=True, nogil=True, _nrt=False)  # no allocation: no refcounting
def heap_pop(ev: np.ndarray, heap: np.ndarray, free: np.ndarray, g: np.ndarray) -> int:
    """Remove the first event and return its slot (valid until the next push)."""
    top = heap[0]
    n = g[H_SIZE] - 1
    g[H_SIZE] = n
    if n > 0:
        last = heap[n]
        i = 0
        while True:  # sift down
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and _less(ev, heap[child + 1], heap[child]):
                child += 1
            if not _less(ev, heap[child], last):
                break
            heap[i] = heap[child]
            i = child
        heap[i] = last
    free[g[H_FREE]] = top
    g[H_FREE] += 1
    return top
