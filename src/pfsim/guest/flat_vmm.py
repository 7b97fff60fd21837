"""The flat VMM: one Linux-like page table per process (:mod:`pfsim.guest.mm`).

Fork copies every present PTE and write-protects private writable pages in parent and child;
each copied frame gains a reference, so a later write copies while the page is shared and
reuses it once exclusive (mm/memory.c ``do_wp_page``; Linux scenario 21 of docs/scenarios.md).
munmap and exec drop the pages of whole VMAs.  Faults go to
:class:`~pfsim.guest.fault.FaultHandler`; accesses run in the compiled loop of
:mod:`pfsim.machine.scan`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest.memory import PhysMem
from pfsim.guest.mm import TASK_SIZE_MAX, AddressSpace, Vma
from pfsim.guest.vmm import Vmm
from pfsim.machine.frames import ANON, FREE, PAGECACHE, ZERO_GFN
from pfsim.machine.pte import PTE_EXEC, PTE_NOVMA, PTE_PRESENT, PTE_SWAP, PTE_WRITE
from pfsim.machine.scan import (
    OUT_ALLOCATED,
    OUT_COW_REUSES,
    OUT_EPT,
    OUT_MIN_FLT,
    OUT_RSS,
    OUT_STALL,
    OUT_TIME,
    run_accesses,
)
from pfsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pfsim.config.schema import Config, ProcessConfig
    from pfsim.guest.fault import Access, FaultResult
    from pfsim.guest.kernel import GuestKernel
    from pfsim.guest.process import Process
    from pfsim.guest.steps import TaskExec


class FlatVmm(Vmm):
    """The flat kernel's VMM.

    Args:
        kernel: the guest kernel.
    """

    logs_faults = True

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self._nfree_view = np.zeros(2, dtype=np.int64)

    @classmethod
    def new_memory(cls, config: Config) -> PhysMem:
        guest = config.guest
        return PhysMem(guest.memory // PAGE_SIZE, max(1, guest.mm.kernel_reserved // PAGE_SIZE))

    # ------------------------------------------------------------------ processes

    def attach_process(self, process: Process, proc: ProcessConfig) -> None:
        """Nothing to do: the process's page table came with its address space."""

    def release_process(self, process: Process) -> None:
        mm = process.mm
        used = mm.used_slots()
        gfn = mm.gfn[used]
        self._free_swap(gfn)
        self.kernel.mem.put_many(gfn[gfn >= 0])
        gfn[:] = -1
        mm.rss = 0
        for vma in mm.vmas:  # exit_mmap -> free_pgtables: every leaf and node goes
            mm.free_vma_tables(vma)

    def thread_exit(self, texec: TaskExec) -> None:
        """Nothing to do: a thread's stack stays in its process's address space."""

    def fork(self, cpu: int, texec: TaskExec, child: Process, step: Any, t: int) -> int:
        """copy_page_range: share every present page; write-protect private writable ones."""
        kernel = self.kernel
        parent_mm, mm = texec.process.mm, child.mm
        used = mm.used_slots()
        present = (mm.state[used] & PTE_PRESENT) != 0
        protected = 0
        for vma in mm.vmas:
            if vma.shared:
                continue
            sl = mm.vma_slots(vma)
            writable = sl[present[sl] & ((mm.state[sl] & PTE_WRITE) != 0)]
            protected += int(writable.size)
            mm.state[writable] &= ~np.uint8(PTE_WRITE)
            parent_mm.state[writable] &= ~np.uint8(PTE_WRITE)
        frames = mm.gfn[used][present]
        frames = frames[frames != ZERO_GFN]
        np.add.at(kernel.mem.refcount, frames, 1)
        if kernel.reclaim is not None and kernel.reclaim.swap is not None:
            # copy_nonpresent_pte: the child's swap PTEs share the parent's slots
            kernel.reclaim.swap.duplicate(-2 - mm.gfn[(mm.state & PTE_SWAP) != 0].astype(np.int64))
        mm.rss = int(frames.size)
        costs = kernel.config.guest.costs
        cost = costs.fork + costs.fork_page * int(np.count_nonzero(present))
        if protected:
            cost += kernel.shootdown_cost(texec)
        return cost

    def munmap(self, cpu: int, texec: TaskExec, name: str) -> int:
        vma = next(v for v in texec.process.mm.vmas if v.name == name)
        self._unmap(texec.process.mm, vma, keep=False)
        return self.kernel.shootdown_cost(texec)

    def exec(self, cpu: int, texec: TaskExec) -> int:
        process = texec.process
        for vma in process.mm.vmas:
            keep = vma.type in ("code", "data") or vma is texec.stack
            self._unmap(process.mm, vma, keep)
        return 0

    def _unmap(self, mm: AddressSpace, vma: Vma, keep: bool) -> None:
        """Drop every page of ``vma``; without ``keep`` the VMA itself goes (nothing valid
        remains: later accesses are SEGV_MAPERR)."""
        sl = mm.vma_slots(vma)
        frames = mm.gfn[sl]
        self._free_swap(frames)
        mm.rss -= self.kernel.mem.put_many(frames[frames >= 0])
        mm.gfn[sl] = -1
        if not keep:
            vma.start = vma.end  # nothing valid remains: later accesses are SEGV_MAPERR
        mm.free_vma_tables(vma)  # its leaves are empty now (free_pgtables)

    def _free_swap(self, gfns: np.ndarray) -> None:
        """Swap entries among ``gfns`` (-2 - slot) lose their PTEs (zap_pte_range)."""
        reclaim = self.kernel.reclaim
        if reclaim is not None and reclaim.swap is not None:
            entries = gfns[gfns <= -2]
            if entries.size:
                reclaim.free_swap_entries(-2 - entries.astype(np.int64))

    # ------------------------------------------------------------------ the executor's calls

    def scan(self, cpu: int, texec: TaskExec, t: int, end: int, limit: int, out: np.ndarray,
             log: np.ndarray) -> tuple[int, int]:
        """Run the compiled loop; apply its fault counts now (the page table already changed)."""
        executor = self.kernel.executor
        mm = texec.process.mm
        mem = self.kernel.mem
        out[:] = 0
        reclaim = self.kernel.reclaim
        # the fast path allocates only above the low watermark (get_page_from_freelist with
        # ALLOC_WMARK_LOW): the loop sees ``reserve`` fewer free frames, hidden from the top
        # of the free stack, which is compacted afterwards
        reserve = reclaim.scan_reserve() if reclaim is not None else 0
        n0, wm0 = int(mem.nfree[0]), int(mem.nfree[1])
        stacked0 = n0 - (mem.nframes - wm0)
        view = self._nfree_view
        view[0], view[1] = max(0, n0 - reserve), wm0
        stop = run_accesses(texec.slots, texec.writes, texec.pos, end, t, texec.think,
                            texec.spent, limit,
                            mm.state, mm.gfn, mm.vflags, mem.refcount, mem.kind, mem.free_stack,
                            view, executor.costs, executor.zero_page,
                            executor.fast, texec.fetch, out, log, executor.host is not None,
                            *executor.host_arrays, self.kernel.latency)
        if n0 > reserve:
            taken = max(0, n0 - reserve) - int(view[0])
            wm1 = int(view[1])
            from_stack = taken - (wm1 - wm0)
            top = stacked0 - reserve  # the loop popped stack entries below the hidden ones
            popped = mem.free_stack[top - from_stack:top][::-1].copy() if from_stack else \
                np.zeros(0, dtype=mem.free_stack.dtype)
            if from_stack and stacked0 > top:
                hidden = mem.free_stack[top:stacked0].copy()
                mem.free_stack[top - from_stack:stacked0 - from_stack] = hidden
            mem.nfree[0] = n0 - taken
            mem.nfree[1] = wm1
            popped = np.concatenate([popped.astype(np.int64), np.arange(wm0, wm1, dtype=np.int64)])
        else:
            popped = np.zeros(0, dtype=np.int64)
        if reclaim is not None:
            reclaim.after_scan(mm, texec.slots[texec.pos:stop], popped)
        faults = int(out[OUT_MIN_FLT])
        if faults:
            counters = texec.counters
            counters.min_flt += faults
            counters.pgfault += faults
            counters.local_pgfault_nr += faults
            counters.cow_reuses += int(out[OUT_COW_REUSES])
            mem.allocated_total += int(out[OUT_ALLOCATED])
            mm.rss += int(out[OUT_RSS])
        if out[OUT_EPT]:
            executor.host.first_touches(cpu, int(out[OUT_EPT]), int(out[OUT_STALL]))
        return int(out[OUT_TIME]), stop

    def usable(self, cpu: int, texec: TaskExec, slot: int, write: bool, fetch: bool,
               t: int) -> bool:
        need = PTE_PRESENT | (PTE_WRITE if write else 0) | (PTE_EXEC if fetch else 0)
        return (int(texec.process.mm.state[slot]) & need) == need

    def touch_allowed(self, cpu: int, texec: TaskExec, access: Access, t: int) -> bool:
        kernel = self.kernel
        if access.addr >= TASK_SIZE_MAX:
            return not access.user and kernel.faults.kernel_mapped(access.addr)
        if not access.user and not access.fixup and kernel.smap:
            return False
        slot = texec.process.mm.slot_of(access.addr)
        need = PTE_PRESENT | (PTE_WRITE if access.write else 0)
        return slot >= 0 and (int(texec.process.mm.state[slot]) & need) == need

    def exception(self, cpu: int, texec: TaskExec, access: Access, t: int) -> FaultResult:
        return self.kernel.faults.exc_page_fault(texec, access)

    def fault_in_progress(self, cpu: int, now: int) -> int:
        """0: an interrupt is taken at once (the flat loop keeps no fault spans)."""
        return 0

    def core_halted(self, cpu: int, detail: dict[str, Any]) -> None:
        """Never called: the flat fault path has no Action.HALT."""

    def woken_retry(self, texec: TaskExec) -> int:
        slot = texec.tried_slot
        if slot < 0 or not texec.process.mm.state[slot] & PTE_PRESENT:
            return 0
        return self.kernel.faults.resolved_retry(texec)

    def check_invariants(self) -> None:
        """A frame's reference count is the number of live PTEs mapping it, plus one while it
        is in the page cache; nothing else holds a frame (fork shares pages by references, COW
        drops them); then the frame allocator's own checks."""
        kernel = self.kernel
        mem = kernel.mem
        used = mem.watermark  # no frame from here up was ever allocated
        expected = np.zeros(used, dtype=np.int64)
        for process in kernel.processes:
            if process.alive:
                slots = process.mm.used_slots()
                frames = process.mm.gfn[slots][(process.mm.state[slots] & PTE_PRESENT) != 0]
                np.add.at(expected, frames[frames != 0], 1)
        for file in kernel.files.values():
            cached = file.frame[file.frame >= 0]
            np.add.at(expected, cached, 1)
        if kernel.reclaim is not None:
            kernel.reclaim.cache_refs(expected)
        kind, refcount = mem.kind[:used], mem.refcount[:used]
        cache = kind == PAGECACHE  # a frame being read in is not in its file yet: >=
        bad = (((kind == ANON) & (refcount != expected)) | (cache & (refcount < expected)))
        if bad.any():
            frame = int(np.argmax(bad))
            raise InvariantViolation(f"frame {frame}: refcount {int(refcount[frame])}, "
                                     f"{int(expected[frame])} mappings and cache references")
        if np.any(expected[kind == FREE]):
            raise InvariantViolation("a free frame is still mapped")
        mem.check()
        if kernel.reclaim is not None:
            kernel.reclaim.check()

    # ------------------------------------------------------------------ results

    def process_result(self, process: Process) -> dict[str, Any]:
        return {}

    def vm_result(self) -> dict[str, Any] | None:
        return None
