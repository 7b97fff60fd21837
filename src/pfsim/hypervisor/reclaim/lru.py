"""LRU reclaim inside a running simulation: evict the page touched least recently.

The same rule as the trace-replay kernel :mod:`pfsim.replacement.lru` (whose docstring gives it
in pseudocode); ``tests/test_host_reclaim_differential.py`` checks that both make the same
decisions.
"""

from __future__ import annotations

from pfsim.hypervisor.reclaim.resident import (
    INSERT_LRU,
    TOUCH_LRU,
    ResidentPolicy,
    lru_push_front,
    lru_unlink,
)


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
