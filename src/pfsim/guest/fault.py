"""The x86 page-fault entry and the generic fault handler, after arch/x86/mm/fault.c and
mm/memory.c (``exc_page_fault``, ``do_user_addr_fault``, ``access_error``; ``handle_mm_fault``).

:meth:`FaultHandler.exc_page_fault` takes one refused access and returns what the faulting
context must do next (:class:`FaultResult`): re-execute the access, sleep on a read, receive
SIGSEGV, return -EFAULT from a uaccess, or oops.  Counting follows ``mm_account_fault``: a
fault that returns RETRY (waits for I/O) counts nothing; its retry carries FAULT_FLAG_TRIED and
counts as major; an access error counts neither min nor maj.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from pfsim.guest.mm import PAGE_OFFSET, TASK_SIZE_MAX, AddressSpace, Vma
from pfsim.guest.pagecache import ReadRequest
from pfsim.machine.frames import ANON, PAGECACHE, ZERO_GFN
from pfsim.machine.pte import PTE_EXEC, PTE_NOVMA, PTE_PRESENT, PTE_WRITE, PTE_ZERO
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
        self.direct_map_end = PAGE_OFFSET + kernel.config.guest.memory
        self.touched: list[int] = []
        """Frames the handler wrote or read in kernel mode (zeroing, copying)."""

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
        tried = texec.tried_slot == slot
        texec.tried_slot = -1
        if pte & PTE_PRESENT:
            need = PTE_PRESENT | (PTE_WRITE if access.write else 0) | (PTE_EXEC if access.fetch else 0)
            if (pte & need) == need:  # another thread resolved it meanwhile: nothing to do
                return self._count(texec, FaultResult(Action.RETRY, cost), major=tried)
            result = self.do_wp_page(texec, vma, slot, access, cost)
        elif vma.anonymous:
            result = self.do_anonymous_page(texec, vma, slot, access, cost)
        else:
            result = self.do_fault(texec, vma, slot, access, cost)
        if result.action is Action.WAIT_IO:
            texec.tried_slot = slot
            return result
        if result.action is Action.KILLED:
            return result
        return self._count(texec, result, major=tried or bool(result.detail and result.detail.get("major")))

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
        mm.gfn[slot] = gfn
        mm.state[slot] = bits
        if gfn != ZERO_GFN:
            mm.rss += 1

    def do_anonymous_page(self, texec: TaskExec, vma: Vma, slot: int, access: Access,
                          cost: int) -> FaultResult:
        """First touch of anonymous memory: the zero page on a read, a zeroed page on a write."""
        mm = texec.process.mm
        exec_bit = PTE_EXEC if vma.executable else 0
        if not access.write and self.zero_page:
            mm.gfn[slot] = ZERO_GFN
            mm.state[slot] = PTE_PRESENT | PTE_ZERO | exec_bit
            return FaultResult(Action.RETRY, cost + self.costs.zero_page)
        gfn = self._alloc(texec, ANON)
        if gfn < 0:
            return FaultResult(Action.KILLED, cost)
        self._map(mm, slot, gfn, vma.pte_bits())
        return FaultResult(Action.RETRY, cost + self.costs.anon_page)

    def do_wp_page(self, texec: TaskExec, vma: Vma, slot: int, access: Access, cost: int) -> FaultResult:
        """Write to a present, write-protected PTE: reuse, share-dirty or copy (mm/memory.c
        ``do_wp_page``)."""
        mm = texec.process.mm
        pte = int(mm.state[slot])
        gfn = int(mm.gfn[slot])
        if vma.shared:  # MAP_SHARED file page mapped read-only for dirty tracking
            mm.state[slot] = pte | PTE_WRITE
            return FaultResult(Action.RETRY, cost + self.costs.cow_reuse)
        mem = self.kernel.mem
        if pte & PTE_ZERO:  # write after the zero page: a new zeroed page, no copy
            new = self._alloc(texec, ANON)
            if new < 0:
                return FaultResult(Action.KILLED, cost)
            self._map(mm, slot, new, vma.pte_bits())
            return FaultResult(Action.RETRY, cost + self.costs.anon_page)
        if mem.kind[gfn] == ANON and mem.refcount[gfn] == 1:
            mm.state[slot] = vma.pte_bits()
            texec.counters.cow_reuses += 1
            return FaultResult(Action.RETRY, cost + self.costs.cow_reuse)
        new = self._alloc(texec, ANON)
        if new < 0:
            return FaultResult(Action.KILLED, cost)
        self.touched.append(gfn)  # the source page is read by the copy
        self._map(mm, slot, new, vma.pte_bits())
        texec.counters.cow_copies += 1
        return FaultResult(Action.RETRY, cost + self.costs.cow_copy + self.kernel.shootdown_cost(texec))

    def do_fault(self, texec: TaskExec, vma: Vma, slot: int, access: Access, cost: int) -> FaultResult:
        """File-backed fault: read (fault-around), private write (COW copy), shared write."""
        assert vma.file is not None
        page = vma.file_page(access.addr)
        file = vma.file
        if not file.cached(page):
            request = file.pending.get(page)
            if request is None:
                request = self.kernel.start_read(texec, file, page, self.ra_pages)
                if request is None:
                    return FaultResult(Action.KILLED, cost)
            return FaultResult(Action.WAIT_IO, cost, request=request)
        mm = texec.process.mm
        frame = int(file.frame[page])
        if file.readahead_mark[page]:  # filemap_fault → do_async_mmap_readahead
            self.kernel.async_readahead(texec, file, page, self.ra_pages)
        if access.write and not vma.shared:  # do_cow_fault: private copy of the file page
            new = self._alloc(texec, ANON)
            if new < 0:
                return FaultResult(Action.KILLED, cost)
            self.touched.append(frame)
            self._map(mm, slot, new, vma.pte_bits())
            return FaultResult(Action.RETRY, cost + self.costs.cow_copy)
        bits = PTE_PRESENT | (PTE_EXEC if vma.executable else 0)
        if access.write:  # do_shared_fault: the page cache page, writable and dirty
            bits |= PTE_WRITE
        self.kernel.mem.get(frame)
        self._map(mm, slot, frame, bits)
        extra = 0 if access.write else self._fault_around(mm, vma, access.addr, slot)
        return FaultResult(Action.RETRY, cost + self.costs.file_map + extra * self.costs.fault_around_page)

    def _fault_around(self, mm: AddressSpace, vma: Vma, addr: int, fault_slot: int) -> int:
        """Map cached pages of the aligned window around ``addr`` (read-only, uncounted)."""
        window = self.fault_around_pages
        if window <= 1:
            return 0
        assert vma.file is not None
        vpn = addr >> PAGE_SHIFT
        first = max(vpn & ~(window - 1), vma.start >> PAGE_SHIFT)
        last = min((vpn & ~(window - 1)) + window, vma.end >> PAGE_SHIFT)
        bits = PTE_PRESENT | (PTE_EXEC if vma.executable else 0)
        mapped = 0
        for other in range(first, last):
            slot = vma.slot(other << PAGE_SHIFT)
            if slot == fault_slot or mm.state[slot] & (PTE_PRESENT | PTE_NOVMA):
                continue
            page = vma.file_page(other << PAGE_SHIFT)
            if page >= vma.file.npages or not vma.file.cached(page) or vma.file.readahead_mark[page]:
                continue  # filemap_map_pages skips uncached and PG_readahead pages
            frame = int(vma.file.frame[page])
            self.kernel.mem.get(frame)
            self._map(mm, slot, frame, bits)
            mapped += 1
        return mapped


__all__ = ["Access", "Action", "FaultHandler", "FaultResult", "PAGECACHE", "X86_PF_INSTR",
           "X86_PF_PROT", "X86_PF_RSVD", "X86_PF_USER", "X86_PF_WRITE"]
