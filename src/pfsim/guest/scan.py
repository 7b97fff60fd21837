"""Compiled per-access loop: run an access stream until the first access the MMU would refuse.

This is the simulator's hot path.  The page table is a flat ``uint8`` array of PTE bits and a
stream is pre-translated to slot numbers, so each access costs two loads and a compare; only
the access that faults (or the time limit) returns to Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.guest.mm import PTE_EXEC, PTE_PRESENT, PTE_WRITE


@njit(cache=True, nogil=True)
def scan_accesses(slots: np.ndarray, writes: np.ndarray, start: int, stop: int,
                  state: np.ndarray, fetch: bool, max_accesses: int) -> int:
    """Index of the first access in ``[start, stop)`` that faults, else where the run stopped.

    Args:
        slots: int32 slot of each access (-1: outside every VMA).
        writes: bool, the access is a store.
        start, stop: range of the stream to run.
        state: uint8 PTE bits per slot.
        fetch: the accesses are instruction fetches (need PTE_EXEC).
        max_accesses: time budget, in accesses.

    Returns:
        the index ``i`` of the first refused access, or ``min(stop, start + max_accesses)``
        when every access of the allowed run succeeds.
    """
    end = stop
    if max_accesses < stop - start:
        end = start + max_accesses
    base = PTE_PRESENT | (PTE_EXEC if fetch else 0)
    for i in range(start, end):
        slot = slots[i]
        if slot < 0:
            return i
        need = base | (PTE_WRITE if writes[i] else 0)
        if (state[slot] & need) != need:
            return i
    return end
