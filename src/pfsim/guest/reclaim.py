"""Guest page reclaim, after Linux 5.15 mm/vmscan.c, mm/workingset.c and mm/page_alloc.c.

The guest kernel's frames are on four LRU lists (:mod:`pfsim.guest.lru`).  Allocation checks
the zone watermarks (``__setup_per_zone_wmarks``): the fast path takes frames while more than
``low`` are free, below that kswapd is woken and allocations go on down to ``min``; at ``min``
the allocating task reclaims itself (direct reclaim, ``allocstall``), and only when reclaim
frees nothing does the OOM killer run.  kswapd (``balance_pgdat``) reclaims until more than
``high`` frames are free.  Both go through ``shrink_node`` → ``shrink_lruvec``:

* ``get_scan_count``: how many pages of each list to scan at this priority (size >> priority,
  split between anon and file by swappiness and the recent I/O cost of each, or file only
  without swap, anon only when file pages are nearly gone, file only while the inactive file
  list is large and not thrashing);
* ``shrink_active_list``: active pages go to the inactive list (referenced executable file
  pages get one more trip around the active list), their accessed bits cleared;
* ``shrink_inactive_list`` → ``shrink_page_list`` → ``page_check_references``: a page whose
  PTEs were accessed is kept (first time: PG_referenced is set) or activated (referenced again,
  or mapped and accessed by more than one PTE, or executable file); an unreferenced page is
  reclaimed: anonymous pages get a swap slot and are written out, every PTE mapping the page is
  turned into a swap entry or cleared (the reverse map), dirty file pages are written back,
  and the frame is freed, leaving a *shadow* entry (``workingset_eviction``).

A refault (a page read back from swap or disk with a shadow) compares its refault distance
with the workingset size (``workingset_refault``) and is activated when it fits.

Simplifications (docs/reclaim.md): one node and zone; kswapd runs as timed events off the vCPUs
(its CPU time is simulated but charged to no vCPU); a page written out is freed when its write
is queued, not when the write completes (the device still spends the time, and a read of the
slot queues behind the write); dirty file pages met by reclaim are written by it (no flusher
threads).  Per page, the work is numpy over frame-indexed arrays; no Python object per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.engine import Priority
from pfsim.errors import InvariantViolation
from pfsim.guest.fault import Action, FaultResult
from pfsim.guest.lru import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LruLists,
    is_active_lru,
    is_file_lru,
)
from pfsim.guest.pagecache import File
from pfsim.guest.swap import GuestSwap, SwapRead
from pfsim.machine.frames import ANON, FREE, PAGECACHE
from pfsim.machine.pte import PTE_ACCESSED, PTE_EXEC, PTE_PRESENT, PTE_SWAP, VM_EXEC
from pfsim.sched import TaskState
from pfsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel
    from pfsim.guest.mm import Vma
    from pfsim.guest.steps import TaskExec

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16


def watermarks(managed: int, min_free_kbytes: int | None, scale_factor: int) -> tuple[int, int, int]:
    """(min, low, high) in frames for ``managed`` user frames (mm/page_alloc.c
    ``init_per_zone_wmark_min`` and ``__setup_per_zone_wmarks``, one zone)."""
    if min_free_kbytes is None:
        min_free_kbytes = min(max(isqrt(managed * (PAGE_SIZE >> 10) * 16), 128), 262144)
    pages_min = min_free_kbytes >> 2
    tmp = max(pages_min >> 2, managed * scale_factor // 10000)
    return pages_min, pages_min + tmp, pages_min + 2 * tmp


@dataclass
class ScanControl:
    """``struct scan_control`` (the fields pfsim uses)."""

    kswapd: bool
    nr_to_reclaim: int
    priority: int = DEF_PRIORITY
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    work: int = 0  # pages isolated (active and inactive): the CPU time of the pass
    may_deactivate_anon: bool = False
    may_deactivate_file: bool = False
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    cache_trim_mode: bool = False
    file_is_tiny: bool = False


COUNTERS = ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pgrefill",
            "pgactivate", "pgdeactivate", "allocstall", "kswapd_wakeups",
            "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
            "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
            "file_writeback", "swap_ra", "swap_outs_host_swapped")


class Reclaim:
    """Watermarks, kswapd, direct reclaim, swap-in and the LRU state of one guest kernel.

    Args:
        kernel: the guest kernel (flat VMM).
    """

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.sim = kernel.sim
        config = kernel.config
        guest = config.guest
        mem = kernel.mem
        n = mem.nframes
        self.lru = LruLists(n)
        self.referenced = np.zeros(n, dtype=np.bool_)  # PG_referenced
        self.workingset = np.zeros(n, dtype=np.bool_)  # PG_workingset
        self.dirty = np.zeros(n, dtype=np.bool_)  # PG_dirty (file pages mapped writable)
        self.file_id1 = np.zeros(n, dtype=np.int32)  # page cache owner of each frame + 1 (0: none)
        self.file_page = np.zeros(n, dtype=np.int32)
        self.files: list[File] = []
        self._file_ids: dict[int, int] = {}
        self.file_shadow: list[np.ndarray] = []
        self.file_shadow_ws: list[np.ndarray] = []
        self._pos1 = np.zeros(n, dtype=np.int32)  # scratch: frame -> index in a batch + 1
        self.rmap_mm1 = np.zeros(n, dtype=np.int32)
        """Reverse-map hint: the address space (index in ``_mm_procs``, + 1) and slot that last
        mapped each frame; exact for a page mapped once, which its map count tells."""
        self.rmap_slot = np.zeros(n, dtype=np.int64)
        self._mm_ids: dict[int, int] = {}
        self._mm_procs: list[Any] = []
        self.swap = GuestSwap(config, kernel.streams, n) if guest.swap.device != "none" else None
        self.swappiness = guest.mm.swappiness
        used = int(mem.nfree[1])  # frames at and above the watermark were never used: FREE
        managed = n - int(np.count_nonzero(mem.kind[:used] != FREE))
        self.wmark_min, self.wmark_low, self.wmark_high = watermarks(
            managed, guest.mm.min_free_kbytes, guest.mm.watermark_scale_factor)
        self.page_cost = guest.costs.reclaim_page
        self.swap_page_cost = guest.costs.swap_page
        self.nonresident_age = 0
        self.anon_cost = 0
        self.file_cost = 0
        self.refault_snapshot = [0, 0]
        self.stats = dict.fromkeys(COUNTERS, 0)
        self.kswapd_running = False
        self.kswapd_failures = 0
        self.check_batches = config.sim.check_invariants
        self.last_direct_work = 0
        mem.on_free = self._freed

    # ------------------------------------------------------------------ bookkeeping

    def _freed(self, frames: np.ndarray) -> None:
        self.lru.remove(frames)
        self.referenced[frames] = False
        self.workingset[frames] = False
        self.dirty[frames] = False
        self.file_id1[frames] = 0

    def _fid(self, file: File) -> int:
        fid = self._file_ids.get(id(file))
        if fid is None:
            fid = len(self.files)
            self._file_ids[id(file)] = fid
            self.files.append(file)
            self.file_shadow.append(np.full(file.npages, -1, dtype=np.int64))
            self.file_shadow_ws.append(np.zeros(file.npages, dtype=np.bool_))
        elif self.file_shadow[fid].size < file.npages:  # the file grew
            grow = file.npages - self.file_shadow[fid].size
            self.file_shadow[fid] = np.concatenate([self.file_shadow[fid],
                                                    np.full(grow, -1, dtype=np.int64)])
            self.file_shadow_ws[fid] = np.concatenate([self.file_shadow_ws[fid],
                                                       np.zeros(grow, dtype=np.bool_)])
        return fid

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

    def anon_added(self, frames: np.ndarray) -> None:
        """New anonymous pages (``lru_cache_add_inactive_or_unevictable``): inactive anon."""
        self.lru.add(frames, LRU_INACTIVE_ANON)

    def file_pages_added(self, file: File, pages: list[int], frames: list[int]) -> None:
        """Pages read into the page cache (``add_to_page_cache_lru``): a page with a shadow is
        a refault; it goes to the active list when its refault distance fits the workingset."""
        fid = self._fid(file)
        shadow = self.file_shadow[fid]
        for page, frame in zip(pages, frames, strict=True):
            self.file_id1[frame] = fid + 1
            self.file_page[frame] = page
            lru = LRU_INACTIVE_FILE
            if shadow[page] >= 0:
                if self._refault(True, int(shadow[page]), bool(self.file_shadow_ws[fid][page]),
                                 frame):
                    lru = LRU_ACTIVE_FILE
                shadow[page] = -1
            self.lru.add(np.array([frame]), lru)

    def set_dirty(self, frame: int) -> None:
        """A shared file page was mapped writable (``fault_dirty_shared_page``)."""
        if self.kernel.mem.kind[frame] == PAGECACHE:
            self.dirty[frame] = True

    def cache_refs(self, expected: np.ndarray) -> None:
        """Add the swap cache's frame references to ``expected`` (refcount check)."""
        if self.swap is not None:
            cached = self.swap.cache[self.swap.cache >= 0]
            np.add.at(expected, cached, 1)

    # ------------------------------------------------------------------ allocation

    def scan_reserve(self) -> int:
        """Frames the compiled fast path must leave free (it allocates while more than the
        low watermark are free, like ``get_page_from_freelist`` with ALLOC_WMARK_LOW)."""
        return self.wmark_low

    def alloc(self, texec: TaskExec, kind: int, onto_lru: bool = True) -> int:
        """``__alloc_pages`` for one frame: fast path above low, kswapd woken at low, min
        reserve, then direct reclaim; -1 when reclaim can free nothing (the caller OOM-kills)."""
        mem = self.kernel.mem
        if mem.free_frames <= self.wmark_low:
            self.wake_kswapd()
        retries = 0
        while mem.free_frames <= self.wmark_min:
            self.stats["allocstall"] += 1
            if self.try_to_free_pages(texec) == 0:
                return -1
            retries += 1
            if retries >= MAX_RECLAIM_RETRIES and mem.free_frames == 0:
                return -1
            if mem.free_frames > 0 and retries >= MAX_RECLAIM_RETRIES:
                break
        gfn = mem.alloc(kind)
        if gfn >= 0 and kind == ANON and onto_lru:
            self.anon_added(np.array([gfn]))
        return gfn

    def alloc_noretry(self, kind: int) -> tuple[int, int]:
        """A __GFP_NORETRY allocation from a kernel worker (the balloon): kswapd woken at low,
        one direct reclaim pass at min, never the OOM killer.  (frame or -1, pages of reclaim
        work done)."""
        mem = self.kernel.mem
        if mem.free_frames <= self.wmark_low:
            self.wake_kswapd()
        work = 0
        if mem.free_frames <= self.wmark_min:
            self.stats["allocstall"] += 1
            self.try_to_free_pages(None)
            work = self.last_direct_work
            if mem.free_frames <= self.wmark_min:
                return -1, work
        return mem.alloc(kind), work

    def alloc_nowait(self, kind: int) -> int:
        """An opportunistic allocation (readahead): only above the min watermark, no reclaim."""
        mem = self.kernel.mem
        if mem.free_frames <= self.wmark_low:
            self.wake_kswapd()
        if mem.free_frames <= self.wmark_min:
            return -1
        return mem.alloc(kind)

    def after_scan(self, popped: np.ndarray) -> None:
        """The compiled loop allocated ``popped`` (in order) for anonymous first touches."""
        if popped.size:
            self.anon_added(popped)
        if self.kernel.mem.free_frames <= self.wmark_low:
            self.wake_kswapd()

    # ------------------------------------------------------------------ kswapd

    def wake_kswapd(self) -> None:
        """``wakeup_kswapd``: start balancing unless running or given up (kswapd_failures)."""
        if self.kswapd_running or self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return
        if self.kernel.mem.free_frames > self.wmark_high:
            return
        self.kswapd_running = True
        self.stats["kswapd_wakeups"] += 1
        self.sim.at(self.sim.now, self._kswapd_round, priority=Priority.NORMAL)

    def _balanced(self) -> bool:
        return int(self.kernel.mem.nfree[0]) > self.wmark_high

    def _kswapd_round(self) -> None:
        """``balance_pgdat``: shrink the node from DEF_PRIORITY down (the priority drops when
        a pass scanned its target or freed nothing) until more than ``high`` frames are free.
        kswapd runs again when this run's work is done (``reclaim_page`` per page isolated)
        if memory is still not balanced, unless it failed MAX_RECLAIM_RETRIES times in a
        row."""
        if self.kernel.panic is not None:
            self.kswapd_running = False
            return
        priority = DEF_PRIORITY
        reclaimed = 0
        work = 0
        nr_to_reclaim = max(self.wmark_high, SWAP_CLUSTER_MAX)
        while not self._balanced() and priority >= 1:
            sc = ScanControl(kswapd=True, nr_to_reclaim=nr_to_reclaim, priority=priority)
            if self.swap is not None and self._inactive_is_low(LRU_INACTIVE_ANON):
                self.shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc)  # age_active_anon
            self.shrink_node(sc)
            reclaimed += sc.nr_reclaimed
            work += sc.work
            if sc.nr_scanned >= sc.nr_to_reclaim or sc.nr_reclaimed == 0:
                priority -= 1
        if reclaimed == 0 and not self._balanced():
            self.kswapd_failures += 1
        self._snapshot_refaults()
        if self._balanced() or self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            self._kswapd_sleep()
            return
        self.sim.at(self.sim.now + max(SWAP_CLUSTER_MAX, work) * self.page_cost, self._kswapd_round,
                    priority=Priority.NORMAL)

    def _kswapd_sleep(self) -> None:
        self.kswapd_running = False
        self._snapshot_refaults()

    # ------------------------------------------------------------------ direct reclaim

    def try_to_free_pages(self, texec: TaskExec | None) -> int:
        """``do_try_to_free_pages`` for SWAP_CLUSTER_MAX pages from DEF_PRIORITY down; the
        task pays ``reclaim_page`` per page isolated.  Returns the pages freed."""
        sc = ScanControl(kswapd=False, nr_to_reclaim=SWAP_CLUSTER_MAX)
        while True:
            for priority in range(DEF_PRIORITY, -1, -1):
                sc.priority = priority
                sc.nr_scanned = 0
                self.shrink_node(sc)
                if sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break
            if sc.nr_reclaimed or not sc.skipped_deactivate or sc.force_deactivate:
                break
            sc.force_deactivate = True  # retry deactivating even with a balanced active list
            sc.skipped_deactivate = False
        self._snapshot_refaults()
        self.last_direct_work = sc.work
        if texec is not None:
            self.kernel.faults.stall_ns += sc.work * self.page_cost
        return sc.nr_reclaimed

    # ------------------------------------------------------------------ shrink_node

    def _snapshot_refaults(self) -> None:
        self.refault_snapshot = [self.stats["workingset_activate_anon"],
                                 self.stats["workingset_activate_file"]]

    def _inactive_is_low(self, inactive_lru: int, nr: list[int] | None = None) -> bool:
        """``inactive_is_low``: inactive * sqrt(10 * size in GiB) < active."""
        if nr is None:
            nr = self.lru.nr.tolist()
        inactive = nr[inactive_lru]
        active = nr[inactive_lru + 1]
        gb = (inactive + active) >> 18
        ratio = isqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def shrink_node(self, sc: ScanControl) -> None:
        """``shrink_node``: the deactivation and balance decisions, then ``shrink_lruvec``."""
        nr = self.lru.nr.tolist()
        if sc.force_deactivate:
            sc.may_deactivate_anon = sc.may_deactivate_file = True
        else:
            sc.may_deactivate_anon = (self.stats["workingset_activate_anon"]
                                      != self.refault_snapshot[0]
                                      or self._inactive_is_low(LRU_INACTIVE_ANON, nr))
            sc.may_deactivate_file = (self.stats["workingset_activate_file"]
                                      != self.refault_snapshot[1]
                                      or self._inactive_is_low(LRU_INACTIVE_FILE, nr))
        sc.cache_trim_mode = bool(nr[LRU_INACTIVE_FILE] >> sc.priority) and \
            not sc.may_deactivate_file
        free = int(self.kernel.mem.nfree[0])
        file = nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE]
        anon = nr[LRU_INACTIVE_ANON]
        sc.file_is_tiny = (file + free <= self.wmark_high and not sc.may_deactivate_anon
                           and bool(anon >> sc.priority))
        before = sc.nr_reclaimed
        self.shrink_lruvec(sc)
        if sc.nr_reclaimed > before:
            self.kswapd_failures = 0

    def get_scan_count(self, sc: ScanControl) -> list[int]:
        """``get_scan_count``: pages to scan on each list at ``sc.priority``."""
        nr = self.lru.nr.tolist()
        swappiness = self.swappiness
        may_swap = self.swap is not None and self.swap.nfree > 0
        fraction = [0, 0]
        denominator = 1
        if not may_swap:
            balance = "file"
        elif sc.priority == 0 and swappiness:
            balance = "equal"
        elif sc.file_is_tiny:
            balance = "anon"
        elif sc.cache_trim_mode:
            balance = "file"
        else:
            balance = "fract"
            total_cost = self.anon_cost + self.file_cost
            anon_cost = total_cost + self.anon_cost
            file_cost = total_cost + self.file_cost
            total_cost = anon_cost + file_cost
            ap = swappiness * (total_cost + 1) // (anon_cost + 1)
            fp = (200 - swappiness) * (total_cost + 1) // (file_cost + 1)
            fraction = [ap, fp]
            denominator = ap + fp
        scan = [n >> sc.priority for n in nr]
        if balance == "fract":
            scan = [n * fraction[lru >= LRU_INACTIVE_FILE] // denominator if denominator else 0
                    for lru, n in enumerate(scan)]
        elif balance == "file":
            scan[LRU_INACTIVE_ANON] = scan[LRU_ACTIVE_ANON] = 0
        elif balance == "anon":
            scan[LRU_INACTIVE_FILE] = scan[LRU_ACTIVE_FILE] = 0
        return scan

    def shrink_lruvec(self, sc: ScanControl) -> None:
        """``shrink_lruvec``: scan the lists in SWAP_CLUSTER_MAX batches; once enough is
        reclaimed (kswapd, or below DEF_PRIORITY) scale the rest proportionally."""
        nr = self.get_scan_count(sc)
        targets = list(nr)
        nr_to_reclaim = sc.nr_to_reclaim
        nr_reclaimed = 0
        scan_adjusted = not sc.kswapd and sc.priority == DEF_PRIORITY
        while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
            for lru in range(4):
                if nr[lru]:
                    count = min(nr[lru], SWAP_CLUSTER_MAX)
                    nr[lru] -= count
                    nr_reclaimed += self.shrink_list(lru, count, sc)
            if nr_reclaimed < nr_to_reclaim or scan_adjusted:
                continue
            nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
            nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
            if not nr_file or not nr_anon:
                break
            if nr_file > nr_anon:
                scan_target = targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1
                small = LRU_INACTIVE_ANON
                percentage = nr_anon * 100 // scan_target
            else:
                scan_target = targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1
                small = LRU_INACTIVE_FILE
                percentage = nr_file * 100 // scan_target
            nr[small] = nr[small + 1] = 0
            big = LRU_INACTIVE_FILE if small == LRU_INACTIVE_ANON else LRU_INACTIVE_ANON
            for lru in (big, big + 1):
                scanned = targets[lru] - nr[lru]
                nr[lru] = targets[lru] * (100 - percentage) // 100
                nr[lru] -= min(nr[lru], scanned)
            scan_adjusted = True
        sc.nr_reclaimed += nr_reclaimed
        if self.swap is not None and self._inactive_is_low(LRU_INACTIVE_ANON):
            self.shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc)

    def shrink_list(self, lru: int, count: int, sc: ScanControl) -> int:
        if is_active_lru(lru):
            if sc.may_deactivate_file if is_file_lru(lru) else sc.may_deactivate_anon:
                self.shrink_active_list(count, lru, sc)
            else:
                sc.skipped_deactivate = True
            return 0
        return self.shrink_inactive_list(count, lru, sc)

    # ------------------------------------------------------------------ the reverse map

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

    # ------------------------------------------------------------------ active list

    def shrink_active_list(self, count: int, lru: int, sc: ScanControl) -> None:
        """``shrink_active_list``: deactivate all but referenced executable file pages."""
        frames = self.lru.isolate(lru, count)
        if frames.size == 0:
            return
        sc.work += frames.size
        self.stats["pgrefill"] += frames.size
        refs, vmexec = self.page_referenced(frames, self._rmap(frames))
        stay = (refs > 0) & vmexec if is_file_lru(lru) else np.zeros(frames.size, dtype=np.bool_)
        self.workingset[frames[~stay]] = True
        self.lru.add(frames[stay], lru)
        self.nonresident_age += int(np.count_nonzero(stay))  # move_pages_to_lru: active
        self.lru.add(frames[~stay], lru - 1)
        self.stats["pgdeactivate"] += int(np.count_nonzero(~stay))
        if self.check_batches:
            self.check()

    # ------------------------------------------------------------------ inactive list

    def shrink_inactive_list(self, count: int, lru: int, sc: ScanControl) -> int:
        """``shrink_inactive_list``: isolate, ``shrink_page_list``, put the rest back."""
        frames = self.lru.isolate(lru, count)
        if frames.size == 0:
            return 0
        sc.nr_scanned += frames.size
        sc.work += frames.size
        self.stats["pgscan_kswapd" if sc.kswapd else "pgscan_direct"] += frames.size
        reclaimed, pageout = self.shrink_page_list(frames, lru, sc)
        self.stats["pgsteal_kswapd" if sc.kswapd else "pgsteal_direct"] += reclaimed
        self._note_cost(is_file_lru(lru), pageout)
        if self.check_batches:
            self.check()
        return reclaimed

    def _note_cost(self, file: bool, pages: int) -> None:
        """``lru_note_cost``: add the I/O of reclaim (or of a restored refault); the costs halve
        when together they exceed a quarter of the LRU pages."""
        if file:
            self.file_cost += pages
        else:
            self.anon_cost += pages
        if self.file_cost + self.anon_cost > int(self.lru.nr.sum()) // 4:
            self.file_cost //= 2
            self.anon_cost //= 2

    def shrink_page_list(self, frames: np.ndarray, lru: int, sc: ScanControl) -> tuple[int, int]:
        """``shrink_page_list`` over an isolated batch (oldest first); (freed, written)."""
        kernel = self.kernel
        mem = kernel.mem
        file = is_file_lru(lru)
        maps = self._rmap(frames)
        refs, vmexec = self.page_referenced(frames, maps)
        was_referenced = self.referenced[frames].copy()  # TestClearPageReferenced
        self.referenced[frames] = False
        used = refs > 0
        self.referenced[frames[used]] = True  # SetPageReferenced
        activate = used & (was_referenced | (refs > 1) | (vmexec & file))
        keep = used & ~activate
        reclaim = ~used
        if file:  # PAGEREF_RECLAIM_CLEAN: a dirty page referenced before is kept
            keep |= reclaim & was_referenced & self.dirty[frames]
            reclaim &= ~(was_referenced & self.dirty[frames])
        slots = np.full(frames.size, -1, dtype=np.int64)
        written = np.zeros(frames.size, dtype=np.bool_)
        if not file:
            swap = self.swap
            for i in np.flatnonzero(reclaim).tolist():
                frame = int(frames[i])
                slot = -1 if swap is None else swap.slot_of(frame)
                if slot < 0:  # add_to_swap: a slot, and the page joins the swap cache
                    slot = -1 if swap is None else swap.alloc_slot()
                    if slot < 0:  # no swap space: activate_locked
                        reclaim[i] = False
                        activate[i] = True
                        continue
                    swap.add_to_cache(slot, frame)
                    mem.refcount[frame] += 1
                    written[i] = True
                slots[i] = slot
        else:
            written = reclaim & self.dirty[frames]
        # try_to_unmap: every PTE of a reclaimed page becomes its swap entry (anon) or none
        touched: set[int] = set()
        for process, pte_slots, index in maps:
            take = reclaim[index]
            if not take.any():
                continue
            mm = process.mm
            ptes = pte_slots[take]
            which = index[take]
            if file:
                mm.state[ptes] = 0
                mm.gfn[ptes] = -1
            else:
                mm.state[ptes] = PTE_SWAP
                mm.gfn[ptes] = (-2 - slots[which]).astype(np.int32)
                self.swap.duplicate(slots[which])
            np.subtract.at(mem.refcount, frames[which], 1)
            mm.rss -= int(ptes.size)
            touched.add(id(process))
            kernel.procs._resync_others(-1, process)
        # pageout: one write request per batch for the pages that need writing
        nwritten = int(np.count_nonzero(written))
        if nwritten:
            start = self.sim.now
            host = kernel.executor.host
            if host is not None:  # the virtual disk reads the pages: double paging
                for frame in frames[written].tolist():
                    ready, swapped = host.dma_read(int(frame))
                    start = max(start, ready)
                    if swapped and not file:
                        self.stats["swap_outs_host_swapped"] += 1
            if file:
                kernel.disk.submit(start, nwritten)
                self.stats["file_writeback"] += nwritten
            else:
                self.swap.device.submit(start, nwritten, write=True)
                self.swap.swap_outs += nwritten
            self.dirty[frames[written]] = False
        # __remove_mapping: shadow entries, then the frames are freed
        for i in np.flatnonzero(reclaim).tolist():
            frame = int(frames[i])
            if mem.refcount[frame] != 1:
                raise InvariantViolation(f"reclaimed frame {frame} still has "
                                         f"{int(mem.refcount[frame]) - 1} mappings")
            age = self.nonresident_age
            self.nonresident_age += 1  # workingset_eviction: workingset_age_nonresident
            if file:
                fid = int(self.file_id1[frame]) - 1
                page = int(self.file_page[frame])
                self.file_shadow[fid][page] = age
                self.file_shadow_ws[fid][page] = self.workingset[frame]
                self.files[fid].drop(page)
            else:
                slot = self.swap.delete_from_cache(frame)
                self.swap.shadow[slot] = age
                self.swap.shadow_workingset[slot] = self.workingset[frame]
            mem.put(frame)
        # putback: activated pages to the active list, kept ones to the inactive list; an
        # activated page in the swap cache gives its slot up when swap is over half full
        if not file and self.swap is not None and self.swap.full:
            for frame in frames[activate].tolist():
                self._free_swap_cache(int(frame))
        self.lru.add(frames[activate], lru + 1)
        nact = int(np.count_nonzero(activate))
        self.stats["pgactivate"] += nact
        self.nonresident_age += nact
        self.lru.add(frames[keep & ~activate], lru)
        return int(np.count_nonzero(reclaim)), nwritten

    # ------------------------------------------------------------------ refaults

    def _refault(self, file: bool, eviction: int, workingset: bool, frame: int) -> bool:
        """``workingset_refault``: count it; True (activate) when the refault distance is at
        most the workingset size."""
        kind = "file" if file else "anon"
        self.stats[f"workingset_refault_{kind}"] += 1
        nr = self.lru.nr
        distance = self.nonresident_age - eviction
        size = int(nr[LRU_ACTIVE_FILE])
        if not file:
            size += int(nr[LRU_INACTIVE_FILE])
        if self.swap is not None and self.swap.nfree > 0:
            size += int(nr[LRU_ACTIVE_ANON])
            if file:
                size += int(nr[LRU_INACTIVE_ANON])
        if distance > size:
            return False
        self.nonresident_age += 1
        self.stats[f"workingset_activate_{kind}"] += 1
        if workingset:
            self.workingset[frame] = True
            self._note_cost(file, 1)  # lru_note_cost_page
            self.stats[f"workingset_restore_{kind}"] += 1
        return True

    # ------------------------------------------------------------------ swap-in

    def do_swap_page(self, texec: TaskExec, vma: Vma, slot: int, write: bool,
                     cost: int) -> FaultResult:
        """``do_swap_page`` (Linux 5.15 mm/memory.c): the PTE holds a swap entry."""
        kernel = self.kernel
        mem = kernel.mem
        mm = texec.process.mm
        swap = self.swap
        assert swap is not None
        entry = -2 - int(mm.gfn[slot])
        frame = int(swap.cache[entry])
        if frame >= 0 and entry in swap.pending:  # being read (readahead): wait, retry minor
            return FaultResult(Action.WAIT_IO, cost, request=swap.pending[entry],
                               detail={"major": False})
        if frame < 0 and swap.synchronous and swap.count[entry] == 1:
            # SWP_SYNCHRONOUS_IO (zram): no swap cache, the read happens in this thread
            frame = kernel.alloc_frame(texec, ANON, onto_lru=False)
            if frame < 0:
                return FaultResult(Action.KILLED, cost)
            done = swap.device.submit(self.sim.now, 1, write=False)
            swap.swap_ins += 1
            self._swapped_in(entry, frame)
            swap.swap_free(np.array([entry]))
            bits = vma.pte_bits() if write else PTE_PRESENT | (PTE_EXEC if vma.executable else 0)
            mm.gfn[slot] = frame
            mm.state[slot] = bits
            mm.rss += 1
            self.rmap_note(mm, slot, frame)
            kernel.faults.touched.append(frame)
            wait = max(0, done - self.sim.now)
            return FaultResult(Action.RETRY, cost + wait + self.swap_page_cost,
                               detail={"major": True})
        if frame < 0:  # swapin_readahead → swap_cluster_readahead
            slots: list[int] = []
            frames: list[int] = []
            for other in swap.readahead_window(entry):
                if other == entry:
                    got = kernel.alloc_frame(texec, ANON, onto_lru=False)
                    if got < 0:
                        return FaultResult(Action.KILLED, cost)
                    if swap.cache[entry] >= 0 or mm.state[slot] != PTE_SWAP:
                        mem.put(got)  # reclaim or another task changed things: retry
                        return FaultResult(Action.RETRY, cost)
                else:
                    got = self.alloc_nowait(ANON)
                    if got < 0:
                        break
                swap.add_to_cache(other, got)
                slots.append(other)
                frames.append(got)
            done = swap.device.submit(self.sim.now, len(slots), write=False)
            swap.swap_ins += len(slots)
            self.stats["swap_ra"] += len(slots) - 1
            request = SwapRead(slots, frames, done)
            for other in slots:
                swap.pending[other] = request
            self.sim.at(done, self._swapin_done, request, priority=Priority.URGENT)
            # this fault started the read: VM_FAULT_MAJOR, so its retry counts as major
            return FaultResult(Action.WAIT_IO, cost, request=request, detail={"major": True})
        # the page is in the swap cache: map it
        mem.get(frame)
        swap.swap_free(np.array([entry]))
        bits = PTE_PRESENT | (PTE_EXEC if vma.executable else 0)
        if write and self.try_free_swap(frame):  # reuse_swap_page: exclusive, writable
            bits = vma.pte_bits()
        elif swap.full:  # vm_swap_full: drop the swap copy (try_to_free_swap), keep read-only
            self.try_free_swap(frame)
        mm.gfn[slot] = frame
        mm.state[slot] = bits
        mm.rss += 1
        self.rmap_note(mm, slot, frame)
        return FaultResult(Action.RETRY, cost + self.swap_page_cost)

    def _free_swap_cache(self, frame: int) -> None:
        """``try_to_free_swap``: leave the swap cache if no swap entry refers to the slot."""
        swap = self.swap
        slot = swap.slot_of(frame)
        if slot >= 0 and swap.count[slot] == 0 and slot not in swap.pending:
            swap.delete_from_cache(frame)
            self.kernel.mem.put(frame)

    def try_free_swap(self, frame: int) -> bool:
        """``reuse_swap_page`` for a page about to be written: when its one mapping is the
        only user (no swap entry left, not shared), it leaves the swap cache (freeing the
        slot) and may be written in place.  True when the page is now exclusive."""
        swap = self.swap
        mem = self.kernel.mem
        if swap is None or swap.slot_of(frame) < 0:
            return bool(mem.refcount[frame] == 1)
        slot = swap.slot_of(frame)
        if swap.count[slot] == 0 and mem.refcount[frame] == 2 and slot not in swap.pending:
            swap.delete_from_cache(frame)
            mem.put(frame)
            return True
        return False

    def _swapped_in(self, slot: int, frame: int) -> None:
        """The page of ``slot`` is in ``frame``: refault check, then onto the LRU."""
        swap = self.swap
        lru = LRU_INACTIVE_ANON
        if swap.shadow[slot] >= 0:
            if self._refault(False, int(swap.shadow[slot]), bool(swap.shadow_workingset[slot]),
                             frame):
                lru = LRU_ACTIVE_ANON
            swap.shadow[slot] = -1
        self.lru.add(np.array([frame]), lru)

    def _swapin_done(self, request: SwapRead) -> None:
        kernel = self.kernel
        swap = self.swap
        host = kernel.executor.host
        for slot, frame in zip(request.slots, request.frames, strict=True):
            swap.pending.pop(slot, None)
            if host is not None:
                host.backfill(frame)
            if swap.count[slot] == 0 and kernel.mem.refcount[frame] == 1:
                swap.delete_from_cache(frame)  # every PTE holding it went away meanwhile
                kernel.mem.put(frame)
                continue
            self._swapped_in(slot, frame)
        if kernel.panic is not None:
            return
        for task in request.waiters:
            if task.state != TaskState.DEAD:
                kernel.scheduler.wake_up(task)
        request.waiters.clear()

    def free_swap_entries(self, slots: np.ndarray) -> None:
        """PTEs holding ``slots`` went away (exit, munmap, exec): ``free_swap_and_cache``."""
        if self.swap is None or slots.size == 0:
            return
        mem = self.kernel.mem
        for slot in self.swap.swap_free(slots).tolist():
            if slot in self.swap.pending:
                continue  # freed when its read completes
            frame = int(self.swap.cache[slot])
            if mem.refcount[frame] == 1:
                self.swap.delete_from_cache(frame)
                mem.put(frame)

    # ------------------------------------------------------------------ results and checks

    def result(self) -> dict[str, Any]:
        """The VM's reclaim counters (``/proc/vmstat`` names where one exists)."""
        s = self.stats
        swap = self.swap
        out = {
            "swap_outs": swap.swap_outs if swap else 0,
            "swap_ins": swap.swap_ins if swap else 0,
            "pgscan_kswapd": s["pgscan_kswapd"],
            "pgscan_direct": s["pgscan_direct"],
            "pgsteal": s["pgsteal_kswapd"] + s["pgsteal_direct"],
            "pgsteal_kswapd": s["pgsteal_kswapd"],
            "pgsteal_direct": s["pgsteal_direct"],
            "refaults": s["workingset_refault_anon"] + s["workingset_refault_file"],
            "allocstall": s["allocstall"],
        }
        out.update({k: s[k] for k in COUNTERS if k not in out and not k.startswith("pgs")})
        out["swap_device"] = self.kernel.config.guest.swap.device
        out["swap_slots_used"] = (swap.nslots - swap.nfree) if swap else 0
        out["watermarks"] = {"min": self.wmark_min, "low": self.wmark_low,
                             "high": self.wmark_high}
        return out

    def check(self) -> None:
        """After every reclaim batch (``sim.check_invariants``): every frame is free, on
        exactly one LRU list, or pinned (being read in); every swap slot is held by PTEs, the
        swap cache, or nothing and free."""
        kernel = self.kernel
        mem = kernel.mem
        self.lru.check()
        user = (mem.kind == ANON) | (mem.kind == PAGECACHE)
        on = self.lru.which1 != 0
        if np.any(on & ~user):
            frame = int(np.argmax(on & ~user))
            raise InvariantViolation(f"frame {frame} of kind {int(mem.kind[frame])} is on an LRU list")
        pinned = np.zeros(mem.nframes, dtype=np.bool_)
        pending_file = sum(len(f.pending) for f in kernel.files.values())  # being read in
        if self.swap is not None:
            for request in {id(r): r for r in self.swap.pending.values()}.values():
                pinned[[f for s, f in zip(request.slots, request.frames, strict=True)
                        if s in self.swap.pending]] = True
        off = user & ~on & ~pinned
        if int(np.count_nonzero(off)) != pending_file:
            raise InvariantViolation(f"{int(np.count_nonzero(off))} user frames are on no LRU list "
                                     f"and not being read in ({pending_file} file pages are)")
        if self.swap is not None:
            refs = np.zeros(self.swap.nslots, dtype=np.int64)
            for process in kernel.processes:
                if process.alive:
                    mm = process.mm
                    entries = mm.gfn[(mm.state & PTE_SWAP) != 0]
                    np.add.at(refs, -2 - entries.astype(np.int64), 1)
            self.swap.check(refs)
