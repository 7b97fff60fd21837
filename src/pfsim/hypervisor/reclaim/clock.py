"""CLOCK reclaim: FIFO that gives a recently requested page a second chance.

Convention (libCacheSim ``Clock()``): a page's reference bit is 0 when it is loaded and set to 1
on a hit. Pseudocode (``slots`` is a ring of ``frames`` page numbers, ``hand`` its oldest slot)::

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

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.resident import TOUCH_CLOCK, ResidentPolicy

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory

_ABSENT, _LOADED, _REFERENCED = 0, 1, 2  # page state: not resident, bit 0, bit 1


class ClockPolicy(ReclaimPolicy):
    """Second chance: the hand skips (and clears) pages hit since it last passed them."""

    name = "clock"

    def _replay(self, trace: DenseTrace, frames: int, hits: np.ndarray) -> int:
        return _clock_kernel(trace.ids, trace.n_pages, frames, hits)


@njit(cache=True)
def _clock_kernel(ids, n_pages, frames, hits):
    """Fault count of CLOCK over dense page ``ids``; sets ``hits[i] = 1`` on hits if recording."""
    record = hits.size > 0
    state = np.zeros(n_pages, dtype=np.uint8)  # NOTE: perf: residency and bit in one byte
    slots = np.empty(frames, dtype=np.int64)
    used = 0
    hand = 0
    faults = 0
    for i in range(ids.size):
        page = ids[i]
        if state[page] != _ABSENT:
            state[page] = _REFERENCED
            if record:
                hits[i] = 1
            continue
        faults += 1
        if used < frames:
            slots[used] = page
            used += 1
        else:
            while state[slots[hand]] == _REFERENCED:
                state[slots[hand]] = _LOADED
                hand += 1
                if hand == frames:
                    hand = 0
            state[slots[hand]] = _ABSENT
            slots[hand] = page
            hand += 1
            if hand == frames:
                hand = 0
        state[page] = _LOADED
    return faults


# ---------------------------------------------------------------- in a running simulation


class ClockResident(ResidentPolicy):
    touch = TOUCH_CLOCK

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        super().__init__(memory, rng)
        self.hand = 0

    def select_victims(self, count: int) -> list[int]:
        m = self.memory
        victims: list[int] = []
        budget = 2 * m.limit + count  # two sweeps clear every bit
        while len(victims) < count and budget > 0:
            budget -= 1
            gfn = int(m.frame_gfn[self.hand])
            self.hand = (self.hand + 1) % m.limit
            if not self._evictable(gfn):
                continue
            if m.referenced[gfn]:
                m.referenced[gfn] = 0
            else:
                victims.append(gfn)
        return victims
