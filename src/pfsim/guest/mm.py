"""Address spaces: VMAs (vsegs) and a page table stored as flat numpy arrays.

Each VMA reserves a run of *slots* in its address space's arrays, one per page it covers or
may cover (a stack reserves its whole rlimit below its top).  A slot holds PTE flag bits
(``state``) and the frame it maps (``gfn``); the bits are in :mod:`pfsim.machine.pte`.  Access
streams are translated once from page numbers to slots, so the per-access check is two array
reads in compiled code.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from pfsim.guest.pagecache import File
from pfsim.machine.pte import (
    PTE_EXEC,
    PTE_NOVMA,
    PTE_PRESENT,
    PTE_WRITE,
    VM_ANON,
    VM_EXEC,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)
from pfsim.units import PAGE_SHIFT, PAGE_SIZE

TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
"""First byte above user space on x86-64 with 4-level paging."""
PAGE_OFFSET = 0xFFFF888000000000
"""Start of the kernel's direct map of guest physical memory."""

CODE_BASE = 0x400000
MMAP_BASE = 0x10000000000
STACK_TOP = 0x7FFFFFFFF000


@dataclass
class Vma:
    """One virtual segment of a process.

    Attributes:
        start, end: byte range [start, end) today (a stack's start moves down as it grows).
        reserve_start: lowest byte the VMA may ever cover (its slot 0).
    """

    name: str
    type: str
    start: int
    end: int
    reserve_start: int
    readable: bool
    writable: bool
    executable: bool
    shared: bool
    file: File | None
    pgoff: int
    slot_base: int
    stack_max: int
    advice: str = "normal"
    """madvise() advice: normal, random (VM_RAND_READ) or sequential (VM_SEQ_READ)."""

    @property
    def anonymous(self) -> bool:
        return self.file is None

    @property
    def growsdown(self) -> bool:
        return self.type == "stack"

    @property
    def npages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def nslots(self) -> int:
        return (self.end - self.reserve_start) >> PAGE_SHIFT

    def slot(self, addr: int) -> int:
        return self.slot_base + ((addr - self.reserve_start) >> PAGE_SHIFT)

    def file_page(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def vm_flags(self) -> int:
        return ((VM_ANON if self.file is None else 0) | (VM_WRITE if self.writable else 0)
                | (VM_EXEC if self.executable else 0) | (VM_READ if self.readable else 0)
                | (VM_SHARED if self.shared else 0))

    def pte_bits(self) -> int:
        """Bits of a fully permitted PTE of this VMA (write-protect is applied per fault)."""
        return PTE_PRESENT | (PTE_WRITE if self.writable else 0) | (PTE_EXEC if self.executable else 0)


class AddressSpace:
    """The ``mm_struct`` of a process: its VMAs and its page table arrays."""

    def __init__(self) -> None:
        self.vmas: list[Vma] = []
        self.state = np.zeros(0, dtype=np.uint8)
        self.gfn = np.full(0, -1, dtype=np.int32)
        self.vflags = np.zeros(0, dtype=np.uint8)
        self.rss = 0  # resident pages mapped by this mm (zero page excluded)
        self._starts = np.zeros(0, dtype=np.int64)
        self._ends = np.zeros(0, dtype=np.int64)
        self._bases = np.zeros(0, dtype=np.int64)

    def add_vma(self, vma: Vma) -> None:
        """Append ``vma``'s slots; slots below its start (stack room) are marked outside.

        The slot arrays grow by doubling (``state``, ``gfn`` and ``vflags`` are views of
        larger buffers), so adding n VMAs costs O(total slots), not O(n * total slots).
        """
        vma.slot_base = n = len(self.state)
        self._reserve(n + vma.nslots)
        self.state = self._buffers[0][: n + vma.nslots]
        self.gfn = self._buffers[1][: n + vma.nslots]
        self.vflags = self._buffers[2][: n + vma.nslots]
        self.state[n:] = 0
        self.state[n: n + ((vma.start - vma.reserve_start) >> PAGE_SHIFT)] = PTE_NOVMA
        self.gfn[n:] = -1
        self.vflags[n:] = vma.vm_flags()
        index = bisect.bisect_right(self.vmas, vma.start, key=lambda v: v.start)
        self.vmas.insert(index, vma)
        self._starts = np.insert(self._starts, index, vma.reserve_start >> PAGE_SHIFT)
        self._ends = np.insert(self._ends, index, vma.end >> PAGE_SHIFT)
        self._bases = np.insert(self._bases, index, vma.slot_base)

    def _reserve(self, size: int) -> None:
        """Make the slot buffers hold at least ``size`` slots, keeping the current contents
        (the arrays may have been replaced by copies, e.g. in a forked address space)."""
        buffers = getattr(self, "_buffers", None)
        if (buffers is not None and buffers[0].size >= size and self.state.base is buffers[0]
                and self.gfn.base is buffers[1] and self.vflags.base is buffers[2]):
            return
        n = len(self.state)
        capacity = max(size, 2 * n, 1024)
        fresh = (np.zeros(capacity, dtype=np.uint8), np.full(capacity, -1, dtype=np.int32),
                 np.zeros(capacity, dtype=np.uint8))
        for buffer, current in zip(fresh, (self.state, self.gfn, self.vflags), strict=True):
            buffer[:n] = current
        self._buffers = fresh

    def overlaps(self, start: int, end: int) -> Vma | None:
        """The first VMA (in address order) whose reserved range meets [start, end)."""
        if not self.vmas:
            return None
        clash = np.flatnonzero((start >> PAGE_SHIFT < self._ends)
                               & (self._starts < (end + PAGE_SIZE - 1) >> PAGE_SHIFT))
        return self.vmas[int(clash[0])] if clash.size else None

    def find_vma(self, addr: int) -> Vma | None:
        """``find_vma``: the first VMA whose end is above ``addr`` (it may start above it)."""
        for vma in self.vmas:
            if addr < vma.end:
                return vma
        return None

    def prev_vma(self, vma: Vma) -> Vma | None:
        index = self.vmas.index(vma)
        return self.vmas[index - 1] if index > 0 else None

    def slots_of(self, vpns: np.ndarray) -> np.ndarray:
        """Translate page numbers to slots (vectorized); -1 where no VMA reserves the page."""
        index = np.searchsorted(self._starts, vpns, side="right") - 1
        valid = index >= 0
        safe = np.where(valid, index, 0)
        inside = valid & (vpns < self._ends[safe])
        slots = self._bases[safe] + (vpns - self._starts[safe])
        return np.where(inside, slots, -1).astype(np.int32)

    def slot_of(self, addr: int) -> int:
        vma = self.find_vma(addr)
        if vma is None or addr < vma.reserve_start:
            return -1
        return vma.slot(addr)

    def expand_stack(self, vma: Vma, addr: int) -> None:
        """Move a stack's start down to the page holding ``addr`` (slots become in-VMA)."""
        new_start = addr & ~(PAGE_SIZE - 1)
        first = vma.slot(new_start)
        last = vma.slot(vma.start)
        self.state[first:last] = 0
        vma.start = new_start
