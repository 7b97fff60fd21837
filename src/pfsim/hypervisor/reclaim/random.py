"""Random reclaim: evict a uniformly drawn resident page.

Pseudocode (``slots`` holds the ``frames`` resident pages in load order, each new page taking
its victim's slot)::

    state = seed
    for page in trace:
        if resident[page]: hit
        else:
            fault
            if used < frames: slots[used] = page; used += 1
            else:
                state, draw = splitmix64(state)
                slot = draw % frames                 # bias below frames / 2**64
                resident[slots[slot]] = False; slots[slot] = page
            resident[page] = True

The draws come from splitmix64 (Steele, Lea and Flood, 2014) written out here rather than a
numpy ``Generator``, so that the compiled kernel and ``reference.py`` draw the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.resident import ResidentPolicy

SPLITMIX64_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX64_MIX1 = 0xBF58476D1CE4E5B9
SPLITMIX64_MIX2 = 0x94D049BB133111EB
_UINT64_MASK = (1 << 64) - 1


class RandomPolicy(ReclaimPolicy):
    """Random replacement: the victim is a uniformly drawn resident frame (seeded, repeatable)."""

    name = "random"

    def _replay(self, trace: DenseTrace, frames: int, hits: np.ndarray) -> int:
        seed = np.uint64(self.seed & _UINT64_MASK)
        return _random_kernel(trace.ids, trace.n_pages, frames, seed, hits)


@njit(cache=True)
def _random_kernel(ids, n_pages, frames, seed, hits):
    """Fault count of random eviction over dense page ``ids``; records hits if ``hits`` is sized."""
    record = hits.size > 0
    resident = np.zeros(n_pages, dtype=np.bool_)
    slots = np.empty(frames, dtype=np.int64)
    state = seed
    n_slots = np.uint64(frames)
    used = 0
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
            state += np.uint64(SPLITMIX64_GAMMA)  # wraps modulo 2**64
            draw = state
            draw = (draw ^ (draw >> np.uint64(30))) * np.uint64(SPLITMIX64_MIX1)
            draw = (draw ^ (draw >> np.uint64(27))) * np.uint64(SPLITMIX64_MIX2)
            draw = draw ^ (draw >> np.uint64(31))
            slot = np.int64(draw % n_slots)
            resident[slots[slot]] = False
            slots[slot] = page
        resident[page] = True
    return faults


# ---------------------------------------------------------------- in a running simulation


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
