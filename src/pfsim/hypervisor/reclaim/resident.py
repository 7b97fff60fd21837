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

from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from pfsim.errors import InvariantViolation

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory

# per-access bookkeeping code for the compiled loop
TOUCH_NONE, TOUCH_CLOCK, TOUCH_LRU = 0, 1, 2
_RESIDENT, _SWAPCACHE = 1, 2


@njit(cache=True, nogil=True)
def lru_move_to_front(prev: np.ndarray, nxt: np.ndarray, ends: np.ndarray, gfn: int) -> None:
    """Move ``gfn`` (already on the list) to the head; ``ends`` = [head, tail]."""
    head = ends[0]
    if head == gfn:
        return
    before = prev[gfn]
    after = nxt[gfn]
    if before != -1:
        nxt[before] = after
    if after != -1:
        prev[after] = before
    else:
        ends[1] = before
    prev[gfn] = -1
    nxt[gfn] = head
    if head != -1:
        prev[head] = gfn
    ends[0] = gfn
    if ends[1] == -1:
        ends[1] = gfn


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

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        self.memory = memory
        self.rng = rng
        n = memory.nframes
        # LRU list arrays exist for every policy so the compiled loop has one signature
        self.lru_prev = np.full(n, -1, dtype=np.int32)
        self.lru_next = np.full(n, -1, dtype=np.int32)
        self.lru_ends = np.array([-1, -1], dtype=np.int64)

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
    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        super().__init__(memory, rng)
        self.queue: deque[int] = deque()

    def inserted(self, gfn: int) -> None:
        self.queue.append(gfn)

    def unlink(self, gfn: int) -> None:
        self.queue.remove(gfn)

    def select_victims(self, count: int) -> list[int]:
        victims: list[int] = []
        skipped: list[int] = []
        while self.queue and len(victims) < count:
            gfn = self.queue.popleft()
            (victims if self._evictable(gfn) else skipped).append(gfn)
        self.queue.extendleft(reversed(skipped))
        return victims


class LruResident(ResidentPolicy):
    touch = TOUCH_LRU

    def inserted(self, gfn: int) -> None:
        self.lru_prev[gfn] = -1
        self.lru_next[gfn] = -1
        head = int(self.lru_ends[0])
        self.lru_next[gfn] = head
        if head != -1:
            self.lru_prev[head] = gfn
        self.lru_ends[0] = gfn
        if self.lru_ends[1] == -1:
            self.lru_ends[1] = gfn

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

__all__ = ["RESIDENT_POLICIES", "TOUCH_CLOCK", "TOUCH_LRU", "TOUCH_NONE", "InvariantViolation",
           "ResidentPolicy"]
