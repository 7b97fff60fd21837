"""Random reclaim inside a running simulation: evict a uniformly drawn frame.

The draws come from splitmix64 (Steele, Lea and Flood, 2014), as in the trace-replay kernel
:mod:`pfsim.replacement.random` (whose docstring gives the rule in pseudocode) and the compiled
core, so that every engine draws the same numbers.
"""

from __future__ import annotations

import numpy as np

from pfsim.hypervisor.reclaim.resident import ResidentPolicy
from pfsim.replacement.random import SPLITMIX64_GAMMA, SPLITMIX64_MIX1, SPLITMIX64_MIX2

_UINT64_MASK = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """One splitmix64 step: (new state, draw), all modulo 2**64."""
    state = (state + SPLITMIX64_GAMMA) & _UINT64_MASK
    draw = ((state ^ (state >> 30)) * SPLITMIX64_MIX1) & _UINT64_MASK
    draw = ((draw ^ (draw >> 27)) * SPLITMIX64_MIX2) & _UINT64_MASK
    return state, draw ^ (draw >> 31)


class RandomResident(ResidentPolicy):
    """Victims are frames drawn uniformly by splitmix64 (seeded from the run's
    ``host/reclaim`` stream), so the compiled core draws the same frames."""

    def __init__(self, memory, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
        super().__init__(memory, rng)
        self.state = int(rng.integers(0, 1 << 63, dtype=np.int64))

    def select_victims(self, count: int) -> list[int]:
        m = self.memory
        victims: list[int] = []
        chosen: set[int] = set()
        for _attempt in range(64 * count + m.limit):
            if len(victims) == count:
                break
            self.state, draw = splitmix64(self.state)
            gfn = int(m.frame_gfn[draw % m.limit])
            if gfn not in chosen and self._evictable(gfn):
                chosen.add(gfn)
                victims.append(gfn)
        return victims
