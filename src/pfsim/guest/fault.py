"""The x86 page-fault entry and the generic fault handler, after arch/x86/mm/fault.c and
mm/memory.c (``exc_page_fault``, ``do_user_addr_fault``, ``access_error``; ``handle_mm_fault``).

:meth:`FaultHandler.exc_page_fault` takes one refused access and returns what the faulting
context must do next (:class:`FaultResult`): re-execute the access, sleep on a read, receive
SIGSEGV, return -EFAULT from a uaccess, or oops.  Counting follows ``mm_account_fault`` of
Linux 6.18 on x86-64 (per-VMA locks): a fault that returns RETRY (waits for I/O) counts
nothing; its retry counts as major only when the first attempt itself started the read
(``filemap_fault`` found no folio and returned VM_FAULT_MAJOR, which ``do_user_addr_fault``
turns into FAULT_FLAG_TRIED), and as minor when it waited on a read already in flight; an
access error counts neither min nor maj.  File faults follow :mod:`pfsim.guest.readahead`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.guest.mm import PAGE_OFFSET, TASK_SIZE_MAX, AddressSpace, Vma
from pfsim.guest.pagecache import ReadRequest
from pfsim.guest.readahead import MAX_PAGECACHE_ORDER, Folio, Readahead
from pfsim.machine.frames import ANON, PAGECACHE, ZERO_GFN
from pfsim.machine.pte import (
    PTE_ACCESSED,
    PTE_EXEC,
    PTE_NOVMA,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_WRITE,
    PTE_ZERO,
)
from pfsim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel, TaskExec

# error-code bits (arch/x86/include/asm/trap_pf.h)
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4

SEGV_MAPERR = "SEGV_MAPERR"
SEGV_ACCERR = "SEGV_ACCERR"


class Action(Enum):
    """What the faulting context does after the handler."""

    RETRY = auto()  # re-execute the access (the page is now mapped, or was all along)
    WAIT_IO = auto()  # sleep uninterruptibly on ``request``, then re-execute (TRIED)
    SIGSEGV = auto()  # user access: the process is killed
    EFAULT = auto()  # kernel uaccess: exception-table fixup, the syscall returns -EFAULT
    OOPS = auto()  # kernel bug: the VM panics
    KILLED = auto()  # the faulting task died (OOM victim)
    HALT = auto()  # ALMOS-MKH KERNEL_PANIC: the faulting vCPU halts for good (cluster VMM)


@dataclass
class FaultResult:
    action: Action
    cost_ns: int
    request: ReadRequest | None = None
    detail: dict[str, Any] | None = None


@dataclass
class Access:
    """One refused access as the CPU reports it."""

    addr: int
    write: bool
    fetch: bool
    user: bool
    fixup: bool = True  # kernel mode only: the access site has an exception-table entry


class FaultHandler:
    """Fault entry and demand paging for one guest kernel."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.costs = kernel.config.guest.costs
        mm_cfg = kernel.config.guest.mm
        disk = kernel.config.guest.disk
        self.zero_page = mm_cfg.zero_page
        self.stack_guard_gap = mm_cfg.stack_guard_gap
        self.fault_around_pages = max(1, disk.fault_around // PAGE_SIZE)
        self.ra_pages = max(1, disk.readahead // PAGE_SIZE)
        self.max_order = MAX_PAGECACHE_ORDER if kernel.config.guest.pagecache.large_folios else 0
        self.direct_map_end = PAGE_OFFSET + kernel.config.guest.memory
        self._async_started = False
        self.touched: list[int] = []
        """Frames the handler wrote or read in kernel mode (zeroing, copying)."""
        self.stall_ns = 0
        """Time the handler spent in direct reclaim (the executor adds it to the fault)."""

    # ------------------------------------------------------------------ entry

    def error_code(self, mm: AddressSpace, access: Access) -> int:
        """The hardware error code of the fault ``access`` raises."""
        code = (X86_PF_WRITE if access.write else 0) | (X86_PF_USER if access.user else 0)
        code |= X86_PF_INSTR if access.fetch else 0
        if access.addr >= TASK_SIZE_MAX:
            if self.kernel_mapped(access.addr):
                code |= X86_PF_PROT  # present supervisor page
        else:
            slot = mm.slot_of(access.addr)
            if slot >= 0 and mm.state[slot] & PTE_PRESENT:
                code |= X86_PF_PROT
        return code

    def kernel_mapped(self, addr: int) -> bool:
        return PAGE_OFFSET <= addr < self.direct_map_end

    def exc_page_fault(self, texec: TaskExec, access: Access) -> FaultResult:
        """``exc_page_fault`` → ``handle_page_fault`` for one access of ``texec``'s task."""
        mm = texec.process.mm
        code = self.error_code(mm, access)
        cost = self.costs.entry
        if access.addr >= TASK_SIZE_MAX:
            return self.do_kern_addr_fault(texec, access, code, cost)
        return self.do_user_addr_fault(texec, access, code, cost)

    def do_kern_addr_fault(self, texec: TaskExec, access: Access, code: int, cost: int) -> FaultResult:
        """A fault on a kernel address: never spurious here; bad_area_nosemaphore."""
        if access.user:
            return self._sigsegv(texec, access, code, SEGV_MAPERR, cost)
        return self._fixup_or_oops(texec, access, code, cost, "unable to handle kernel paging request")

    def do_user_addr_fault(self, texec: TaskExec, access: Access, code: int, cost: int) -> FaultResult:
        """``do_user_addr_fault``: checks, VMA lookup, stack growth, access_error, handle_mm_fault."""
        if not access.user and access.fetch:
            return self._oops(texec, access, code, cost, "kernel tried to execute user memory")
        if not access.user and not access.fixup and self.kernel.smap:
            return self._oops(texec, access, code, cost,
                              "SMAP violation: supervisor access to user memory")
        mm = texec.process.mm
        vma = mm.find_vma(access.addr)
        if vma is None:
            return self._bad_area(texec, access, code, SEGV_MAPERR, cost)
        if access.addr < vma.start:
            if not (vma.growsdown and self._expand_stack(mm, vma, access.addr)):
                return self._bad_area(texec, access, code, SEGV_MAPERR, cost)
        if self._access_error(code, vma):
            return self._bad_area(texec, access, code, SEGV_ACCERR, cost)
        return self.handle_mm_fault(texec, vma, access, cost)

    def _expand_stack(self, mm: AddressSpace, vma: Vma, addr: int) -> bool:
        """``expand_stack_locked``: RLIMIT_STACK and the guard gap to the VMA below."""
        new_start = addr & ~(PAGE_SIZE - 1)
        if vma.end - new_start > vma.stack_max or new_start < vma.reserve_start:
            return False
        prev = mm.prev_vma(vma)
        if prev is not None and new_start - prev.end < self.stack_guard_gap:
            return False
        mm.expand_stack(vma, addr)
        return True

    @staticmethod
    def _access_error(code: int, vma: Vma) -> bool:
        """x86 ``access_error``: write needs VM_WRITE; a present-page read fault is an error."""
        if code & X86_PF_WRITE:
            return not vma.writable
        if code & X86_PF_PROT:
            return True
        return not (vma.readable or vma.writable or vma.executable)

    # ------------------------------------------------------------------ errors

    def _bad_area(self, texec: TaskExec, access: Access, code: int, si_code: str,
                  cost: int) -> FaultResult:
        if access.user:
            return self._sigsegv(texec, access, code, si_code, cost)
        return self._fixup_or_oops(texec, access, code, cost, "bad user access in kernel mode")

    def _sigsegv(self, texec: TaskExec, access: Access, code: int, si_code: str,
                 cost: int) -> FaultResult:
        texec.counters.segv += 1
        detail = {"signal": "SIGSEGV", "si_code": si_code, "address": hex(access.addr),
                  "error_code": code, "tid": texec.task.tid}
        return FaultResult(Action.SIGSEGV, cost + self.costs.signal, detail=detail)

    def _fixup_or_oops(self, texec: TaskExec, access: Access, code: int, cost: int,
                       reason: str) -> FaultResult:
        if access.fixup:
            texec.counters.efault += 1
            return FaultResult(Action.EFAULT, cost, detail={"address": hex(access.addr)})
        return self._oops(texec, access, code, cost, reason)

    def _oops(self, texec: TaskExec, access: Access, code: int, cost: int, reason: str) -> FaultResult:
        detail = {"reason": reason, "address": hex(access.addr), "error_code": code,
                  "tid": texec.task.tid, "task": texec.task.name}
        return FaultResult(Action.OOPS, cost, detail=detail)

    # ------------------------------------------------------------------ handle_mm_fault

    def handle_mm_fault(self, texec: TaskExec, vma: Vma, access: Access, cost: int) -> FaultResult:
        """Resolve a permitted fault; count it as ``mm_account_fault`` does (RETRY counts
        nothing)."""
        mm = texec.process.mm
        slot = vma.slot(access.addr)
        pte = int(mm.state[slot])
        tried = texec.tried_slot == slot  # FAULT_FLAG_TRIED: this is the retry of a wait
        major_retry = tried and texec.tried_major
        texec.tried_slot = -1
        texec.tried_major = False
        if pte & PTE_PRESENT:
            need = PTE_PRESENT | (PTE_WRITE if access.write else 0) | (PTE_EXEC if access.fetch else 0)
            if (pte & need) == need:  # another thread resolved it meanwhile: nothing to do
                return self._count(texec, FaultResult(Action.RETRY, cost), major=major_retry)
            result = self.do_wp_page(texec, vma, slot, access, cost)
        elif pte & PTE_SWAP:  # do_swap_page: a major fault unless the swap cache has the page
            assert self.kernel.reclaim is not None
            result = self.kernel.reclaim.do_swap_page(texec, vma, slot, access.write, cost)
        elif vma.anonymous:
            result = self.do_anonymous_page(texec, vma, slot, access, cost)
        else:
            result = self.do_fault(texec, vma, slot, access, cost, major_retry)
        if result.action is Action.WAIT_IO:
            texec.tried_slot = slot
            texec.tried_major = bool(result.detail and result.detail.get("major"))
            return result
        if result.action is Action.KILLED:
            return result
        # a synchronous swap-in (zram) read the page in this fault: VM_FAULT_MAJOR, no retry
        return self._count(texec, result,
                           major=major_retry or bool(result.detail and result.detail.get("major")))

    def resolved_retry(self, texec: TaskExec) -> int:
        """The retry of a fault that slept on a read finds the page already mapped (another
        thread mapped it): ``handle_mm_fault`` has nothing to do but the fault still counts,
        major when this fault started the read (``mm_account_fault``); its CPU time."""
        major = texec.tried_major
        texec.tried_slot = -1
        texec.tried_major = False
        self._count(texec, FaultResult(Action.RETRY, self.costs.entry), major=major)
        return self.costs.entry

    def _count(self, texec: TaskExec, result: FaultResult, major: bool) -> FaultResult:
        texec.counters.pgfault += 1
        if major:
            texec.counters.maj_flt += 1
        else:
            texec.counters.min_flt += 1
        texec.counters.local_pgfault_nr += 1
        return result

    def _alloc(self, texec: TaskExec, kind: int) -> int:
        gfn = self.kernel.alloc_frame(texec, kind)
        if gfn >= 0:
            self.touched.append(gfn)  # zeroed or copied into by the kernel
        return gfn

    def _map(self, mm: AddressSpace, slot: int, gfn: int, bits: int) -> None:
        old = int(mm.gfn[slot])
        if old >= 0 and old != ZERO_GFN:
            self.kernel.mem.put(old)
            mm.rss -= 1
        elif old <= -2 and self.kernel.reclaim is not None:  # reclaim swapped the source out
            self.kernel.reclaim.free_swap_entries(np.array([-2 - old]))
        mm.gfn[slot] = gfn
        mm.state[slot] = bits
        if gfn != ZERO_GFN:
            mm.rss += 1
            if self.kernel.reclaim is not None:  # the reverse-map hint of the page
                self.kernel.reclaim.rmap_note(mm, slot, gfn)

    def do_anonymous_page(self, texec: TaskExec, vma: Vma, slot: int, access: Access,
                          cost: int) -> FaultResult:
        """First touch of anonymous memory: the zero page on a read, a zeroed page on a write.
        The PTE is young from the start (x86's ``vm_page_prot`` holds _PAGE_ACCESSED), as the
        compiled access loop makes it: reclaim scanning before the retried access (kswapd
        preempting the task at the fault) finds it referenced."""
        mm = texec.process.mm
        exec_bit = PTE_EXEC if vma.executable else 0
        if not access.write and self.zero_page:
            mm.gfn[slot] = ZERO_GFN
            mm.state[slot] = PTE_PRESENT | PTE_ZERO | exec_bit | PTE_ACCESSED
            return FaultResult(Action.RETRY, cost + self.costs.zero_page)
        gfn = self._alloc(texec, ANON)
        if gfn < 0:
            return FaultResult(Action.KILLED, cost)
        self._map(mm, slot, gfn, vma.pte_bits() | PTE_ACCESSED)
        return FaultResult(Action.RETRY, cost + self.costs.anon_page)

    def do_wp_page(self, texec: TaskExec, vma: Vma, slot: int, access: Access, cost: int) -> FaultResult:
        """Write to a present, write-protected PTE: reuse, share-dirty or copy (mm/memory.c
        ``do_wp_page``)."""
        mm = texec.process.mm
        pte = int(mm.state[slot])
        gfn = int(mm.gfn[slot])
        if vma.shared:  # MAP_SHARED file page mapped read-only for dirty tracking
            mm.state[slot] = pte | PTE_WRITE
            if self.kernel.reclaim is not None:
                self.kernel.reclaim.set_dirty(gfn)
            return FaultResult(Action.RETRY, cost + self.costs.cow_reuse)
        mem = self.kernel.mem
        if pte & PTE_ZERO:  # write after the zero page: a new zeroed page, no copy
            new = self._alloc(texec, ANON)
            if new < 0:
                return FaultResult(Action.KILLED, cost)
            self._map(mm, slot, new, vma.pte_bits() | PTE_ACCESSED)
            return FaultResult(Action.RETRY, cost + self.costs.anon_page)
        reclaim = self.kernel.reclaim
        if mem.kind[gfn] == ANON and (mem.refcount[gfn] == 1 or (
                reclaim is not None and reclaim.try_free_swap(gfn))):
            mm.state[slot] = vma.pte_bits() | PTE_ACCESSED
            texec.counters.cow_reuses += 1
            return FaultResult(Action.RETRY, cost + self.costs.cow_reuse)
        new = self._alloc(texec, ANON)
        if new < 0:
            return FaultResult(Action.KILLED, cost)
        self.touched.append(gfn)  # the source page is read by the copy
        self._map(mm, slot, new, vma.pte_bits() | PTE_ACCESSED)
        texec.counters.cow_copies += 1
        return FaultResult(Action.RETRY, cost + self.costs.cow_copy + self.kernel.shootdown_cost(texec))

    def do_fault(self, texec: TaskExec, vma: Vma, slot: int, access: Access, cost: int,
                 tried: bool = False) -> FaultResult:
        """A fault on a file page (mm/memory.c ``do_fault``): ``do_read_fault`` (fault-around
        first, then ``filemap_fault`` and ``finish_fault``), ``do_cow_fault`` (private write:
        copy), ``do_shared_fault`` (shared write: the page-cache page, writable)."""
        assert vma.file is not None
        mm = texec.process.mm
        read = not access.write
        if read and self.fault_around_pages > 1:
            mapped, hit = self._fault_around(mm, vma, access.addr)
            if hit:
                return self._mapped(cost, mapped)
        waited = self._filemap_fault(texec, vma, access.addr, tried)
        if waited is not None:
            waited.cost_ns = cost
            return waited
        file = vma.file
        page = vma.file_page(access.addr)
        if read and self._async_started and self.fault_around_pages > 1:
            # filemap_fault dropped the lock for the readahead and returned RETRY: the retry
            # (minor, not TRIED) maps the page through fault-around, its folio unmarked now
            mapped, hit = self._fault_around(mm, vma, access.addr)
            if hit:
                return self._mapped(cost, mapped)
        frame = int(file.frame[page])
        if access.write and not vma.shared:  # do_cow_fault: private copy of the file page
            new = self._alloc(texec, ANON)
            if new < 0:
                return FaultResult(Action.KILLED, cost)
            self.touched.append(frame)
            self._map(mm, slot, new, vma.pte_bits() | PTE_ACCESSED)
            return FaultResult(Action.RETRY, cost + self.costs.cow_copy)
        if access.write:  # do_shared_fault: the page cache page, writable and dirty
            self.kernel.mem.get(frame)
            self._map(mm, slot, frame, PTE_PRESENT | PTE_WRITE | PTE_ACCESSED
                      | (PTE_EXEC if vma.executable else 0))
            if self.kernel.reclaim is not None:
                self.kernel.reclaim.set_dirty(frame)
            return FaultResult(Action.RETRY, cost + self.costs.file_map)
        return self._mapped(cost, self._finish_fault(mm, vma, access.addr))

    def _mapped(self, cost: int, mapped: int) -> FaultResult:
        """A read fault that mapped ``mapped`` pages, the faulting one included."""
        extra = max(0, mapped - 1)
        return FaultResult(Action.RETRY, cost + self.costs.file_map + extra * self.costs.fault_around_page)

    def _filemap_fault(self, texec: TaskExec, vma: Vma, addr: int, tried: bool) -> FaultResult | None:
        """mm/filemap.c ``filemap_fault`` up to a locked, up-to-date folio: None when the page
        is cached (``_async_started`` tells whether PG_readahead started a window); WAIT_IO
        when the task must sleep on a read (``detail["major"]``: this fault started it)."""
        file = vma.file
        assert file is not None
        page = vma.file_page(addr)
        self._async_started = False
        if file.present(page):
            if not tried:  # do_async_mmap_readahead (not on a retry)
                head, npages = file.folio_of(page)
                marked = bool(file.readahead_mark[head])
                if marked:
                    file.readahead_mark[head] = False
                folios = Readahead(file, file.ra, self.max_order).async_mmap(
                    page, marked, npages, vma.advice)
                if folios:
                    self.kernel.add_folios(texec, file, folios, None)
                self._async_started = marked and vma.advice != "random" and file.ra.ra_pages > 0
            if file.cached(page):
                return None
            request = file.pending[page]  # a read in flight (readahead): wait, retry minor
            return FaultResult(Action.WAIT_IO, 0, request=request, detail={"major": False})
        # no folio at all: VM_FAULT_MAJOR, do_sync_mmap_readahead, then read the page itself
        folios = Readahead(file, file.ra, self.max_order).sync_mmap(
            page, vma.advice, vma.executable, vma.pgoff, vma.pgoff + vma.npages)
        if not any(f.index <= page < f.index + f.npages for f in folios):
            folios.append(Folio(page, 0))  # __filemap_get_folio(FGP_CREAT), filemap_read_folio
        request = self.kernel.add_folios(texec, file, folios, page)
        if request is None or page not in file.pending:
            return FaultResult(Action.KILLED, 0)
        return FaultResult(Action.WAIT_IO, 0, request=file.pending[page], detail={"major": True})

    def _map_file_pages(self, mm: AddressSpace, vma: Vma, first: int, last: int,
                        allowed: np.ndarray | None = None) -> int:
        """Map the cached file pages [first, last) of ``vma`` (those ``allowed`` when given)
        whose PTE is none, read-only (``set_pte_range``); returns how many were mapped."""
        file = vma.file
        assert file is not None
        # the pages' slots: contiguous only within a 512-slot leaf of the sparse table
        span = mm.slots_of(np.arange(last - first), (vma.start >> PAGE_SHIFT) + first - vma.pgoff)
        state = mm.state[span]
        frames = file.frame[first:last]
        todo = ((state & (PTE_PRESENT | PTE_NOVMA)) == 0) & (frames >= 0)
        if allowed is not None:
            todo &= allowed
        count = int(np.count_nonzero(todo))
        if count == 0:
            return 0
        slots = span[todo]
        new = frames[todo]
        old = mm.gfn[slots]
        for gfn in old[(old >= 0) & (old != ZERO_GFN)].tolist():  # stale entries (rare)
            self.kernel.mem.put(int(gfn))
            mm.rss -= 1
        mem = self.kernel.mem
        if np.any(mem.kind[new] != PAGECACHE):
            raise InvariantViolation("mapping a page-cache page that is not in the page cache")
        mem.refcount[new] += 1
        mm.gfn[slots] = new
        # young, the fault-around pages too: x86's vm_page_prot holds _PAGE_ACCESSED and only
        # arm64 wants prefaulted PTEs old (do_set_pte, arch_wants_old_prefaulted_pte)
        mm.state[slots] = PTE_PRESENT | PTE_ACCESSED | (PTE_EXEC if vma.executable else 0)
        mm.rss += count
        return count

    def _folio_span(self, vma: Vma, head: int, npages: int) -> bool:
        """The folio [head, head + npages) lies inside the VMA and inside one page table (no
        2 MiB boundary in between): ``folio_within_vma`` and the PMD check of
        ``filemap_map_folio_range`` / ``finish_fault``."""
        if head < vma.pgoff or head + npages > vma.pgoff + vma.npages:
            return False
        va0 = (vma.start >> PAGE_SHIFT) + (head - vma.pgoff)
        return (va0 >> 9) == ((va0 + npages - 1) >> 9)

    def _fault_around(self, mm: AddressSpace, vma: Vma, addr: int) -> tuple[int, bool]:
        """``do_fault_around`` → ``filemap_map_pages`` (Linux 6.18): the ``fault_around_bytes``
        window aligned around ``addr`` inside the VMA and its page table; every up-to-date
        folio there without PG_readahead is mapped, whole when it lies inside the VMA and one
        page table, else its pages inside the window.  Returns (pages mapped, whether the
        faulting page is now mapped)."""
        file = vma.file
        assert file is not None
        nr = self.fault_around_pages
        vpn = addr >> PAGE_SHIFT
        pte_off = vpn & 511
        vma_off = vpn - (vma.start >> PAGE_SHIFT)
        from_pte = max(pte_off & ~(nr - 1), pte_off - min(pte_off, vma_off))
        to_pte = min(from_pte + nr, 512, pte_off + vma.npages - vma_off) - 1
        page = vma.file_page(addr)
        start = page - (pte_off - from_pte)
        end = min(start + (to_pte - from_pte), file.npages - 1)
        mapped = 0
        p = start
        if not file.folio_order[start:end + 1].any():  # order-0 pages only: one pass
            allowed = ~file.readahead_mark[start:end + 1]
            mapped = self._map_file_pages(mm, vma, start, end + 1, allowed)
            p = end + 1
        while p <= end:
            head, npages = file.folio_of(p)
            if not file.cached(p) or file.readahead_mark[head]:
                p = head + npages  # next_uptodate_folio skips it
                continue
            if npages > 1 and self._folio_span(vma, head, npages):
                mapped += self._map_file_pages(mm, vma, head, head + npages)
            else:
                mapped += self._map_file_pages(mm, vma, p, min(head + npages, end + 1))
            p = head + npages
        if mapped:
            file.ra.mmap_miss = max(0, file.ra.mmap_miss - mapped)
        slot = vma.slot(addr)
        return mapped, bool(mm.state[slot] & PTE_PRESENT)

    def _finish_fault(self, mm: AddressSpace, vma: Vma, addr: int) -> int:
        """``finish_fault`` (Linux 6.18): map the whole folio when it lies inside the VMA and
        one page table, else the faulting page; returns the pages mapped."""
        file = vma.file
        assert file is not None
        page = vma.file_page(addr)
        head, npages = file.folio_of(page)
        if npages > 1 and self._folio_span(vma, head, npages):
            return self._map_file_pages(mm, vma, head, head + npages)
        return self._map_file_pages(mm, vma, page, page + 1)


__all__ = ["Access", "Action", "FaultHandler", "FaultResult", "PAGECACHE", "X86_PF_INSTR",
           "X86_PF_PROT", "X86_PF_RSVD", "X86_PF_USER", "X86_PF_WRITE"]
