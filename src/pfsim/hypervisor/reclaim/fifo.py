"""FIFO reclaim: evict the page that was loaded longest ago.

Pseudocode (``slots`` is a ring of ``frames`` page numbers, ``hand`` its oldest slot)::

    for page in trace:
        if resident[page]: hit                      # a hit changes nothing
        else:
            fault
            if used < frames: slots[used] = page; used += 1
            else:
                resident[slots[hand]] = False       # evict the oldest page
                slots[hand] = page; hand = (hand + 1) % frames
            resident[page] = True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy


class FifoPolicy(ReclaimPolicy):
    """First in, first out: the victim is the oldest loaded page; hits do not reorder."""

    name = "fifo"

    def _replay(self, trace: DenseTrace, frames: int, hits: np.ndarray) -> int:
        return _fifo_kernel(trace.ids, trace.n_pages, frames, hits)


@njit(cache=True)
def _fifo_kernel(ids, n_pages, frames, hits):
    """Fault count of FIFO over dense page ``ids``; sets ``hits[i] = 1`` on hits if recording."""
    record = hits.size > 0
    resident = np.zeros(n_pages, dtype=np.bool_)
    slots = np.empty(frames, dtype=np.int64)
    used = 0
    hand = 0
    faults = 0
    for i in range(ids.size):
        page = ids[i]
        if resident[page]:
            if record:
                hits[i] = 1
            continue
        faults += 1
        if used < frames:
            slots[used] = page
            used += 1
        else:
            resident[slots[hand]] = False
            slots[hand] = page
            hand += 1
            if hand == frames:
                hand = 0
        resident[page] = True
    return faults
