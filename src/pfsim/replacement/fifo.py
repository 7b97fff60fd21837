"""FIFO: evict the page that was loaded longest ago.

Pseudocode (``slots`` is a ring of ``frames`` page ids, ``hand`` its oldest slot)::

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

from pfsim.replacement.base import Policy

_USED, _HAND = 1, 2


class FifoPolicy(Policy):
    """First in, first out: the victim is the oldest loaded page; hits do not reorder."""

    name = "fifo"
    page_arrays = {"resident": (np.bool_, False)}
    frame_arrays = {"slots": (np.int32, -1)}
    n_state = 3

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _fifo_kernel(ids, self.frames, self.resident, self.slots, self.state, hits)


@njit(cache=True, nogil=True)
def _fifo_kernel(ids, frames, resident, slots, state, hits):
    record = hits.size > 0
    used = state[_USED]
    hand = state[_HAND]
    faults = state[0]
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
    state[0] = faults
    state[_USED] = used
    state[_HAND] = hand
