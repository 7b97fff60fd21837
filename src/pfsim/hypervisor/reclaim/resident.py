"""Reclaim policies over a live VM (the simulator's host), beside the trace-replay kernels.

The replay kernels (``fifo.py``, ``lru.py``...) see every request of a trace.  Inside a
simulation the host sees guest accesses only through the bits the compiled access loop keeps
per gfn (:class:`~pfsim.hypervisor.hostmem.HostMemory`): the ``referenced`` bit (CLOCK) and a
move-to-front LRU list (LRU), so victims are chosen by the same rules:

* fifo:   evict in the order pages got their frame;
* lru:    evict the page touched least recently (exact: every access moves its page to the
          head of a doubly linked list, in the compiled loop);
* clock:  a hand sweeps the host frames; a page whose referenced bit is set gets it cleared
          and is passed over, the first page with a clear bit is the victim.  Convention: a
          page's bit is 0 when it gets its frame and every guest access sets it (the faulting
          access, re-executed after the fault, sets it at once);
* random: a uniformly random evictable frame.

Pinned pages and pages being read from swap are never chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from pfsim.errors import InvariantViolation

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory

from pfsim.guest.scan import (
    INSERT_FIFO,
    INSERT_LRU,
    INSERT_NONE,
    TOUCH_CLOCK,
    TOUCH_LRU,
    TOUCH_NONE,
    lru_push_front,
    ring_push,
)
_RESIDENT, _SWAPCACHE = 1, 2


@njit(cache=True, nogil=True)
def lru_unlink(prev: np.ndarray, nxt: np.ndarray, ends: np.ndarray, gfn: int) -> None:
    before = prev[gfn]
    after = nxt[gfn]
    if before != -1:
        nxt[before] = after
    else:
        ends[0] = after
    if after != -1:
        prev[after] = before
    else:
        ends[1] = before
    prev[gfn] = -1
    nxt[gfn] = -1


class ResidentPolicy:
    """Hooks a policy needs from the host: a page got a frame, leaves the lists, victims."""

    touch = TOUCH_NONE
    insert = INSERT_NONE

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        from pfsim.hypervisor.hostmem import L_LRU_NEXT, L_LRU_PREV, S_LRU_HEAD, S_LRU_TAIL

        self.memory = memory
        self.rng = rng
        # views into the host's packed arrays (the compiled loop updates them too)
        self.lru_prev = memory.gfn_links[L_LRU_PREV]
        self.lru_next = memory.gfn_links[L_LRU_NEXT]
        self.lru_ends = memory.small[S_LRU_HEAD:S_LRU_TAIL + 1]

    def inserted(self, gfn: int) -> None:
        """``gfn`` just got a host frame."""

    def unlink(self, gfn: int) -> None:
        """``gfn`` is pinned: never a victim."""

    def select_victims(self, count: int) -> list[int]:
        raise NotImplementedError

    def _evictable(self, gfn: int) -> bool:
        m = self.memory
        return gfn >= 0 and not m.pinned[gfn] and m.where[gfn] in (_RESIDENT, _SWAPCACHE)


class FifoResident(ResidentPolicy):
    """A ring of gfns in the order they got frames (every ring entry holds a frame)."""

    insert = INSERT_FIFO

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        from pfsim.hypervisor.hostmem import F_RING, S_RING_HEAD

        super().__init__(memory, rng)
        self.ring = memory.frames[F_RING]
        self.head_at = S_RING_HEAD

    def inserted(self, gfn: int) -> None:
        ring_push(self.ring, self.memory.small, self.head_at, gfn)

    def unlink(self, gfn: int) -> None:
        small, cap = self.memory.small, self.ring.shape[0]
        head, size = int(small[self.head_at]), int(small[self.head_at + 1])
        order = [int(self.ring[(head + i) % cap]) for i in range(size) if self.ring[(head + i) % cap] != gfn]
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


class RandomResident(ResidentPolicy):
    def select_victims(self, count: int) -> list[int]:
        m = self.memory
        victims: list[int] = []
        chosen: set[int] = set()
        for _attempt in range(64 * count + m.limit):
            if len(victims) == count:
                break
            gfn = int(m.frame_gfn[int(self.rng.integers(m.limit))])
            if gfn not in chosen and self._evictable(gfn):
                chosen.add(gfn)
                victims.append(gfn)
        return victims


RESIDENT_POLICIES: dict[str, type[ResidentPolicy]] = {
    "fifo": FifoResident,
    "lru": LruResident,
    "clock": ClockResident,
    "random": RandomResident,
}

__all__ = ["INSERT_FIFO", "INSERT_LRU", "INSERT_NONE", "RESIDENT_POLICIES", "TOUCH_CLOCK",
           "TOUCH_LRU", "TOUCH_NONE", "ResidentPolicy"]
