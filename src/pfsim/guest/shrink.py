"""``shrink_node`` and the LRU scans (Linux 5.15 mm/vmscan.c), as a mixin of
:class:`pfsim.guest.reclaim.Reclaim`: the readable reference of reclaim's per-page work
(:mod:`pfsim.guest.reclaim_kernels` compiles the batches of the default engine).

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
"""

from __future__ import annotations

from math import isqrt

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest.lru import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    is_active_lru,
    is_file_lru,
)
from pfsim.guest.scan_control import DEF_PRIORITY, SWAP_CLUSTER_MAX, ScanControl
from pfsim.machine.pte import PTE_SWAP


class Shrinker:
    """``shrink_node`` → ``shrink_lruvec`` → ``shrink_active_list`` /
    ``shrink_inactive_list``."""

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
