"""OPT (Belady's MIN) reclaim: evict the resident page whose next request is farthest away.

Pseudocode (``next_use[i]`` is the index of the next request to ``trace[i]``'s page)::

    for i, page in enumerate(trace):
        if resident[page]: hit
        else:
            fault
            if used == frames:
                evict the resident page with the largest key
            else: used += 1
            resident[page] = True
        key[page] = next_use[i] if page is requested again else len(trace) + page

Pages never requested again have keys above every real next use; among them the largest page
number leaves first, a tie-break ``reference.py`` shares. The keys sit in a max-heap with lazy
deletion: every request pushes its key, and a popped key whose page is gone or has a newer
key is dropped. Keys are unique, so a key identifies both its page and its freshness.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy


class OptPolicy(ReclaimPolicy):
    """Belady's optimal offline policy: the fewest faults any policy can reach on the trace."""

    name = "opt"

    def _replay(self, trace: DenseTrace, frames: int, hits: np.ndarray) -> int:
        return _opt_kernel(trace.ids, trace.next_use, trace.n_pages, frames, hits)


@njit(cache=True)
def _heap_push(heap, size, key):
    """Push ``key`` on the max-heap ``heap[:size]``; returns the new size."""
    child = size
    while child > 0:
        parent = (child - 1) >> 1
        if heap[parent] >= key:
            break
        heap[child] = heap[parent]
        child = parent
    heap[child] = key
    return size + 1


@njit(cache=True)
def _heap_pop(heap, size):
    """Remove the largest key of the max-heap ``heap[:size]``; returns (key, new size)."""
    top = heap[0]
    size -= 1
    last = heap[size]
    parent = 0
    while True:
        child = 2 * parent + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] > heap[child]:
            child += 1
        if heap[child] <= last:
            break
        heap[parent] = heap[child]
        parent = child
    heap[parent] = last
    return top, size


@njit(cache=True)
def _opt_kernel(ids, next_use, n_pages, frames, hits):
    """Fault count of OPT over dense page ``ids``; sets ``hits[i] = 1`` on hits if recording."""
    record = hits.size > 0
    requests = ids.size
    resident = np.zeros(n_pages, dtype=np.bool_)
    key_of = np.empty(n_pages, dtype=np.int64)
    heap = np.empty(requests, dtype=np.int64)
    size = 0
    used = 0
    faults = 0
    for i in range(requests):
        page = ids[i]
        if resident[page]:
            if record:
                hits[i] = 1
        else:
            faults += 1
            if used == frames:
                while True:
                    key, size = _heap_pop(heap, size)
                    victim = ids[key] if key < requests else key - requests
                    if resident[victim] and key_of[victim] == key:
                        break
                resident[victim] = False
            else:
                used += 1
            resident[page] = True
        key = next_use[i] if next_use[i] < requests else requests + page
        key_of[page] = key
        size = _heap_push(heap, size, key)
    return faults
