"""Random: evict a uniformly drawn resident page.

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
numpy ``Generator``, so that the compiled kernel and the reference draw the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy

SPLITMIX64_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX64_MIX1 = 0xBF58476D1CE4E5B9
SPLITMIX64_MIX2 = 0x94D049BB133111EB
_UINT64_MASK = (1 << 64) - 1
_USED = 1


class RandomPolicy(Policy):
    """Random replacement: the victim is a uniformly drawn resident frame (seeded, repeatable)."""

    name = "random"
    page_arrays = {"resident": (np.bool_, False)}
    frame_arrays = {"slots": (np.int32, -1)}
    n_state = 2

    def _setup(self) -> None:
        self.draws = np.array([self.seed & _UINT64_MASK], dtype=np.uint64)

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _random_kernel(ids, self.frames, self.resident, self.slots, self.draws, self.state, hits)


@njit(cache=True, nogil=True)
def _random_kernel(ids, frames, resident, slots, draws, state, hits):
    record = hits.size > 0
    rng = draws[0]
    n_slots = np.uint64(frames)
    used = state[_USED]
    faults = state[0]
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
            rng += np.uint64(SPLITMIX64_GAMMA)  # wraps modulo 2**64
            draw = rng
            draw = (draw ^ (draw >> np.uint64(30))) * np.uint64(SPLITMIX64_MIX1)
            draw = (draw ^ (draw >> np.uint64(27))) * np.uint64(SPLITMIX64_MIX2)
            draw = draw ^ (draw >> np.uint64(31))
            slot = np.int64(draw % n_slots)
            resident[slots[slot]] = False
            slots[slot] = page
        resident[page] = True
    draws[0] = rng
    state[0] = faults
    state[_USED] = used
