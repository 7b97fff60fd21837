"""CLOCK reclaim inside a running simulation: FIFO with a second chance for referenced pages.

The same rule and reference-bit convention as the trace-replay kernel
:mod:`pfsim.replacement.clock` (whose docstring gives it in pseudocode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.hypervisor.reclaim.resident import TOUCH_CLOCK, ResidentPolicy

if TYPE_CHECKING:
    from pfsim.hypervisor.hostmem import HostMemory


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
