"""Guest memory split into one bank per cluster, with ALMOS-MKH's pending-fork counters.

Frame ``g`` belongs to cluster ``g // bank`` (the CXY bits of a physical address name its
cluster).  Each bank keeps the first ``ceil(reserved / clusters)`` frames for its kernel
instance and a free stack of its own; there is no fallback to another bank when one is empty
(``vmm_page_allocate``, ``ppm_alloc_pages``).
Frame kinds and reference counts are those of :class:`~pfsim.guest.memory.PhysMem`, plus
``PAGETABLE`` for second-level page tables.  ``forks[g]`` is the ``page_t.forks`` counter of
trunk/kernel/mm/page.h: how many forks still share the page.
"""

from __future__ import annotations

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest.memory import PhysMem
from pfsim.machine.frames import FREE, KERNEL, ZERO, ZERO_GFN

PAGETABLE = 5
"""Frame kind of a PT2 (second-level page table) page."""


class ClusterMem(PhysMem):
    """Frames of one VM in ``clusters`` equal banks.

    Args:
        nframes: guest memory in 4 KiB frames (a multiple of ``clusters``).
        reserved: frames kept by the kernel, spread evenly over the banks.
        clusters: number of banks.
    """

    def __init__(self, nframes: int, reserved: int, clusters: int) -> None:
        super().__init__(nframes, reserved)
        self.clusters = clusters
        self.bank = nframes // clusters
        per_bank = (reserved + clusters - 1) // clusters
        self.kind[:] = FREE
        # NOTE: perf: packed rows (fewer arguments for the compiled loop); views by name
        self.rf = np.zeros((2, nframes), dtype=np.int32)
        self.refcount, self.forks = self.rf
        self.free2d = np.full((clusters, self.bank), -1, dtype=np.int32)
        self.bank_counts = np.zeros((2, clusters), dtype=np.int64)
        self.nfree2d, self.allocated_by_bank = self.bank_counts
        """Per bank: free frames, and frames ever allocated (user pages, PT2s, page cache)."""
        for c in range(clusters):
            first = c * self.bank
            self.kind[first:first + per_bank] = KERNEL
            self.refcount[first:first + per_bank] = 1
            free = np.arange(first + self.bank - 1, first + per_bank - 1, -1, dtype=np.int32)
            self.free2d[c, :len(free)] = free  # pops low frame numbers first
            self.nfree2d[c] = len(free)
        self.kind[ZERO_GFN] = ZERO
        # the flat free stack stays empty: every allocation goes through a bank
        self.free_stack = np.zeros(0, dtype=np.int32)
        self.nfree[0], self.nfree[1] = 0, nframes  # and no never-used frames above a watermark

    @property
    def free_frames(self) -> int:
        return int(self.nfree2d.sum())

    def bank_of(self, gfn: int) -> int:
        return gfn // self.bank

    def roomiest(self) -> int:
        """The bank with the most free frames (lowest index on ties): page-cache pages go there."""
        return int(np.argmax(self.nfree2d))

    def alloc(self, kind: int) -> int:
        """A frame for the page cache (the file mappers): from the roomiest bank."""
        return self.alloc_in(self.roomiest(), kind)

    def alloc_in(self, cluster: int, kind: int) -> int:
        """Take a free frame of ``cluster``'s bank with refcount 1; -1 when the bank is empty."""
        n = int(self.nfree2d[cluster])
        if n == 0:
            return -1
        n -= 1
        self.nfree2d[cluster] = n
        gfn = int(self.free2d[cluster, n])
        self.kind[gfn] = kind
        self.refcount[gfn] = 1
        self.forks[gfn] = 0
        self.allocated_total += 1
        self.allocated_by_bank[cluster] += 1
        return gfn

    def put(self, gfn: int) -> None:
        """Drop a reference; the frame returns to its bank at zero."""
        kind = self.kind[gfn]
        if kind in (ZERO, KERNEL):
            return
        if kind == FREE or self.refcount[gfn] <= 0:
            raise InvariantViolation(f"put on free frame {gfn}")
        self.refcount[gfn] -= 1
        if self.refcount[gfn] == 0:
            if self.forks[gfn] != 0:
                raise InvariantViolation(f"frame {gfn} freed with {self.forks[gfn]} forks pending")
            self.kind[gfn] = FREE
            bank = gfn // self.bank
            n = int(self.nfree2d[bank])
            self.free2d[bank, n] = gfn
            self.nfree2d[bank] = n + 1

    def free_many(self, frames: np.ndarray) -> None:
        """Free ``frames`` (each held once, no fork pending), in order, to their banks."""
        if not frames.size:
            return
        if np.any(self.refcount[frames] != 1) or np.any(self.forks[frames] != 0):
            raise InvariantViolation("freeing a frame still referenced or with forks pending")
        self.refcount[frames] = 0
        self.kind[frames] = FREE
        banks = frames // self.bank
        for bank in np.unique(banks).tolist():
            mine = frames[banks == bank]
            n = int(self.nfree2d[bank])
            self.free2d[bank, n:n + mine.size] = mine
            self.nfree2d[bank] = n + mine.size

    def check(self) -> None:
        """Each bank's free stack holds exactly its free frames; counts are consistent."""
        free = self.kind == FREE
        for c in range(self.clusters):
            n = int(self.nfree2d[c])
            stack = self.free2d[c, :n]
            lo, hi = c * self.bank, (c + 1) * self.bank
            if n != int(np.count_nonzero(free[lo:hi])):
                raise InvariantViolation(f"bank {c}: free-stack size differs from frames "
                                         "marked free")
            if n and (stack.min() < lo or stack.max() >= hi or not np.all(free[stack])):
                raise InvariantViolation(f"bank {c}: free stack holds a frame it does not own")
        if np.any(self.refcount[free] != 0) or np.any(self.refcount[~free] <= 0):
            raise InvariantViolation("frame reference counts inconsistent with allocation")
        if np.any(self.forks < 0):
            raise InvariantViolation("a pending-fork counter is negative (INV-5)")
