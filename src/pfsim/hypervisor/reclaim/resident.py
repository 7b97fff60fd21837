"""Reclaim inside a running simulation: the hooks a policy gives the host, and their base.

The trace-replay kernels (:mod:`pfsim.replacement`) see every request of a trace.  Inside a
simulation the host sees guest accesses only through the bits the compiled access loop
(:mod:`pfsim.machine.scan`) keeps per gfn (:class:`~pfsim.hypervisor.hostmem.HostMemory`): the
``referenced`` bit (CLOCK) and a move-to-front LRU list (LRU).  Each policy module here
(``fifo.py``, ``lru.py``, ``clock.py``, ``random.py``) holds its ``*Resident`` class, which
chooses victims by the same rules as the replay kernel of the same name:

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

from pfsim.machine.hostmem_layout import (
    L_LRU_NEXT,
    L_LRU_PREV,
    RESIDENT,
    S_LRU_HEAD,
    S_LRU_TAIL,
    SWAPCACHE,
)
from pfsim.machine.scan import (
    INSERT_FIFO,
    INSERT_LRU,
    INSERT_NONE,
    TOUCH_CLOCK,
    TOUCH_LRU,
    TOUCH_NONE,
    lru_push_front,
    ring_push,
)

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory


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

    def unlink_many(self, gfns: list[int]) -> None:
        """``gfns`` lost their frames outside reclaim (the balloon): off the policy's list."""
        for gfn in gfns:
            self.unlink(gfn)

    def select_victims(self, count: int) -> list[int]:
        raise NotImplementedError

    def _evictable(self, gfn: int) -> bool:
        m = self.memory
        return gfn >= 0 and not m.pinned[gfn] and m.where[gfn] in (RESIDENT, SWAPCACHE)


__all__ = ["INSERT_FIFO", "INSERT_LRU", "INSERT_NONE", "TOUCH_CLOCK", "TOUCH_LRU", "TOUCH_NONE",
           "ResidentPolicy", "lru_push_front", "lru_unlink", "ring_push"]
