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

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.resident import INSERT_FIFO, ResidentPolicy, ring_push
from pfsim.machine.hostmem_layout import F_RING, S_RING_HEAD

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory


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


# ---------------------------------------------------------------- in a running simulation


class FifoResident(ResidentPolicy):
    """A ring of gfns in the order they got frames (every ring entry holds a frame)."""

    insert = INSERT_FIFO

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        super().__init__(memory, rng)
        self.ring = memory.frames[F_RING]
        self.head_at = S_RING_HEAD

    def inserted(self, gfn: int) -> None:
        ring_push(self.ring, self.memory.small, self.head_at, gfn)

    def unlink(self, gfn: int) -> None:
        small, cap = self.memory.small, self.ring.shape[0]
        head, size = int(small[self.head_at]), int(small[self.head_at + 1])
        order = [int(self.ring[(head + i) % cap]) for i in range(size)
                 if self.ring[(head + i) % cap] != gfn]
        small[self.head_at + 1] = 0
        for other in order:
            ring_push(self.ring, small, self.head_at, other)

    def select_victims(self, count: int) -> list[int]:
        small, cap = self.memory.small, self.ring.shape[0]
        victims: list[int] = []
        while small[self.head_at + 1] > 0 and len(victims) < count:
            head = int(small[self.head_at])
            gfn = int(self.ring[head])
            small[self.head_at] = (head + 1) % cap
            small[self.head_at + 1] -= 1
            if self._evictable(gfn):
                victims.append(gfn)
            else:  # cannot happen: only pages holding frames are on the ring
                raise InvariantViolation(f"FIFO ring holds gfn {gfn} which has no frame")
        return victims
