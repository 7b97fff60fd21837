"""One process's VMM copies: a vseg list (VSL) and a page table (GPT) per cluster.

All copies share the slot layout of the process's :class:`~pfsim.guest.mm.AddressSpace`, so
copy ``c`` is row ``c`` of a few ``[clusters, slots]`` arrays that the compiled loop reads
directly.  That address space is sparse (leaves of 512 slots allocated on first touch), and so
are these arrays: they follow its slot capacity, and a leaf's per-slot facts (vseg, type,
page number, PT2 region, mapper page) are filled in when the address space allocates it
(:meth:`ProcessGpt.add_leaves`, its ``on_allocate`` hook).  Memory per process is O(pages
touched) plus O(vsegs): a 1 TiB vseg that four clusters touch in 32 K pages holds 64 leaves per
copy, not 256 M slots.  Entries that the process never touched read as unmapped, as before.

* ``state``: PTE attributes (MAPPED, WRITABLE, EXECUTABLE, COW; OLDRO, see below);
* ``gfn``: the frame mapped;
* ``vis``: the simulated time from which the entry's current value is visible to the MMU.
  Before ``vis`` the entry still shows its previous value: unmapped, or - when ``OLDRO`` is
  set - its old read-only mapping (a copy-on-write publication in flight);
* ``lock_acq`` / ``lock_rel``: the last PTE-lock hold ``[acq, rel)`` (``hal_gpt_lock_pte``).
  Setting a PTE releases its lock, so a publication's ``vis`` equals the hold's ``rel``.

Run-ahead: a thread's compiled loop resolves its faults ahead of the simulator's clock, so an
entry a thread of the same cluster will map at a later time may already be set when another
thread reaches it at an earlier time.  That thread would have faulted first and taken the
same page; the MMU lets it through (no second fault) when the entry was set by a fault of
this cluster raised after the access (``raised``, :meth:`ProcessGpt.visible`).

Per vseg (index ``v``, in the order the vsegs were added): ``vsl[c, v]`` says the vseg is
registered in copy ``c``; per 2 MiB region ``r`` (numbered as leaves reach them; walks over
regions go in address order, ``region_vpn``): ``pt2[c, r]`` is the frame of copy ``c``'s PT2
(-1 none) and ``pt2_acq`` / ``pt2_rel`` the creation window (PTE1 locked) others spin on.

Concurrency model: fault handlers run whole at their fault time, in the simulator's event
order; a handler that asks for a lock inside another handler's hold window ``[acq, rel)``
spins until ``rel`` (extra CPU time on its core), otherwise it goes on and sees the final
values the earlier-processed handlers wrote (docs/clusters.md, "Time and locks").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfsim.cluster.topology import CODE, DATA, FILE, STACK, TYPE_CODES, Topology
from pfsim.guest.mm import LEAF, AddressSpace, Vma
from pfsim.machine.pte import PTE_EXEC, PTE_PRESENT, PTE_WRITE
from pfsim.units import PAGE_SHIFT

MAPPED = PTE_PRESENT
WRITABLE = PTE_WRITE
EXECUTABLE = PTE_EXEC
COW = 0x20
OLDRO = 0x40
"""Until ``vis``, the entry still shows its previous read-only mapping."""
REMOTE_SET = 0x80
"""The entry was written by a thread of another cluster (a global fault's reference entry,
a COW publication)."""
ATTR_MASK = MAPPED | WRITABLE | EXECUTABLE | COW

# per-copy counters (columns of ProcessGpt.copy_counters): ALMOS-MKH's *_pgfault_* names plus
# COW counts
FALSE_NR, LOCAL_NR, GLOBAL_NR, FALSE_COST, LOCAL_COST, GLOBAL_COST = 0, 1, 2, 3, 4, 5
COW_COPIES, COW_REUSES = 6, 7
COPY_COUNTER_NAMES = ("false_pgfault_nr", "local_pgfault_nr", "global_pgfault_nr",
                      "false_pgfault_cost", "local_pgfault_cost", "global_pgfault_cost",
                      "cow_copies", "cow_reuses")

PT2_SHIFT = 9
"""A PT2 maps 512 small pages (2 MiB): region = vpn >> 9 (TSAR two-level table, hal_gpt.c)."""


class ProcessGpt:
    """The VMM copies of one process.

    Args:
        mm: the process's address space (its VMAs fix the slot layout).
        topology: the clusters.
        ref: the reference (owner) cluster.
        placement_cluster: vseg name -> cluster for anon and remote vsegs (``cluster`` key).
    """

    def __init__(self, mm: AddressSpace, topology: Topology, ref: int,
                 placement_cluster: dict[str, int] | None = None) -> None:
        n = topology.n
        self.mm = mm
        self.ref = ref
        self.n = n
        self.vsegs: list[Vma] = sorted(mm.vmas, key=lambda vma: vma.key)
        self._index = {vma.key: v for v, vma in enumerate(self.vsegs)}
        nv = len(self.vsegs)
        self._alloc_slots(0)
        self.vsl = np.zeros((n, nv), dtype=np.uint8)
        self.copy_exists = np.zeros(n, dtype=np.bool_)
        self.vsl_times = np.zeros((3, n), dtype=np.int64)
        self.vsl_wr_acq, self.vsl_wr_rel, self.vsl_rd_rel = self.vsl_times
        self.copy_counters = np.zeros((n, len(COPY_COUNTER_NAMES)), dtype=np.int64)
        self.placement = np.zeros((nv, n), dtype=np.int64)
        """Pages allocated for each vseg in each cluster's bank (faults and COW copies)."""
        self.vseg_info = np.zeros((2, nv), dtype=np.int32)
        self.attr, self.vcxy = self.vseg_info
        """``attr``: attributes a fault gives each vseg's pages (``vmm_handle_page_fault`` builds
        them from the vseg flags); ``vcxy``: placement cluster of anon and remote vsegs (-1:
        placed by type)."""
        self.vcxy[:] = -1
        placement_cluster = placement_cluster or {}
        for v, vma in enumerate(self.vsegs):
            code = TYPE_CODES[vma.type]
            self.attr[v] = (MAPPED | (WRITABLE if vma.writable else 0)
                            | (EXECUTABLE if vma.executable else 0))
            if code not in (CODE, DATA, STACK, FILE):
                self.vcxy[v] = placement_cluster.get(vma.name, ref)
        self._regions: dict[int, int] = {}  # 2 MiB region (vpn >> 9) -> its number
        self.region_vpn = np.zeros(0, dtype=np.int64)
        """The first page of each region, by number (walks go in this order)."""
        self._alloc_regions(0)
        self.add_leaves(*mm.allocated_leaves())  # leaves already there (a fork's copy)
        mm.on_allocate = self.add_leaves

    @property
    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The arrays the compiled loop takes, in its argument order (they are replaced
        when the address space grows, so read them at each call)."""
        return (self.state, self.gfn, self.times, self.vsl, self.vsl_times, self.slot_info,
                self.vtype, self.vseg_info, self.pt2, self.pt2_times, self.copy_counters,
                self.placement)

    # ------------------------------------------------------------------ growth

    def _alloc_slots(self, capacity: int) -> None:
        """Per-slot arrays of ``capacity`` slots, keeping what the old ones held."""
        n = self.n
        old = getattr(self, "state", None)
        kept = 0 if old is None else old.shape[1]
        # NOTE: perf: arrays of one dtype are rows of one packed array (fewer arguments for
        # the compiled loop to unbox); the named attributes are views of its rows.
        state = np.zeros((n, capacity), dtype=np.uint8)
        gfn = np.full((n, capacity), -1, dtype=np.int32)
        times = np.zeros((4, n, capacity), dtype=np.int64)
        slot_info = np.zeros((3, capacity), dtype=np.int32)
        slot_info[2] = -1
        vtype = np.zeros(capacity, dtype=np.uint8)
        vpn = np.zeros(capacity, dtype=np.int64)
        if kept:
            state[:, :kept], gfn[:, :kept], times[:, :, :kept] = self.state, self.gfn, self.times
            slot_info[:, :kept], vtype[:kept], vpn[:kept] = self.slot_info, self.vtype, self.vpn
        self.state, self.gfn, self.times = state, gfn, times
        self.vis, self.raised, self.lock_acq, self.lock_rel = self.times
        """``raised``: when the fault that set the entry was raised (run-ahead rule)."""
        self.slot_info = slot_info
        self.slot_vseg, self.region, self.mapper_frame = self.slot_info
        """``region``: the slot's PT2 (2 MiB region) number; ``mapper_frame``: for code and
        data pages, the cached .elf mapper page to copy from (-1: not known cached)."""
        self.vtype, self.vpn = vtype, vpn

    def _alloc_regions(self, capacity: int) -> None:
        old = getattr(self, "pt2", None)
        kept = 0 if old is None else old.shape[1]
        pt2 = np.full((self.n, capacity), -1, dtype=np.int32)
        pt2_times = np.zeros((2, self.n, capacity), dtype=np.int64)
        region_vpn = np.zeros(capacity, dtype=np.int64)
        if kept:
            pt2[:, :kept], pt2_times[:, :, :kept] = self.pt2, self.pt2_times
            region_vpn[:kept] = self.region_vpn[:kept]
        self.pt2, self.pt2_times, self.region_vpn = pt2, pt2_times, region_vpn
        self.pt2_acq, self.pt2_rel = self.pt2_times

    def add_leaves(self, blocks: np.ndarray, owners: np.ndarray, leaves: np.ndarray) -> None:
        """The address space allocated leaf ``leaves[i]`` of the VMA keyed ``owners[i]`` in
        block ``blocks[i]``: grow to its capacity, fill in the leaves' per-slot facts (pages
        past the VMA's reserved range get none: no access reaches them) and number the new
        2 MiB regions."""
        if len(self.mm.state) > self.state.shape[1]:
            self._alloc_slots(len(self.mm.state))
        offsets = np.arange(LEAF, dtype=np.int64)
        for block, key, leaf in zip(np.asarray(blocks).tolist(), np.asarray(owners).tolist(),
                                    np.asarray(leaves).tolist(), strict=True):
            v = self._index[key]
            vma = self.vsegs[v]
            pages = leaf * LEAF + offsets
            pages = pages[pages < vma.nslots]
            slots = block * LEAF + (pages - leaf * LEAF)
            vpns = (vma.reserve_start >> PAGE_SHIFT) + pages
            self.slot_vseg[slots] = v
            self.vtype[slots] = TYPE_CODES[vma.type]
            self.vpn[slots] = vpns
            first, last = int(vpns[0]) >> PT2_SHIFT, int(vpns[-1]) >> PT2_SHIFT
            for r in range(first, last + 1):
                if r not in self._regions:
                    number = len(self._regions)
                    if number == self.pt2.shape[1]:
                        self._alloc_regions(max(8, 2 * number))
                    self._regions[r] = number
                    self.region_vpn[number] = r << PT2_SHIFT
            self.region[slots] = [self._regions[r] for r in (vpns >> PT2_SHIFT).tolist()]
            self._mappers(vma, slots, pages)

    def in_address_order(self, regions: np.ndarray) -> np.ndarray:
        """``regions`` (numbers) sorted by address (walks free or allocate PT2s this way)."""
        return regions[np.argsort(self.region_vpn[regions], kind="stable")]

    # ------------------------------------------------------------------ layout

    def vseg_index(self, name: str) -> int:
        for v, vma in enumerate(self.vsegs):
            if vma.name == name:
                return v
        raise KeyError(name)

    def slots(self, v: int) -> np.ndarray:
        """The slots of vseg ``v`` that have a leaf, in page order."""
        return self.mm.vma_slots(self.vsegs[v])

    def refresh_mappers(self, v: int | None = None) -> None:
        """Record which code/data pages have their .elf mapper page cached (monotone: mapper
        pages are never evicted in this model)."""
        for index, vma in enumerate(self.vsegs):
            if v is None or index == v:
                slots, pages = self.mm._vma_leaves(vma)
                self._mappers(vma, slots, pages)

    def _mappers(self, vma: Vma, slots: np.ndarray, pages: np.ndarray) -> None:
        """The mapper frames of ``vma``'s ``pages`` (from its reserved start) at ``slots``."""
        if vma.file is None or vma.type not in ("code", "data"):
            return
        pages = vma.pgoff + pages
        inside = pages < vma.file.npages
        frames = np.full(len(pages), -1, dtype=np.int32)
        frames[inside] = vma.file.frame[pages[inside]]
        self.mapper_frame[slots] = frames

    # ------------------------------------------------------------------ views

    def visible(self, copy: int, slot: int, t: int) -> int:
        """PTE attributes the MMU of a core in ``copy``'s cluster sees at time ``t``."""
        st = int(self.state[copy, slot])
        if self.vis[copy, slot] <= t:
            return st & ATTR_MASK
        if st & OLDRO:
            return (st & (MAPPED | EXECUTABLE)) | COW
        if st & MAPPED and not st & REMOTE_SET and t < self.raised[copy, slot]:
            return st & ATTR_MASK  # run-ahead: set by a fault of this cluster that starts later
        return 0

    def mapped_slots(self, copy: int, v: int | None = None) -> np.ndarray:
        """Slots mapped in ``copy`` (optionally of vseg ``v`` only), whatever their ``vis``,
        in address-space order: vseg by vseg as added, page by page."""
        if v is None:
            slots = np.nonzero(self.state[copy] & MAPPED)[0]
            return slots[np.lexsort((self.vpn[slots], self.slot_vseg[slots]))]
        slots = self.slots(v)
        return slots[(self.state[copy, slots] & MAPPED) != 0]

    def as_dict(self, counters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Per-copy counters and sizes for result.json (keys are cluster numbers)."""
        out: dict[str, Any] = {}
        for c in range(self.n):
            if not self.copy_exists[c]:
                continue
            row = {name: int(self.copy_counters[c, k]) for k, name in enumerate(COPY_COUNTER_NAMES)}
            row["reference"] = c == self.ref
            row["vsegs"] = [self.vsegs[v].name for v in np.nonzero(self.vsl[c])[0]]
            row["mapped_pages"] = int(np.count_nonzero(self.state[c] & MAPPED))
            row["pt2_pages"] = int(np.count_nonzero(self.pt2[c] >= 0))
            out[str(c)] = row
        return out
