"""The guest's reverse map and ``page_referenced`` (Linux 5.15 mm/rmap.c), as a mixin of
:class:`pfsim.guest.reclaim.Reclaim`.

Each frame remembers the address space and slot that last mapped it (``rmap_mm1``,
``rmap_slot``); with a map count of one (references minus the cache's) that hint is exact.
Shared pages (after fork, shared file pages) are found by a vectorized pass over each live
address space.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfsim.machine.pte import PTE_ACCESSED, PTE_PRESENT, VM_EXEC


class ReverseMap:
    """``rmap_walk`` and ``page_referenced`` over the frame-indexed arrays of reclaim."""

    def _mm_index(self, mm: Any) -> int:
        index = self._mm_ids.get(id(mm))
        if index is None:
            process = next(p for p in self.kernel.processes if p.mm is mm)
            index = len(self._mm_procs)
            self._mm_ids[id(mm)] = index
            self._mm_procs.append(process)
        return index

    def rmap_note(self, mm: Any, slot: int, frame: int) -> None:
        """``page_add_*_rmap``: ``frame`` is now mapped at ``slot`` of ``mm``."""
        self.rmap_mm1[frame] = self._mm_index(mm) + 1
        self.rmap_slot[frame] = slot

    def rmap_note_scan(self, mm: Any, slots: np.ndarray, popped: np.ndarray) -> None:
        """The compiled loop mapped ``popped`` somewhere among ``slots``."""
        pos = self._pos1
        pos[popped] = np.arange(1, popped.size + 1, dtype=np.int32)
        g = mm.gfn[slots]
        index = pos[np.maximum(g, 0)] - 1
        hit = (g > 0) & (index >= 0)
        self.rmap_mm1[popped[index[hit]]] = self._mm_index(mm) + 1
        self.rmap_slot[popped[index[hit]]] = slots[hit]
        pos[popped] = 0


    def _rmap(self, frames: np.ndarray) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """Every present PTE mapping one of ``frames``: (process, slots, index in frames)
        (``rmap_walk``).  A page mapped once (map count = references - the cache's) is found
        through its hint; shared pages by a vectorized pass over each live address space."""
        mem = self.kernel.mem
        cache_ref = self.file_id1[frames] > 0
        if self.swap is not None:
            cache_ref |= self.swap.slot1[frames] > 0
        mapcount = mem.refcount[frames] - cache_ref
        found: list[tuple[Any, np.ndarray, np.ndarray]] = []
        single = np.flatnonzero(mapcount == 1)
        rest = mapcount > 1
        if single.size:
            owners = self.rmap_mm1[frames[single]] - 1
            slots = self.rmap_slot[frames[single]]
            resolved = np.zeros(single.size, dtype=np.bool_)
            for owner in np.unique(owners[owners >= 0]).tolist():
                process = self._mm_procs[owner]
                mm = process.mm
                mine = np.flatnonzero(owners == owner)
                ok = (slots[mine] < mm.gfn.size)
                mine = mine[ok]
                good = ((mm.gfn[slots[mine]] == frames[single[mine]])
                        & ((mm.state[slots[mine]] & PTE_PRESENT) != 0))
                if process.alive and good.any():
                    found.append((process, slots[mine[good]], single[mine[good]]))
                    resolved[mine[good]] = True
            rest[single[~resolved]] = True
        if rest.any():
            wanted = frames[rest]
            where = np.flatnonzero(rest)
            pos = self._pos1
            pos[wanted] = where.astype(np.int32) + 1
            for process in self.kernel.processes:
                if not process.alive:
                    continue
                mm = process.mm
                g = mm.gfn
                index = pos[np.maximum(g, 0)] - 1
                hit = np.flatnonzero((g > 0) & (index >= 0) & ((mm.state & PTE_PRESENT) != 0))
                if hit.size:
                    found.append((process, hit, index[hit]))
            pos[wanted] = 0
        return found

    def page_referenced(self, frames: np.ndarray,
                        maps: list[tuple[Any, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """``page_referenced``: per frame, the PTEs found accessed (their bits are cleared)
        and whether one of them is in a VM_EXEC mapping."""
        refs = np.zeros(frames.size, dtype=np.int64)
        vmexec = np.zeros(frames.size, dtype=np.bool_)
        for process, slots, index in maps:
            mm = process.mm
            young = (mm.state[slots] & PTE_ACCESSED) != 0
            if not young.any():
                continue
            np.add.at(refs, index[young], 1)
            execs = young & ((mm.vflags[slots] & VM_EXEC) != 0)
            vmexec[index[execs]] = True
            mm.state[slots[young]] &= np.uint8(~PTE_ACCESSED & 0xFF)
        return refs, vmexec
