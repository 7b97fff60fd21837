"""CLOCK: FIFO that gives a recently requested page a second chance.

Convention (libCacheSim ``Clock()``): a page's reference bit is 0 when it is loaded and set to 1
on a hit. Pseudocode (``slots`` is a ring of ``frames`` page ids, ``hand`` its oldest slot)::

    for page in trace:
        if resident[page]: hit; referenced[page] = 1
        else:
            fault
            if used < frames: slots[used] = page; used += 1
            else:
                while referenced[slots[hand]]:         # sweep, clearing bits
                    referenced[slots[hand]] = 0; hand = (hand + 1) % frames
                resident[slots[hand]] = False          # first page found with bit 0
                slots[hand] = page; hand = (hand + 1) % frames
            resident[page] = True; referenced[page] = 0
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy

_ABSENT, _LOADED, _REFERENCED = 0, 1, 2  # page state: not resident, bit 0, bit 1
_USED, _HAND = 1, 2


class ClockPolicy(Policy):
    """Second chance: the hand skips (and clears) pages hit since it last passed them."""

    name = "clock"
    page_arrays = {"page_state": (np.uint8, _ABSENT)}
    frame_arrays = {"slots": (np.int32, -1)}
    n_state = 3

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _clock_kernel(ids, self.frames, self.page_state, self.slots, self.state, hits)


@njit(cache=True, nogil=True)
def _clock_kernel(ids, frames, page_state, slots, state, hits):
    record = hits.size > 0
    used = state[_USED]
    hand = state[_HAND]
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        if page_state[page] != _ABSENT:  # NOTE: perf: residency and bit in one byte
            page_state[page] = _REFERENCED
            if record:
                hits[i] = 1
            continue
        faults += 1
        if used < frames:
            slots[used] = page
            used += 1
        else:
            while page_state[slots[hand]] == _REFERENCED:
                page_state[slots[hand]] = _LOADED
                hand += 1
                if hand == frames:
                    hand = 0
            page_state[slots[hand]] = _ABSENT
            slots[hand] = page
            hand += 1
            if hand == frames:
                hand = 0
        page_state[page] = _LOADED
    state[0] = faults
    state[_USED] = used
    state[_HAND] = hand
