"""Address spaces: VMAs (vsegs) and a sparse page table stored as flat numpy arrays.

A *slot* holds one page's PTE flag bits (``state``), the frame it maps (``gfn``, int64) and
the flags of its VMA (``vflags``); the bits are in :mod:`pfsim.machine.pte`.  Access streams
are translated once from page numbers to slots, so the per-access check in compiled code is
two array reads.

Slots come in *leaves* of 512 (one x86-64 page-table page, 2 MiB of address space), allocated
when a page of the leaf is first translated (an access stream, a fault, a syscall's range), as
the kernel allocates a PTE page in ``__pte_alloc`` (mm/memory.c, Linux 6.6) on the first fault
below a PMD entry.  A leaf belongs to one VMA and covers 512 pages from the VMA's
``reserve_start`` on (not from a 2 MiB boundary as the hardware's tables: a leaf never spans two
VMAs, so its VMA flags are uniform).  Each VMA has a radix directory of 512-entry nodes, as the
PMD and PUD pages above the PTE pages: one level for up to 1 GiB, two up to 512 GiB, three up
to the 128 TiB of user space; nodes are allocated on the way down to a new leaf
(``__pmd_alloc``, ``__pud_alloc``).  Translation (:func:`pfsim.machine.translate.translate`)
is compiled: a binary search of the VMA starts, then the walk, both skipped while a stream
stays in the same VMA and leaf.  The slot arrays grow by doubling, so memory is O(touched
leaves) plus one 4 KiB root node per VMA, adding a VMA is O(1) amortized, and a 1 TiB
``mmap`` that touches 1 GiB holds 512 leaves and 3 nodes.

A sorted array of leaf keys searched with ``np.searchsorted`` was tried first: as compact, but
its binary search over the touched leaves mispredicts on every access of a random stream
(measured on the first version of these tables: 22 ns an access over 32 leaves, against 2 ns
for the walk); a dense index per VMA (one entry per 2 MiB) would cost 512 MiB for one 128 TiB VMA.

Leaves and directory nodes are freed when munmap, exec or exit leaves them empty, as
``free_pgtables`` (mm/memory.c, Linux 6.6) frees the PTE pages (``free_pte_range``) and then the
PMD and PUD pages (``free_pmd_range``, ``free_pud_range``) below an unmapped range: a leaf never
spans two VMAs, so unmapping a VMA (or emptying it, as exec does) frees all its leaves and every
node of its directory but the root.  A freed leaf's block (and a freed node) goes on a free list
and is reused, last freed first, by the next allocation; the slot arrays keep their capacity,
and an address space whose leaves are all free (an exited process) drops them.  Threads whose
translated chunks held slots of freed leaves translate them again (the executor's chunks keep
their page numbers), so a reused block is never reached through a stale slot.

The cluster kernel's VMM copies (:mod:`pfsim.cluster.gpt`) index their own arrays by slot:
they grow with the address space, told of each leaf it allocates (``on_allocate``).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pfsim.errors import InvariantViolation
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
from pfsim.machine.translate import FANOUT_SHIFT, KEY_SHIFT, LEAF_SHIFT, NO_LEAF, translate
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
        reserve_start: lowest byte the VMA may ever cover (its page 0).
        key: the VMA's number in its address space (the high bits of its leaves' keys).
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
    stack_max: int
    advice: str = "normal"
    """madvise() advice: normal, random (VM_RAND_READ) or sequential (VM_SEQ_READ)."""
    key: int = -1
    table: AddressSpace | None = field(default=None, repr=False, compare=False)

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
        """The slot of the page holding ``addr`` (in the reserved range), its leaf allocated
        on first use."""
        assert self.table is not None
        return self.table.vma_slot(self, (addr - self.reserve_start) >> PAGE_SHIFT)

    def file_page(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def vm_flags(self) -> int:
        return ((VM_ANON if self.file is None else 0) | (VM_WRITE if self.writable else 0)
                | (VM_EXEC if self.executable else 0) | (VM_READ if self.readable else 0)
                | (VM_SHARED if self.shared else 0))

    def pte_bits(self) -> int:
        """Bits of a fully permitted PTE of this VMA (write-protect is applied per fault)."""
        return PTE_PRESENT | (PTE_WRITE if self.writable else 0) | (PTE_EXEC if self.executable else 0)


LEAF = 1 << LEAF_SHIFT
"""Slots per leaf: the 512 PTEs of one x86-64 page-table page."""
_LEAF_PAGES = np.arange(LEAF, dtype=np.int64)


def _depth(nleaves: int) -> int:
    """Directory levels a VMA of ``nleaves`` leaves needs (1: its root indexes its leaves)."""
    depth = 1
    while nleaves > 1 << (FANOUT_SHIFT * depth):
        depth += 1
    return depth


class AddressSpace:
    """The ``mm_struct`` of a process: its VMAs and its page table arrays."""

    def __init__(self) -> None:
        self.vmas: list[Vma] = []
        self.on_allocate: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
        """Called with (blocks, VMA keys, leaf numbers) after leaves are allocated (the
        cluster kernel's page-table copies grow with the address space)."""
        self.state = np.zeros(0, dtype=np.uint8)
        self.gfn = np.full(0, -1, dtype=np.int64)
        self.vflags = np.zeros(0, dtype=np.uint8)
        """Slot arrays, as long as their capacity; slots past ``nleaves * LEAF`` are unused
        (state 0, gfn -1).  They may be views of a larger run's arrays (the compiled core)."""
        self.rss = 0  # resident pages mapped by this mm (zero page excluded)
        self.nblocks = 0
        """Leaf blocks in the slot arrays, in use or freed (slots below ``nblocks * LEAF``)."""
        self._free_blocks: list[int] = []  # blocks of freed leaves, reused last freed first
        self._free_nodes: list[int] = []
        self.generation = 0
        """Bumped whenever leaves are freed: slots translated before may now be stale."""
        self._starts = np.zeros(0, dtype=np.int64)  # reserve_start page of each VMA, sorted
        self._ends = np.zeros(0, dtype=np.int64)
        self._keys_of = np.zeros(0, dtype=np.int64)  # vma.key, in the same order
        self._by_key: list[Vma] = []
        self._roots = np.zeros(0, dtype=np.int64)  # by vma.key: root node, levels
        self._depths = np.zeros(0, dtype=np.int64)
        self._nodes = np.full((0, 1 << FANOUT_SHIFT), -1, dtype=np.int64)
        self._nnodes = 0
        self._leaf_owner = np.zeros(0, dtype=np.int64)  # by leaf: vma.key, leaf in the VMA
        self._leaf_index = np.zeros(0, dtype=np.int64)

    @property
    def nslots(self) -> int:
        """Slots of every block (allocated leaves and freed ones: freed slots are empty)."""
        return self.nblocks * LEAF

    @property
    def nleaves(self) -> int:
        """Leaves allocated now (PTE pages)."""
        return self.nblocks - len(self._free_blocks)

    @property
    def nnodes(self) -> int:
        """Directory nodes allocated now (each VMA's root and the nodes below it)."""
        return self._nnodes - len(self._free_nodes)

    def add_vma(self, vma: Vma) -> None:
        """Add ``vma``: one directory node, no slot."""
        vma.key = len(self._by_key)
        vma.table = self
        self._by_key.append(vma)
        index = bisect.bisect_right(self.vmas, vma.start, key=lambda v: v.start)
        self.vmas.insert(index, vma)
        self._starts = np.insert(self._starts, index, vma.reserve_start >> PAGE_SHIFT)
        self._ends = np.insert(self._ends, index, vma.end >> PAGE_SHIFT)
        self._keys_of = np.insert(self._keys_of, index, vma.key)
        leaves = -(-vma.nslots // LEAF)
        self._roots = _append(self._roots, vma.key, self._new_node())
        self._depths = _append(self._depths, vma.key, _depth(leaves))

    def clone(self) -> AddressSpace:
        """A copy with copies of the VMAs and of the page table (fork's ``dup_mm``)."""
        child = AddressSpace()
        child.vmas = [copy.copy(vma) for vma in self.vmas]
        child._by_key = [vma for vma in self._by_key]
        for vma in child.vmas:
            vma.table = child
            child._by_key[vma.key] = vma
        for name in ("state", "gfn", "vflags", "_starts", "_ends", "_keys_of", "_roots",
                     "_depths", "_nodes", "_leaf_owner", "_leaf_index"):
            setattr(child, name, getattr(self, name).copy())
        child.rss, child.nblocks, child._nnodes = self.rss, self.nblocks, self._nnodes
        child._free_blocks, child._free_nodes = list(self._free_blocks), list(self._free_nodes)
        return child

    # ------------------------------------------------------------------ leaves

    def _new_node(self) -> int:
        if self._free_nodes:
            return self._free_nodes.pop()  # freed nodes are all -1 already
        n = self._nnodes
        if n == len(self._nodes):
            grown = np.full((max(8, 2 * n), 1 << FANOUT_SHIFT), -1, dtype=np.int64)
            grown[:n] = self._nodes
            self._nodes = grown
        self._nnodes = n + 1
        return n

    def _grow(self, size: int) -> None:
        """Make the slot arrays hold at least ``size`` slots (doubling), keeping them."""
        capacity = len(self.state)
        if capacity >= size:
            return
        capacity = max(size, 2 * capacity, 4 * LEAF)
        state = np.zeros(capacity, dtype=np.uint8)
        gfn = np.full(capacity, -1, dtype=np.int64)
        vflags = np.zeros(capacity, dtype=np.uint8)
        n = self.nslots
        state[:n], gfn[:n], vflags[:n] = self.state[:n], self.gfn[:n], self.vflags[:n]
        self.state, self.gfn, self.vflags = state, gfn, vflags
        owner = np.zeros(capacity // LEAF, dtype=np.int64)
        index = np.zeros(capacity // LEAF, dtype=np.int64)
        owner[:self.nblocks] = self._leaf_owner[:self.nblocks]
        index[:self.nblocks] = self._leaf_index[:self.nblocks]
        self._leaf_owner, self._leaf_index = owner, index

    def _allocate(self, owners: np.ndarray, leaves: np.ndarray) -> None:
        """Allocate leaf ``leaves[i]`` of the VMA keyed ``owners[i]`` (distinct, none
        allocated yet): ``__pte_alloc``, with the directory nodes above it (``__pmd_alloc``,
        ``__pud_alloc``).  Its pages below the VMA's start or at and above its end are marked
        outside the VMA (PTE_NOVMA)."""
        count = len(leaves)
        reused = min(count, len(self._free_blocks))
        blocks = np.empty(count, dtype=np.int64)
        for i in range(reused):
            blocks[i] = self._free_blocks.pop()
        first = self.nblocks
        fresh = count - reused
        self._grow((first + fresh) * LEAF)
        blocks[reused:] = np.arange(first, first + fresh)
        self.nblocks = first + fresh
        self._leaf_owner[blocks] = owners
        self._leaf_index[blocks] = leaves
        for block, key, leaf in zip(blocks.tolist(), owners.tolist(), leaves.tolist(),
                                    strict=True):
            node = int(self._roots[key])
            for level in range(int(self._depths[key]) - 1, 0, -1):
                slot = (leaf >> (FANOUT_SHIFT * level)) & ((1 << FANOUT_SHIFT) - 1)
                below = int(self._nodes[node, slot])
                if below < 0:
                    below = self._new_node()
                    self._nodes[node, slot] = below
                node = below
            self._nodes[node, leaf & ((1 << FANOUT_SHIFT) - 1)] = block
        state = self.state.reshape(-1, LEAF)  # capacity is a multiple of LEAF
        vflags = self.vflags.reshape(-1, LEAF)
        for key in np.unique(owners).tolist():
            vma = self._by_key[key]
            rows = np.flatnonzero(owners == key)
            pages = (leaves[rows] << LEAF_SHIFT)[:, None] + _LEAF_PAGES
            lo = (vma.start - vma.reserve_start) >> PAGE_SHIFT
            hi = (vma.end - vma.reserve_start) >> PAGE_SHIFT
            state[blocks[rows]] = np.where((pages < lo) | (pages >= hi), PTE_NOVMA, 0)
            vflags[blocks[rows]] = vma.vm_flags()
        if self.on_allocate is not None:
            self.on_allocate(blocks, owners, leaves)

    def allocated_leaves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(blocks, VMA keys, leaf numbers) of the leaves allocated now."""
        blocks = np.flatnonzero(self._leaf_owner[:self.nblocks] >= 0)
        return blocks, self._leaf_owner[blocks], self._leaf_index[blocks]

    def free_vma_tables(self, vma: Vma) -> int:
        """Free every leaf of ``vma`` and every directory node below its root (the caller
        has emptied them: no page mapped, no swap entry): ``free_pgtables`` over the VMA's
        range (mm/memory.c, Linux 6.6: ``free_pte_range``, ``free_pmd_range``,
        ``free_pud_range``).  Returns the leaves freed."""
        root = int(self._roots[vma.key])
        level = np.array([root], dtype=np.int64)
        inner: list[np.ndarray] = []
        for _ in range(int(self._depths[vma.key]) - 1):
            below = self._nodes[level].ravel()
            level = below[below >= 0]
            inner.append(level)
        blocks = self._nodes[level].ravel()
        blocks = blocks[blocks >= 0]
        if blocks.size == 0:
            return 0
        self._nodes[root] = -1
        for nodes in inner:
            self._nodes[nodes] = -1
            self._free_nodes.extend(nodes.tolist())
        slots = (blocks[:, None] * LEAF + _LEAF_PAGES).ravel()
        if np.any(self.gfn[slots] != -1):
            raise InvariantViolation(f"{vma.name}: a page table freed while it still maps pages")
        self.state[slots] = 0
        self.vflags[slots] = 0
        self._leaf_owner[blocks] = -1
        self._free_blocks.extend(blocks.tolist())
        self.generation += 1
        if self.nleaves == 0:  # nothing left (exit, exec): give the arrays back
            self._drop_blocks()
        return int(blocks.size)

    def _drop_blocks(self) -> None:
        """No leaf in use: the slot arrays go (they may be views of a compiled run's arrays,
        which then keep their own copy)."""
        self.nblocks = 0
        self._free_blocks.clear()
        self.state = np.zeros(0, dtype=np.uint8)
        self.gfn = np.full(0, -1, dtype=np.int64)
        self.vflags = np.zeros(0, dtype=np.uint8)
        self._leaf_owner = np.zeros(0, dtype=np.int64)
        self._leaf_index = np.zeros(0, dtype=np.int64)

    def _leaf(self, key: int, leaf: int) -> int:
        """The block of leaf ``leaf`` of the VMA keyed ``key``; -1 if not allocated."""
        node = int(self._roots[key])
        for level in range(int(self._depths[key]) - 1, -1, -1):
            node = int(self._nodes[node, (leaf >> (FANOUT_SHIFT * level))
                                   & ((1 << FANOUT_SHIFT) - 1)])
            if node < 0:
                return -1
        return node

    def vma_slot(self, vma: Vma, page: int) -> int:
        """Slot of page ``page`` (counted from ``vma.reserve_start``) of ``vma``."""
        block = self._leaf(vma.key, page >> LEAF_SHIFT)
        if block < 0:
            self._allocate(np.array([vma.key], dtype=np.int64),
                           np.array([page >> LEAF_SHIFT], dtype=np.int64))
            block = self._leaf(vma.key, page >> LEAF_SHIFT)
        return block * LEAF + (page & (LEAF - 1))

    def vma_slots(self, vma: Vma) -> np.ndarray:
        """The allocated slots of ``vma``'s reserved range, in page order (int64)."""
        slots, _ = self._vma_leaves(vma)
        return slots

    def _vma_leaves(self, vma: Vma) -> tuple[np.ndarray, np.ndarray]:
        """(slots, pages counted from ``reserve_start``) of ``vma``'s allocated leaves."""
        blocks = np.flatnonzero(self._leaf_owner[:self.nblocks] == vma.key)
        leaves = self._leaf_index[blocks]
        order = np.argsort(leaves)
        blocks, leaves = blocks[order], leaves[order]
        slots = (blocks[:, None] * LEAF + _LEAF_PAGES).ravel()
        pages = ((leaves << LEAF_SHIFT)[:, None] + _LEAF_PAGES).ravel()
        inside = pages < vma.nslots
        return slots[inside], pages[inside]

    def used_slots(self) -> slice:
        """The slots in use (every allocated leaf), for whole-table scans."""
        return slice(0, self.nslots)

    # ------------------------------------------------------------------ lookups

    def overlaps(self, start: int, end: int) -> Vma | None:
        """The first VMA (in address order) whose reserved range meets [start, end)."""
        if not self.vmas:
            return None
        clash = np.flatnonzero((start >> PAGE_SHIFT < self._ends)
                               & (self._starts < (end + PAGE_SIZE - 1) >> PAGE_SHIFT))
        return self.vmas[int(clash[0])] if clash.size else None

    def find_vma(self, addr: int) -> Vma | None:
        """``find_vma``: the first VMA whose end is above ``addr`` (it may start above it)."""
        # VMAs do not overlap, so their ends are sorted as their starts are
        index = int(np.searchsorted(self._ends, (addr >> PAGE_SHIFT) + 1))
        return self.vmas[index] if index < len(self.vmas) else None

    def prev_vma(self, vma: Vma) -> Vma | None:
        index = self.vmas.index(vma)
        return self.vmas[index - 1] if index > 0 else None

    def slots_of(self, vpns: np.ndarray, base: int = 0) -> np.ndarray:
        """Translate page numbers ``vpns + base`` to slots (int64, compiled), allocating the
        leaves they fall in; -1 where no VMA reserves the page."""
        vpns = np.ascontiguousarray(vpns, dtype=np.int64)
        out = np.empty(len(vpns), dtype=np.int64)
        if self._translate(vpns, base, out):
            missing = vpns[out == NO_LEAF] + base
            index = np.searchsorted(self._starts, missing, side="right") - 1
            keys = self._keys_of[index]
            leaves = (missing - self._starts[index]) >> LEAF_SHIFT
            pairs = np.unique((keys << KEY_SHIFT) | leaves)
            self._allocate(pairs >> KEY_SHIFT, pairs & ((1 << KEY_SHIFT) - 1))
            self._translate(vpns, base, out)
        return out

    def _translate(self, vpns: np.ndarray, base: int, out: np.ndarray) -> int:
        return translate(vpns, base, self._starts, self._ends, self._keys_of, self._roots,
                         self._depths, self._nodes, out)

    def slot_of(self, addr: int) -> int:
        vma = self.find_vma(addr)
        if vma is None or addr < vma.reserve_start:
            return -1
        return vma.slot(addr)

    def expand_stack(self, vma: Vma, addr: int) -> None:
        """Move a stack's start down to the page holding ``addr`` (its pages become in-VMA;
        leaves not yet allocated are built from the new start)."""
        new_start = addr & ~(PAGE_SIZE - 1)
        slots, pages = self._vma_leaves(vma)
        lo = (new_start - vma.reserve_start) >> PAGE_SHIFT
        hi = (vma.start - vma.reserve_start) >> PAGE_SHIFT
        self.state[slots[(pages >= lo) & (pages < hi)]] = 0
        vma.start = new_start


def _append(array: np.ndarray, index: int, value: int) -> np.ndarray:
    """``array`` with ``array[index] = value``, grown by doubling when ``index`` is past it
    (the caller keeps the returned array; unused entries are beyond the count it tracks)."""
    if index >= len(array):
        grown = np.zeros(max(8, 2 * len(array), index + 1), dtype=array.dtype)
        grown[:len(array)] = array
        array = grown
    array[index] = value
    return array
