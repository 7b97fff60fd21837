"""Guest page reclaim, after Linux 5.15 mm/vmscan.c, mm/workingset.c and mm/page_alloc.c.

The guest kernel's frames are on four LRU lists (:mod:`pfsim.guest.lru`).  Allocation checks
the zone watermarks (``__setup_per_zone_wmarks``, :mod:`pfsim.guest.scan_control`): the fast
path takes frames while more than ``low`` are free, below that kswapd is woken and allocations
go on down to ``min``; at ``min`` the allocating task reclaims itself (direct reclaim,
``allocstall``), and only when reclaim frees nothing does the OOM killer run.  kswapd
(``balance_pgdat``) reclaims until more than ``high`` frames are free.  Both go through
``shrink_node`` (:mod:`pfsim.guest.shrink`, with the reverse map of :mod:`pfsim.guest.rmap`);
a refault compares its refault distance with the workingset size
(:mod:`pfsim.guest.workingset`); swap-in is :mod:`pfsim.guest.swapin`.  This module holds the
:class:`Reclaim` state, allocation, kswapd, direct reclaim, results and invariant checks.

kswapd0 is a kernel thread of the guest scheduler (:mod:`pfsim.guest.kthread`): each pass of
``balance_pgdat`` is applied when it has a vCPU, then it runs that pass's CPU time there.

Simplifications (docs/reclaim.md): one node and zone; a page written out is freed when its write
is queued, not when the write completes (the device still spends the time, and a read of the
slot queues behind the write); dirty file pages met by reclaim are written by it (no flusher
threads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest.kthread import SLEEP, KernelThread
from pfsim.guest.lru import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LruLists,
)
from pfsim.guest.pagecache import File
from pfsim.guest.rmap import ReverseMap
from pfsim.guest.scan_control import (
    COUNTERS,
    DEF_PRIORITY,
    MAX_RECLAIM_RETRIES,
    SWAP_CLUSTER_MAX,
    ScanControl,
    watermarks,
)
from pfsim.guest.shrink import Shrinker
from pfsim.guest.swap import GuestSwap
from pfsim.guest.swapin import SwapIn
from pfsim.guest.workingset import Workingset
from pfsim.machine.frames import ANON, FREE, PAGECACHE
from pfsim.machine.pte import PTE_SWAP
from pfsim.sched import TaskState
from pfsim.sched.tick import tick_nsec

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel
    from pfsim.guest.steps import TaskExec

__all__ = ["COUNTERS", "DEF_PRIORITY", "MAX_RECLAIM_RETRIES", "SWAP_CLUSTER_MAX", "Reclaim",
           "ScanControl", "watermarks"]


class Reclaim(Shrinker, ReverseMap, Workingset, SwapIn):
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
        self.kswapd = KernelThread(kernel, "kswapd0", self._kswapd_step)
        """kswapd0 (``kswapd_run``): a kernel thread of the guest scheduler, on any vCPU."""
        self.kswapd_napping = False
        self.kswapd_nap_ns = (guest.hz // 10) * tick_nsec(guest.hz)
        """``kswapd_try_to_sleep``'s short sleep, ``schedule_timeout(HZ/10)``."""
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

    def after_scan(self, mm: Any, slots: np.ndarray, popped: np.ndarray) -> None:
        """The compiled loop, over ``slots`` of ``mm``, allocated ``popped`` (in order) for
        anonymous first touches: reverse map, then the inactive anon list.  It stops at the
        low watermark without waking kswapd: as in ``__alloc_pages``, the allocation that
        finds free memory at ``low`` (the loop's next first touch, handled by :meth:`alloc`
        at its own time) fails the fast path and wakes it."""
        if popped.size:
            self.rmap_note_scan(mm, slots, popped)
            self.anon_added(popped)

    # ------------------------------------------------------------------ kswapd

    def wake_kswapd(self) -> None:
        """``wakeup_kswapd``: nothing if kswapd is not asleep on its wait queue (it is
        balancing), has given up (kswapd_failures) or the node is balanced; otherwise wake
        kswapd0, which balances when the scheduler gives it a vCPU."""
        if self.kswapd_running or self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return
        if self.kernel.mem.free_frames > self.wmark_high:
            return
        self.kswapd_running = True
        self.stats["kswapd_wakeups"] += 1
        self.kswapd.wake()

    def _balanced(self) -> bool:
        return int(self.kernel.mem.nfree[0]) > self.wmark_high

    def _sleep_ok(self) -> bool:
        """``prepare_kswapd_sleep``: the node is hopeless (MAX_RECLAIM_RETRIES passes in a row
        freed nothing: left to direct reclaim) or balanced (more than ``high`` free)."""
        return self.kswapd_failures >= MAX_RECLAIM_RETRIES or self._balanced()

    def _kswapd_step(self) -> int:
        """kswapd0's loop (``kswapd``), run when it has a vCPU and the CPU time of its last
        pass is run.  When it may sleep (``balance_pgdat``'s head finds the node balanced, or
        hopeless), ``kswapd_try_to_sleep``: first a short sleep of HZ/10 on the wait queue,
        from which ``wakeup_kswapd`` wakes it early (``kswapd_low_wmark_hit_quickly``, then it
        balances); at its end, if it may still sleep, it sleeps until woken, otherwise it
        balances again (``kswapd_high_wmark_hit_quickly``).  Balancing is one pass of the
        priority loop (:meth:`_balance_pgdat`), applied now, whose CPU time (``reclaim_page``
        per page isolated, at least SWAP_CLUSTER_MAX) the thread then runs.  Returns that
        time, or SLEEP."""
        kswapd = self.kswapd
        if self.kernel.panic is not None:
            self._kswapd_sleep()
            return SLEEP
        if self.kswapd_napping:  # back from the short sleep
            self.kswapd_napping = False
            if not kswapd.timed_out:  # woken by wakeup_kswapd: a premature sleep
                self.stats["kswapd_low_wmark_hit_quickly"] += 1
            elif self._sleep_ok():  # still balanced: sleep until wakeup_kswapd
                return SLEEP
            else:  # memory fell below high meanwhile, without an allocation at low
                self.stats["kswapd_high_wmark_hit_quickly"] += 1
                self.kswapd_running = True
        if self._sleep_ok():
            self._kswapd_sleep()
            self.kswapd_napping = True
            return kswapd.sleep_for(self.kswapd_nap_ns, TaskState.INTERRUPTIBLE)
        reclaimed, work = self._balance_pgdat()
        if reclaimed == 0 and not self._balanced():
            self.kswapd_failures += 1
        self._snapshot_refaults()
        return max(SWAP_CLUSTER_MAX, work) * self.page_cost

    def _balance_pgdat(self) -> tuple[int, int]:
        """One pass of ``balance_pgdat``'s priority loop: (pages freed, pages isolated)."""
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
        return reclaimed, work

    def _kswapd_sleep(self) -> None:
        self.kswapd_running = False
        self._snapshot_refaults()

    # ------------------------------------------------------------------ direct reclaim

    def try_to_free_pages(self, texec: TaskExec | None) -> int:
        """``do_try_to_free_pages`` for SWAP_CLUSTER_MAX pages from DEF_PRIORITY down; the
        task pays ``reclaim_page`` per page isolated.  Returns the pages freed."""
        reclaimed, work = self._do_try_to_free_pages()
        self._snapshot_refaults()
        self.last_direct_work = work
        if texec is not None:
            self.kernel.faults.stall_ns += work * self.page_cost
        return reclaimed

    def _do_try_to_free_pages(self) -> tuple[int, int]:
        """The priority loop of ``do_try_to_free_pages``: (pages freed, pages isolated)."""
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
        return sc.nr_reclaimed, sc.work

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
            "kswapd_cpu_ns": self.kswapd.cpu_ns,
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
        pinned[kernel.filling] = True  # taken for a read that is being set up
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
