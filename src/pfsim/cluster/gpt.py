"""One process's VMM copies: a vseg list (VSL) and a page table (GPT) per cluster.

All copies share the slot layout of the process's :class:`~pfsim.guest.mm.AddressSpace`
(one slot per page a vseg covers), so copy ``c`` is row ``c`` of a few ``[clusters, slots]``
arrays that the compiled loop reads directly:

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

Per vseg (index ``v`` in slot order): ``vsl[c, v]`` says the vseg is registered in copy
``c``; per 2 MiB region ``r``: ``pt2[c, r]`` is the frame of copy ``c``'s PT2 (-1 none) and
``pt2_acq`` / ``pt2_rel`` the creation window (PTE1 locked) others spin on.

Concurrency model: fault handlers run whole at their fault time, in the simulator's event
order; a handler that asks for a lock inside another handler's hold window ``[acq, rel)``
spins until ``rel`` (extra CPU time on its core), otherwise it goes on and sees the final
values the earlier-processed handlers wrote (docs/clusters.md, "Time and locks").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfsim.cluster.topology import CODE, DATA, FILE, STACK, TYPE_CODES, Topology
from pfsim.guest.mm import AddressSpace, Vma
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
        nslots = len(mm.state)
        self.ref = ref
        self.n = n
        self.vsegs: list[Vma] = sorted(mm.vmas, key=lambda vma: vma.slot_base)
        nv = len(self.vsegs)
        # NOTE: perf: arrays of one dtype are rows of one packed array (fewer arguments for
        # the compiled loop to unbox); the named attributes are views of its rows.
        self.state = np.zeros((n, nslots), dtype=np.uint8)
        self.gfn = np.full((n, nslots), -1, dtype=np.int32)
        self.times = np.zeros((4, n, nslots), dtype=np.int64)
        self.vis, self.raised, self.lock_acq, self.lock_rel = self.times
        """``raised``: when the fault that set the entry was raised (run-ahead rule)."""
        self.vsl = np.zeros((n, nv), dtype=np.uint8)
        self.copy_exists = np.zeros(n, dtype=np.bool_)
        self.vsl_times = np.zeros((3, n), dtype=np.int64)
        self.vsl_wr_acq, self.vsl_wr_rel, self.vsl_rd_rel = self.vsl_times
        self.copy_counters = np.zeros((n, len(COPY_COUNTER_NAMES)), dtype=np.int64)
        self.placement = np.zeros((nv, n), dtype=np.int64)
        """Pages allocated for each vseg in each cluster's bank (faults and COW copies)."""
        self.slot_info = np.zeros((3, nslots), dtype=np.int32)
        self.slot_vseg, self.region, self.mapper_frame = self.slot_info
        """``region``: the slot's PT2 (2 MiB region) index; ``mapper_frame``: for code and
        data pages, the cached .elf mapper page to copy from (-1: not known cached)."""
        self.mapper_frame[:] = -1
        self.vtype = np.zeros(nslots, dtype=np.uint8)
        self.vpn = np.zeros(nslots, dtype=np.int64)
        self.vseg_info = np.zeros((2, nv), dtype=np.int32)
        self.attr, self.vcxy = self.vseg_info
        """``attr``: attributes a fault gives each vseg's pages (``vmm_handle_page_fault`` builds
        them from the vseg flags); ``vcxy``: placement cluster of anon and remote vsegs (-1:
        placed by type)."""
        self.vcxy[:] = -1
        placement_cluster = placement_cluster or {}
        for v, vma in enumerate(self.vsegs):
            lo, hi = vma.slot_base, vma.slot_base + vma.nslots
            code = TYPE_CODES[vma.type]
            self.slot_vseg[lo:hi] = v
            self.vtype[lo:hi] = code
            self.vpn[lo:hi] = (vma.reserve_start >> PAGE_SHIFT) + np.arange(vma.nslots)
            self.attr[v] = (MAPPED | (WRITABLE if vma.writable else 0)
                            | (EXECUTABLE if vma.executable else 0))
            if code not in (CODE, DATA, STACK, FILE):
                self.vcxy[v] = placement_cluster.get(vma.name, ref)
        regions, inverse = np.unique(self.vpn >> PT2_SHIFT, return_inverse=True)
        self.region[:] = inverse
        self.pt2 = np.full((n, len(regions)), -1, dtype=np.int32)
        self.pt2_times = np.zeros((2, n, len(regions)), dtype=np.int64)
        self.pt2_acq, self.pt2_rel = self.pt2_times
        self.refresh_mappers()
        self.kernel_args = (self.state, self.gfn, self.times, self.vsl, self.vsl_times,
                            self.slot_info, self.vtype, self.vseg_info, self.pt2, self.pt2_times,
                            self.copy_counters, self.placement)
        """The arrays the compiled loop takes, in its argument order."""

    # ------------------------------------------------------------------ layout

    def vseg_index(self, name: str) -> int:
        for v, vma in enumerate(self.vsegs):
            if vma.name == name:
                return v
        raise KeyError(name)

    def slots(self, v: int) -> slice:
        vma = self.vsegs[v]
        return slice(vma.slot_base, vma.slot_base + vma.nslots)

    def refresh_mappers(self, v: int | None = None) -> None:
        """Record which code/data pages have their .elf mapper page cached (monotone: mapper
        pages are never evicted in this model)."""
        for index, vma in enumerate(self.vsegs):
            if v is not None and index != v:
                continue
            if vma.file is None or vma.type not in ("code", "data"):
                continue
            pages = vma.pgoff + np.arange(vma.nslots)
            inside = pages < vma.file.npages
            frames = np.full(vma.nslots, -1, dtype=np.int32)
            frames[inside] = vma.file.frame[pages[inside]]
            self.mapper_frame[vma.slot_base:vma.slot_base + vma.nslots] = frames

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
        """Slots mapped in ``copy`` (optionally of vseg ``v`` only), whatever their ``vis``."""
        if v is None:
            return np.nonzero(self.state[copy] & MAPPED)[0]
        sl = self.slots(v)
        return sl.start + np.nonzero(self.state[copy, sl] & MAPPED)[0]

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
