"""FIFO reclaim inside a running simulation: evict in the order pages got their frame.

The same rule as the trace-replay kernel :mod:`pfsim.replacement.fifo` (whose docstring gives it
in pseudocode); ``tests/test_host_reclaim_differential.py`` checks that both make the same
decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.reclaim.resident import INSERT_FIFO, ResidentPolicy, ring_push
from pfsim.machine.hostmem_layout import F_RING, S_RING_HEAD

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory


class FifoResident(ResidentPolicy):
    """A ring of gfns in the order they got frames (every ring entry holds a frame)."""

    insert = INSERT_FIFO

    def __init__(self, memory: HostMemory, rng: np.random.Generator) -> None:
        super().__init__(memory, rng)
        self.ring = memory.frames[F_RING]
        self.head_at = S_RING_HEAD

    def inserted(self, gfn: int) -> None:
        ring_push(self.ring, self.memory.small, self.head_at, gfn)

    def unlink_many(self, gfns: list[int]) -> None:
        """Rebuild the ring once without ``gfns``."""
        if not gfns:
            return
        drop = set(gfns)
        small, cap = self.memory.small, self.ring.shape[0]
        head, size = int(small[self.head_at]), int(small[self.head_at + 1])
        order = [int(self.ring[(head + i) % cap]) for i in range(size)]
        small[self.head_at + 1] = 0
        for other in order:
            if other not in drop:
                ring_push(self.ring, small, self.head_at, other)

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
