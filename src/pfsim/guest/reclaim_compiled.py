"""Guest reclaim on the compiled engine (``sim.engine = "compiled"``, the default).

:class:`CompiledReclaim` is :class:`pfsim.guest.reclaim.Reclaim` with its per-page work in
:mod:`pfsim.guest.reclaim_kernels`: a kswapd pass (``balance_pgdat``) and a direct reclaim
(``do_try_to_free_pages``) are one compiled call each, over the reference's own arrays.  Python
keeps the rare events: waking and sleeping kswapd, OOM, and, replayed from the kernels' log in
the reference's order after each call, the write requests (with the host's DMA reads: double
paging), the TLB shootdowns of the address spaces unmapped, and the file pages dropped from the
page cache.  With ``sim.check_invariants`` the reference's Python loops drive one compiled
batch at a time, and the invariants are checked after every batch.

The reference engine (``sim.engine = "reference"``) runs :class:`Reclaim` itself; both give
the same result.json (``tests/test_reclaim_differential.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest import reclaim_kernels as rk
from pfsim.guest.reclaim import COUNTERS, Reclaim, ScanControl
from pfsim.guest.swap import SwapRead


class CompiledReclaim(Reclaim):
    """Reclaim whose scans run compiled (see the module docstring)."""

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._s = np.zeros(rk.NSCALARS, dtype=np.int64)
        self._stats = np.zeros(len(COUNTERS), dtype=np.int64)
        self._log = rk.new_log(256, 256)
        self._qpos = np.zeros((4, 2), dtype=np.int64)
        self._mm_key: tuple | None = None
        self._mms: tuple = ()
        self._positions: list[Any] = []
        self._rss_delta = np.zeros(1, dtype=np.int64)
        self._nslots = 0
        self._no_order = np.zeros(0, dtype=np.int64)
        self._arrays_key: tuple | None = None
        self._arrays_now: rk.Arrays | None = None
        self._s[rk.S_HAS_SWAP] = self.swap is not None
        self._s[rk.S_SWAP_NSLOTS] = self.swap.nslots if self.swap is not None else 0
        self._s[rk.S_SWAPPINESS] = self.swappiness
        self._s[rk.S_WMARK_HIGH] = self.wmark_high
        assert COUNTERS[rk.C_REFAULT_ANON] == "workingset_refault_anon"
        assert COUNTERS[rk.C_ACTIVATE_ANON] == "workingset_activate_anon"
        assert COUNTERS[rk.C_RESTORE_ANON] == "workingset_restore_anon"
        assert COUNTERS[rk.C_PGDEACTIVATE] == "pgdeactivate"
        swap = self.swap
        empty32 = np.zeros(0, dtype=np.int32)
        empty64 = np.zeros(0, dtype=np.int64)
        self._swap_arrays = ((swap.slot1, swap.cache, swap.count, swap.shadow,
                              swap.shadow_workingset, swap.free_slots) if swap is not None else
                             (empty32, empty32, empty32, empty64, np.zeros(0, dtype=np.bool_),
                              empty32))

    # ------------------------------------------------------------------ the calls

    def _address_spaces(self) -> np.ndarray:
        """The address spaces the kernels may unmap from, by reverse-map number (then the
        live processes never noted by the reverse map); their arrays as typed lists, cached
        while no table was reallocated.  Returns the live ones in process order."""
        procs = self._mm_procs
        positions = list(procs)
        index = {id(p.mm): i for i, p in enumerate(procs)}
        order = []
        for process in self.kernel.processes:
            if not process.alive:
                continue
            i = index.get(id(process.mm))
            if i is None:
                i = len(positions)
                index[id(process.mm)] = i
                positions.append(process)
            order.append(i)
        key = tuple((id(p), id(p.mm.gfn), id(p.mm.state), id(p.mm.vflags)) for p in positions)
        if key != self._mm_key:
            lists = rk.new_table_lists()
            for p in positions:
                rk.table_lists_append(lists, p.mm.gfn, p.mm.state, p.mm.vflags)
            if not positions:  # nothing to unmap from: one empty table
                rk.table_lists_append(lists, np.zeros(0, dtype=np.int64),
                                      np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.uint8))
            self._mm_key = key
            self._mm_lists = lists
            self._nslots = sum(int(p.mm.gfn.size) for p in positions)
        self._positions = positions
        alive = np.array([p.alive for p in positions] or [False], dtype=np.uint8)
        self._mms = (*self._mm_lists, alive)
        if self._rss_delta.size < len(positions):
            self._rss_delta = np.zeros(len(positions), dtype=np.int64)
        return np.array(order, dtype=np.int64)

    def _enter(self, tables: bool = True) -> tuple[rk.Arrays, np.ndarray]:
        """Scalars in, room made (queues, log), the arrays bundled for a call (``tables``:
        with the address spaces, for a call that may unmap)."""
        order = self._address_spaces() if tables else self._no_order
        lru = self.lru
        total = int(lru.nr.sum())
        for i, queue in enumerate(lru._queues):
            queue.reserve(2 * (total + 2 * rk.SWAP_CLUSTER_MAX))  # compactions stay rare
            self._qpos[i, 0] = queue.head
            self._qpos[i, 1] = queue.tail
        if tables:
            rows = 2 * total + self._nslots + 64
            if self._log.rows.shape[0] < rows or self._log.frames.size < total + 64:
                self._log = rk.new_log(2 * rows, 2 * (total + 64))
        self._log.n[:] = 0
        self._log.err[:] = 0
        s = self._s
        s[rk.S_AGE] = self.nonresident_age
        s[rk.S_ANON_COST] = self.anon_cost
        s[rk.S_FILE_COST] = self.file_cost
        s[rk.S_SNAP_ANON], s[rk.S_SNAP_FILE] = self.refault_snapshot
        stats = self.stats
        s[rk.S_ACT_ANON] = stats["workingset_activate_anon"]
        s[rk.S_ACT_FILE] = stats["workingset_activate_file"]
        s[rk.S_KSWAPD_FAILURES] = self.kswapd_failures
        s[rk.S_NEXT_STAMP] = lru._next_stamp
        swap = self.swap
        s[rk.S_SWAP_NFREE] = swap.nfree if swap is not None else 0
        s[rk.S_NMMS] = max(1, len(self._positions)) if tables else 0  # (the typed lists' length)
        self._stats[:] = 0
        return self._arrays(), order

    def _arrays(self) -> rk.Arrays:
        """The arrays of a call; the same tuple while no queue or table was reallocated."""
        q = self.lru._queues
        key = (*(id(x.frames) for x in q), *(id(x.stamps) for x in q), id(self._rss_delta))
        if key != self._arrays_key:
            lru = self.lru
            mem = self.kernel.mem
            self._arrays_key = key
            self._arrays_now = rk.Arrays(
                lru.which1, lru.stamp, lru.nr, tuple(x.frames for x in q),
                tuple(x.stamps for x in q), self._qpos, self.referenced, self.workingset,
                self.dirty, self.file_id1, self.file_page, self.rmap_mm1, self.rmap_slot,
                self._pos1, mem.refcount, mem.kind, mem.free_stack, mem.nfree,
                *self._swap_arrays, self._rss_delta)
        return self._arrays_now

    def _leave(self) -> None:
        """Scalars out, counters added, the log replayed in the reference's order."""
        s = self._s
        self.nonresident_age = int(s[rk.S_AGE])
        self.anon_cost = int(s[rk.S_ANON_COST])
        self.file_cost = int(s[rk.S_FILE_COST])
        self.kswapd_failures = int(s[rk.S_KSWAPD_FAILURES])
        lru = self.lru
        lru._next_stamp = int(s[rk.S_NEXT_STAMP])
        for i, queue in enumerate(lru._queues):
            queue.head = int(self._qpos[i, 0])
            queue.tail = int(self._qpos[i, 1])
        if self.swap is not None:
            self.swap.nfree = int(s[rk.S_SWAP_NFREE])
        counts = self._stats
        for i in np.flatnonzero(counts).tolist():
            self.stats[COUNTERS[i]] += int(counts[i])
        if self._rss_delta.any():
            for i in np.flatnonzero(self._rss_delta).tolist():
                self._positions[i].mm.rss += int(self._rss_delta[i])
            self._rss_delta[:] = 0
        log = self._log
        code, frame = int(log.err[0]), int(log.err[1])
        if code != rk.E_OK:
            raise InvariantViolation({
                rk.E_ON_LRU: f"frame {frame} added to an LRU list while on one",
                rk.E_STILL_MAPPED: f"reclaimed frame {frame} still has mappings",
                rk.E_BAD_PUT: f"put on free frame {frame}",
                rk.E_REFCOUNT: f"frame {frame} is mapped by more PTEs than its references"}[code])
        if not log.n[0]:
            return
        kernel = self.kernel
        for kind, x, y, z, w in log.rows[:int(log.n[0])].tolist():
            if kind == rk.R_RESYNC:
                kernel.procs._resync_others(-1, self._positions[x])
            elif kind == rk.R_WRITE:
                self._pageout(bool(x), log.frames[y:y + z].tolist())
            else:  # R_DROP: the shadow entry of a file page, and the page cache forgets it
                self.file_shadow[x][y] = z
                self.file_shadow_ws[x][y] = bool(w)
                self.files[x].drop(y)

    def _pageout(self, file: bool, frames: list[int]) -> None:
        """One write request (``pageout`` of a batch), as ``shrink_page_list`` submits it."""
        kernel = self.kernel
        start = self.sim.now
        host = kernel.executor.host
        if host is not None:  # the virtual disk reads the pages: double paging
            for frame in frames:
                ready, swapped = host.dma_read(frame)
                start = max(start, ready)
                if swapped and not file:
                    self.stats["swap_outs_host_swapped"] += 1
        if file:
            kernel.disk.submit(start, len(frames))
            self.stats["file_writeback"] += len(frames)
        else:
            assert self.swap is not None
            self.swap.device.submit(start, len(frames), write=True)
            self.swap.swap_outs += len(frames)

    # ------------------------------------------------------------------ the access loop

    def after_scan(self, mm: Any, slots: np.ndarray, popped: np.ndarray) -> None:
        """The reference's reverse-map notes and LRU adds in one compiled call (only the
        inactive anon queue and the LRU stamp travel: nothing else changes)."""
        if popped.size:
            lru = self.lru
            queue = lru._queues[rk.LRU_INACTIVE_ANON]
            # room for the valid entries and the new ones, so that the kernel's in-place
            # compaction always fits and stays rare
            queue.reserve(2 * (int(lru.nr[rk.LRU_INACTIVE_ANON]) + int(popped.size)))
            qpos = self._qpos
            qpos[rk.LRU_INACTIVE_ANON] = queue.head, queue.tail
            self._s[rk.S_NEXT_STAMP] = lru._next_stamp
            err = self._log.err
            err[:] = 0
            rk.scan_added(self._arrays(), self._s, slots, mm.gfn, popped,
                          self._mm_index(mm) + 1, err)
            queue.head = int(qpos[rk.LRU_INACTIVE_ANON, 0])
            queue.tail = int(qpos[rk.LRU_INACTIVE_ANON, 1])
            lru._next_stamp = int(self._s[rk.S_NEXT_STAMP])
            if err[0] != rk.E_OK:
                raise InvariantViolation(f"frame {int(err[1])} added to an LRU list while on one")
        # no wake-up here: the next allocation, at low, wakes kswapd (Reclaim.after_scan)

    # ------------------------------------------------------------------ the passes

    def _balance_pgdat(self) -> tuple[int, int]:
        if self.check_batches:  # the Python loops, one compiled batch at a time
            return super()._balance_pgdat()
        arrays, order = self._enter()
        reclaimed, work = rk.kswapd_pass(arrays, self._s, self._mms, order, self._stats,
                                         self._log)
        self._leave()
        return int(reclaimed), int(work)

    def _do_try_to_free_pages(self) -> tuple[int, int]:
        if self.check_batches:
            return super()._do_try_to_free_pages()
        arrays, order = self._enter()
        reclaimed, work = rk.direct_reclaim(arrays, self._s, self._mms, order, self._stats,
                                            self._log)
        self._leave()
        return int(reclaimed), int(work)

    def _batch(self, active: bool, count: int, lru: int, sc: ScanControl) -> int:
        arrays, order = self._enter()
        scs = rk.new_scan_control(sc.kswapd, sc.nr_to_reclaim)
        if active:
            rk.shrink_active_batch(arrays, self._s, self._mms, order, count, lru, scs,
                                   self._stats, self._log)
            reclaimed = 0
        else:
            reclaimed = int(rk.shrink_inactive_batch(arrays, self._s, self._mms, order, count,
                                                     lru, scs, self._stats, self._log))
        self._leave()
        sc.nr_scanned += int(scs[rk.SC_NR_SCANNED])
        sc.work += int(scs[rk.SC_WORK])
        if self.check_batches:
            self.check()
        return reclaimed

    def shrink_active_list(self, count: int, lru: int, sc: ScanControl) -> None:
        self._batch(True, count, lru, sc)

    def shrink_inactive_list(self, count: int, lru: int, sc: ScanControl) -> int:
        return self._batch(False, count, lru, sc)

    # ------------------------------------------------------------------ swap-in

    def _swapin_done(self, request: SwapRead) -> None:
        """The pages of a completed swap read, compiled (with a host, each page is first
        written back into guest memory by the host: the reference loop does that)."""
        kernel = self.kernel
        if kernel.executor.host is not None:
            super()._swapin_done(request)
            return
        swap = self.swap
        assert swap is not None
        for slot in request.slots:
            swap.pending.pop(slot, None)
        arrays, _ = self._enter(tables=False)
        rk.swapin_done(arrays, self._s, np.array(request.slots, dtype=np.int64),
                       np.array(request.frames, dtype=np.int64), self._stats, self._log)
        self._leave()
        self._wake(request)
