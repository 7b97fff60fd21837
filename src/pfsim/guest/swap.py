"""The guest's swap area and swap cache (Linux 5.15 mm/swapfile.c, mm/swap_state.c).

A swap *slot* holds one anonymous page written out by reclaim.  ``count[slot]`` is the
``swap_map`` count: how many PTEs hold the slot's swap entry (a PTE with ``PTE_SWAP`` set
keeps ``-2 - slot`` in its ``gfn``).  ``cache[slot]`` is the frame holding the slot's page in
the *swap cache* (-1 when none): a page being read in, a page read ahead, or a page swapped in
by a read fault and still clean.  A slot is in use while it is counted or cached
(``SWAP_HAS_CACHE``); it returns to the free slots when both end.  The swap cache holds one
reference on its frame, as the page cache does.

Slots are handed out lowest first, so the pages one reclaim batch writes sit next to each
other and swap readahead (``swap_cluster_readahead``: the 2**page_cluster aligned slots around
the faulting one) brings back their neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pfsim.config.schema import Config
from pfsim.engine import RandomStreams
from pfsim.errors import InvariantViolation
from pfsim.machine.swapdev import SwapDevice, swap_params
from pfsim.units import PAGE_SIZE


@dataclass
class SwapRead:
    """One swap-in request (the faulting slot and its readahead); tasks wait on it."""

    slots: list[int]
    frames: list[int]
    done_ns: int
    waiters: list[Any] = field(default_factory=list)


class GuestSwap:
    """The guest's swap device, its slots and its swap cache.

    Args:
        config: the scenario (``guest.swap`` is not ``none``).
        streams: the run's random streams (the device's latency draws).
        nframes: guest frames.
    """

    def __init__(self, config: Config, streams: RandomStreams, nframes: int) -> None:
        cfg = config.guest.swap
        self.params = swap_params(cfg)
        self.device = SwapDevice(self.params, streams.generator("guest/swap"))
        size = cfg.size if cfg.size is not None else config.guest.memory
        self.nslots = size // PAGE_SIZE
        self.count = np.zeros(self.nslots, dtype=np.int32)
        self.cache = np.full(self.nslots, -1, dtype=np.int32)
        self.shadow = np.full(self.nslots, -1, dtype=np.int64)
        """workingset shadow of the page evicted from the slot (eviction age, -1: none)."""
        self.shadow_workingset = np.zeros(self.nslots, dtype=np.bool_)
        self.slot1 = np.zeros(nframes, dtype=np.int32)
        """Slot + 1 of each frame in the swap cache (``folio->swap``), 0 when not cached (zeros:
        memory is written only for frames used)."""
        self.free_slots = np.arange(self.nslots - 1, -1, -1, dtype=np.int32)
        self.nfree = self.nslots
        self.pending: dict[int, SwapRead] = {}
        """Slots being read in -> their request."""
        self.swap_outs = 0  # pswpout: pages written
        self.swap_ins = 0  # pswpin: pages read (readahead included)

    def slot_of(self, frame: int) -> int:
        """The swap-cache slot of ``frame``, -1 when it is not in the swap cache."""
        return int(self.slot1[frame]) - 1

    @property
    def full(self) -> bool:
        """``vm_swap_full``: more than half of the slots are in use."""
        return self.nfree * 2 < self.nslots

    @property
    def synchronous(self) -> bool:
        return self.params.synchronous

    def alloc_slot(self) -> int:
        """``get_swap_page``: a free slot (lowest first), -1 when the area is full."""
        if self.nfree == 0:
            return -1
        self.nfree -= 1
        return int(self.free_slots[self.nfree])

    def _release(self, slot: int) -> None:
        self.shadow[slot] = -1  # no PTE can refault the page any more
        self.free_slots[self.nfree] = slot
        self.nfree += 1

    def in_use(self, slot: int) -> bool:
        return bool(self.count[slot] > 0 or self.cache[slot] >= 0)

    def add_to_cache(self, slot: int, frame: int) -> None:
        """``add_to_swap_cache``: the caller gives the cache one reference on ``frame``."""
        self.cache[slot] = frame
        self.slot1[frame] = slot + 1

    def delete_from_cache(self, frame: int) -> int:
        """``delete_from_swap_cache``: the slot loses its cached page (the caller drops the
        cache's frame reference); the slot is freed if no PTE holds it.  Returns the slot."""
        slot = self.slot_of(frame)
        self.cache[slot] = -1
        self.slot1[frame] = 0
        if self.count[slot] == 0:
            self._release(slot)
        return slot

    def swap_free(self, slots: np.ndarray) -> np.ndarray:
        """``swap_free`` of one PTE reference per entry of ``slots`` (repeats allowed); the
        slots no PTE holds any more that still have a cached page, whose frames the caller
        may free (``free_swap_and_cache``)."""
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size == 0:
            return np.zeros(0, dtype=np.int64)
        if slots.size == 1:  # the same, without the vector machinery (a swap-in maps one)
            slot = int(slots[0])
            count = int(self.count[slot]) - 1
            if count < 0:
                raise InvariantViolation("swap slot freed more often than it was referenced")
            self.count[slot] = count
            if count == 0 and self.cache[slot] >= 0:
                return slots
            if count == 0:
                self._release(slot)
            return slots[:0]
        np.subtract.at(self.count, slots, 1)
        if np.any(self.count[slots] < 0):
            raise InvariantViolation("swap slot freed more often than it was referenced")
        gone = np.unique(slots[self.count[slots] == 0])
        cached = gone[self.cache[gone] >= 0]
        for slot in gone[self.cache[gone] < 0].tolist():
            self._release(int(slot))
        return cached

    def duplicate(self, slots: np.ndarray) -> None:
        """``swap_duplicate`` for each entry of ``slots`` (fork copies swap PTEs)."""
        np.add.at(self.count, np.asarray(slots, dtype=np.int64), 1)

    def readahead_window(self, slot: int) -> list[int]:
        """``swap_cluster_readahead``: the aligned 2**page_cluster window around ``slot``,
        only slots in use whose page is not cached already (the faulting slot first)."""
        mask = (1 << self.params.page_cluster) - 1
        first, last = slot & ~mask, min((slot | mask) + 1, self.nslots)
        window = [slot]
        for other in range(first, last):
            if other != slot and self.count[other] > 0 and self.cache[other] < 0:
                window.append(other)
        return window

    def check(self, pte_refs: np.ndarray) -> None:
        """Every slot's count is the number of PTEs holding it (``pte_refs``); a slot is free
        exactly when neither a PTE nor the swap cache holds it."""
        if np.any(self.count != pte_refs):
            slot = int(np.argmax(self.count != pte_refs))
            raise InvariantViolation(f"swap slot {slot}: count {int(self.count[slot])}, "
                                     f"{int(pte_refs[slot])} PTEs hold it")
        free = np.zeros(self.nslots, dtype=np.bool_)
        free[self.free_slots[:self.nfree]] = True
        if int(np.count_nonzero(free)) != self.nfree:
            raise InvariantViolation("a swap slot is twice on the free list")
        used = (self.count > 0) | (self.cache >= 0)
        if np.any(free == used):
            slot = int(np.argmax(free == used))
            raise InvariantViolation(f"swap slot {slot} is {'free' if free[slot] else 'lost'} "
                                     f"but {'held' if used[slot] else 'not held'}")
        cached = np.flatnonzero(self.cache >= 0)
        if np.any(self.slot1[self.cache[cached]] - 1 != cached):
            raise InvariantViolation("swap cache and its frames' slots disagree")
