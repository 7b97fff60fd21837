"""x86 KVM async page fault, host side: tokens, the gfn hash, not-present and page-ready, ACK.

Protocol (Linux v6.6-v6.15; src: arch/x86/kvm/mmu/mmu.c ``__kvm_mmu_faultin_pfn``,
``kvm_arch_setup_async_pf``, ``alloc_apf_token``; arch/x86/kvm/x86.c ``kvm_can_do_async_pf``,
``kvm_can_deliver_async_pf``, ``kvm_arch_async_page_not_present``,
``kvm_arch_async_page_present``, ``kvm_arch_async_page_present_queued``,
``kvm_arch_can_dequeue_async_page_present``, ``kvm_pv_enable_async_pf``, the
MSR_KVM_ASYNC_PF_* handlers, ``vcpu_enter_guest``; virt/kvm/async_pf.c for the work items)::

    host fault needing I/O on gfn (vCPU v):
        prefetch or not kvm_can_do_async_pf          -> synchronous (vCPU thread waits the I/O)
        gfn already in v's gfn hash                   -> KVM_REQ_APF_HALT, no new item
        token = (id++ << 12) | v   (id forced to 1 when id << 12 wraps to 0)
        kvm_setup_async_pf refused (queued >= 64 ...) -> synchronous
        gfn into the hash; PV on (ENABLED + DELIVERY_AS_INT) and not (send_user_only and CPL 0)
            -> flags = PAGE_NOT_PRESENT, #PF(token) injected   (notpresent_injected)
            else KVM_REQ_APF_HALT
    worker returns        -> item on done; KVM_REQ_APF_READY only if done was empty
    entry with APF_READY, or ACK write (pageready_pending = False) ->
        while done and (PV off or guest token slot == 0): pop, prefault, drop gfn from the hash,
            if (notpresent_injected or wakeup_all) and PV on: slot = token (~0 for wakeup_all),
            pageready_pending = True, raise the page-ready vector; always clear apf.halted

The guest-visible ``kvm_vcpu_pv_apf_data`` is :class:`~pfsim.machine.apf_kvm_abi.PvApfData`;
the guest owns it and hands it over with the MSR_KVM_ASYNC_PF_EN write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.apf_gfn_hash import GfnHash
from pfsim.hypervisor.async_pf import AsyncPfQueues, AsyncPfWork, SetupFailure
from pfsim.machine.apf_kvm_abi import (
    BROADCAST_TOKEN,
    KVM_ASYNC_PF_DELIVERY_AS_INT,
    KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT,
    KVM_ASYNC_PF_ENABLED,
    KVM_ASYNC_PF_SEND_ALWAYS,
    KVM_PV_REASON_PAGE_NOT_PRESENT,
    U32,
    PvApfData,
)
from pfsim.machine.checked import checked

_PV_ENABLED = KVM_ASYNC_PF_ENABLED | KVM_ASYNC_PF_DELIVERY_AS_INT


class X86FaultOutcome(Enum):
    """What ``page_fault`` decided; each value says what the caller must do next."""

    SYNC = "sync"
    """Synchronous fallback: the vCPU thread waits in the host for the whole I/O; the guest
    makes no progress and takes no interrupts meanwhile."""
    APF_HALT_REPEATED = "apf_halt_repeated"
    """The gfn is already outstanding on this vCPU: no new item; KVM_REQ_APF_HALT is pending, so
    the next :meth:`KvmApfHost.enter_guest` halts the vCPU."""
    ASYNC_INJECTED = "async_injected"
    """Work item queued (the caller starts its worker; the I/O was already submitted) and
    #PF(token) with PAGE_NOT_PRESENT is injected: on the next entry the guest's #PF entry must
    run ``KvmApfGuest.handle_async_pf`` with cr2 = token."""
    ASYNC_HALTED = "async_halted"
    """Work item queued (the caller starts its worker) but not injected (CPL 0 / PV off):
    KVM_REQ_APF_HALT is pending; no page-ready will ever be delivered for this item."""


@dataclass(frozen=True)
class X86FaultContext:
    """The vCPU's state at the host fault (inputs of ``kvm_can_do_async_pf`` and friends)."""

    cpl: int = 3
    interrupts_allowed: bool = True
    """``kvm_arch_interrupt_allowed``: IF=1 and no STI/MOV-SS shadow."""
    event_needs_reinjection: bool = False
    exception_pending: bool = False
    guest_mode: bool = False
    """The fault came from a nested (L2) guest."""
    paging: bool = True
    prefetch: bool = False
    hva_error: bool = False
    direct_map: bool = True
    cr3: int = 0


@dataclass(frozen=True)
class X86FaultResult:
    """Result of :meth:`KvmApfHost.page_fault`."""

    outcome: X86FaultOutcome
    token: int | None = None
    work: AsyncPfWork | None = None
    reason: str | None = None
    """Why the fault went synchronous (``cannot_do_async:<detail>``, ``prefetch`` or a
    :class:`SetupFailure` value)."""


@dataclass(frozen=True)
class Completion:
    """One item processed by ``kvm_check_async_pf_completion``.

    The caller must: if ``prefault_gfn`` is set, run the prefetch fault for it (map the page if
    the host has it, so the retry does not exit again); if ``page_ready``, raise ``vector`` on
    the vCPU's LAPIC (the guest then runs ``KvmApfGuest.page_ready_interrupt``); the vCPU is no
    longer APF-halted either way.
    """

    work: AsyncPfWork
    token: int
    prefault_gfn: int | None
    page_ready: bool
    vector: int


@dataclass(frozen=True)
class WorkDone:
    """Result of :meth:`KvmApfHost.work_done`.

    The caller must wake the vCPU thread if it is blocked (``__kvm_vcpu_wake_up``: it re-checks
    :meth:`KvmApfHost.runnable`) and, if ``kick``, force a running vCPU out of the guest so the
    APF_READY request is seen.  ``clear_finished``: a vCPU thread blocked in a clear may resume.
    """

    apf_ready_requested: bool
    kick: bool
    clear_finished: bool


@dataclass(frozen=True)
class EnterResult:
    """Result of :meth:`KvmApfHost.enter_guest`.

    ``entered`` False: KVM_REQ_APF_HALT was consumed, the vCPU is APF-halted: the caller blocks
    the vCPU thread until :meth:`KvmApfHost.runnable` is true, then calls
    :meth:`KvmApfHost.unblock` and enters again.  ``completions`` as in :class:`Completion`.
    """

    entered: bool
    completions: list[Completion] = field(default_factory=list)


@dataclass(frozen=True)
class MsrResult:
    """Result of an MSR write: ``gp`` means #GP injected (the value was not stored).

    ``wait_for``: the vCPU thread is blocked in a queue clear until each item's worker returns
    (report them with :meth:`KvmApfHost.work_done`).  ``completions``: page-ready work done
    right away (ACK), handled as in :class:`Completion`.  ``apf_ready_requested``: a
    wakeup_all item is queued and KVM_REQ_APF_READY is pending.
    """

    gp: bool = False
    wait_for: list[AsyncPfWork] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    apf_ready_requested: bool = False


class X86VcpuApf:
    """``vcpu->arch.apf`` plus the two APF requests of one vCPU."""

    __slots__ = ("vcpu_id", "msr_en_val", "msr_int_val", "vec", "id", "send_user_only",
                 "delivery_as_pf_vmexit", "pageready_pending", "halted", "area", "gfns",
                 "req_apf_halt", "req_apf_ready", "sync_faults", "repeated_faults",
                 "notpresent_injected", "pageready_injected", "wakeups_queued", "warnings")

    def __init__(self, vcpu_id: int) -> None:
        self.vcpu_id = vcpu_id
        self.msr_en_val = 0
        self.msr_int_val = 0
        self.vec = 0
        self.id = 0
        self.send_user_only = True
        self.delivery_as_pf_vmexit = False
        self.pageready_pending = False
        self.halted = False
        self.area: PvApfData | None = None
        self.gfns = GfnHash()
        self.req_apf_halt = False
        self.req_apf_ready = False
        self.sync_faults = 0
        self.repeated_faults = 0
        self.notpresent_injected = 0
        self.pageready_injected = 0
        self.wakeups_queued = 0
        self.warnings: list[str] = []

    @property
    def pv_enabled(self) -> bool:
        """``kvm_pv_async_pf_enabled``: ENABLED and DELIVERY_AS_INT both set."""
        return (self.msr_en_val & _PV_ENABLED) == _PV_ENABLED


class KvmApfHost:
    """Host side of x86 async PF for one VM.

    Args:
        nvcpus: number of vCPUs (vcpu_id = index; it fills the token's low 12 bits).
        has_async_pf_int: CPUID ASYNC_PF_INT advertised (else DELIVERY_AS_INT and ACK #GP).
        has_async_pf_vmexit: CPUID ASYNC_PF_VMEXIT advertised.
        lapic_in_kernel: in-kernel LAPIC (required for any async PF).
        hlt_in_guest: HLT passthrough (then an APF halt is impossible).
        alloc_work: allocation hook for work items (False = GFP_NOWAIT failure).
        debug: check every invariant after every public call.
    """

    def __init__(self, nvcpus: int, *, has_async_pf_int: bool = True,
                 has_async_pf_vmexit: bool = True, lapic_in_kernel: bool = True,
                 hlt_in_guest: bool = False, alloc_work: Callable[[], bool] | None = None,
                 debug: bool = False) -> None:
        self.vcpus = [X86VcpuApf(i) for i in range(nvcpus)]
        self.queues = AsyncPfQueues(nvcpus, sync=False, alloc=alloc_work)
        self.has_async_pf_int = has_async_pf_int
        self.has_async_pf_vmexit = has_async_pf_vmexit
        self.lapic_in_kernel = lapic_in_kernel
        self.hlt_in_guest = hlt_in_guest
        self.debug = debug

    # ------------------------------------------------------------------ fault path

    def _can_deliver(self, v: X86VcpuApf, ctx: X86FaultContext) -> bool:
        """``kvm_can_deliver_async_pf``."""
        if not v.pv_enabled:
            return False
        if v.send_user_only and ctx.cpl == 0:
            return False
        return v.delivery_as_pf_vmexit if ctx.guest_mode else ctx.paging

    def _cannot_do_async(self, v: X86VcpuApf, ctx: X86FaultContext) -> str | None:
        """``kvm_can_do_async_pf`` negated: the reason, or None when async is possible."""
        if not self.lapic_in_kernel:
            return "no_lapic"
        if ctx.event_needs_reinjection:
            return "event_needs_reinjection"
        if ctx.exception_pending:
            return "exception_pending"
        if self.hlt_in_guest and not self._can_deliver(v, ctx):
            return "hlt_in_guest"
        if not ctx.interrupts_allowed:
            return "interrupts_not_allowed"
        return None

    @staticmethod
    def _alloc_token(v: X86VcpuApf) -> int:
        """``alloc_apf_token``: never 0; ``id`` wraps every 2**20 tokens."""
        if (v.id << 12) & U32 == 0:
            v.id = 1
        token = ((v.id << 12) | v.vcpu_id) & U32
        v.id = (v.id + 1) & U32
        return token

    @checked
    def page_fault(self, vcpu_id: int, gfn: int,
                   ctx: X86FaultContext = X86FaultContext()) -> X86FaultResult:
        """A guest access on ``gfn`` needs host I/O (the non-blocking attempt said NEEDS_IO).

        Returns:
            the decision; see :class:`X86FaultOutcome` for what the caller must do.
        """
        v = self._vcpu_thread(vcpu_id)
        refusal = "prefetch" if ctx.prefetch else self._cannot_do_async(v, ctx)
        if refusal is not None:
            v.sync_faults += 1
            reason = refusal if refusal == "prefetch" else f"cannot_do_async:{refusal}"
            return X86FaultResult(X86FaultOutcome.SYNC, reason=reason)
        if v.gfns.find(gfn):
            v.req_apf_halt = True
            v.repeated_faults += 1
            return X86FaultResult(X86FaultOutcome.APF_HALT_REPEATED)
        token = self._alloc_token(v)  # allocated even if the setup below is refused
        work = self.queues.setup(vcpu_id, gfn, gfn << 12, token, hva_error=ctx.hva_error,
                                 direct_map=ctx.direct_map, cr3=ctx.cr3)
        if isinstance(work, SetupFailure):
            v.sync_faults += 1
            return X86FaultResult(X86FaultOutcome.SYNC, token=token, reason=work.value)
        # kvm_arch_async_page_not_present
        v.gfns.add(gfn)
        if self._can_deliver(v, ctx) and v.area is not None:
            v.area.flags = KVM_PV_REASON_PAGE_NOT_PRESENT
            work.notpresent_injected = True
            v.notpresent_injected += 1
            return X86FaultResult(X86FaultOutcome.ASYNC_INJECTED, token=token, work=work)
        v.req_apf_halt = True
        return X86FaultResult(X86FaultOutcome.ASYNC_HALTED, token=token, work=work)

    # ------------------------------------------------------------------ worker

    @checked
    def work_started(self, work: AsyncPfWork) -> None:
        """The workqueue started ``async_pf_execute`` for ``work`` (it now blocks on the I/O)."""
        self.queues.work_started(work)

    @checked
    def work_done(self, work: AsyncPfWork) -> WorkDone:
        """``async_pf_execute`` returned (the page is in, or the fault failed: retried later)."""
        v = self.vcpus[work.vcpu_id]
        returned = self.queues.work_returned(work)
        kick = False
        if returned.first:  # kvm_arch_async_page_present_queued
            v.req_apf_ready = True
            kick = not v.pageready_pending
        return WorkDone(returned.first, kick, returned.clear_finished)

    # ------------------------------------------------------------------ vCPU loop

    def _can_dequeue(self, v: X86VcpuApf) -> bool:
        """``kvm_arch_can_dequeue_async_page_present``."""
        if not v.pv_enabled:
            return True
        return self.lapic_in_kernel and v.area is not None and v.area.token == 0

    @checked
    def check_completion(self, vcpu_id: int, direct_map: bool = True,
                         cr3: int = 0) -> list[Completion]:
        """``kvm_check_async_pf_completion`` (``direct_map``/``cr3``: the current MMU mode)."""
        v = self._vcpu_thread(vcpu_id)
        vcpu = self.queues.vcpus[vcpu_id]
        out: list[Completion] = []
        while vcpu.done and self._can_dequeue(v):
            work = self.queues.pop_done(vcpu_id)
            assert work is not None
            prefault = (not work.wakeup_all and work.direct_map == direct_map
                        and (direct_map or work.cr3 == cr3))
            if work.wakeup_all:
                token = BROADCAST_TOKEN
            else:
                token = work.token
                if not v.gfns.delete(work.gfn):
                    v.warnings.append(f"kvm_del_async_pf_gfn: gfn {work.gfn:#x} missing")
            injected = False
            if (work.wakeup_all or work.notpresent_injected) and v.pv_enabled and v.area:
                # INV-H4: only items whose not-present was injected, or wakeup_all, get here
                if v.area.token != 0:
                    raise InvariantViolation(f"INV-H5 vCPU {vcpu_id}: page-ready {token:#x}"
                                             f" over un-ACKed {v.area.token:#x}")
                v.area.token = token
                v.pageready_pending = True
                v.pageready_injected += 1
                injected = True
            v.halted = False
            self.queues.retire(work)
            out.append(Completion(work, token, work.gfn if prefault else None, injected, v.vec))
        return out

    @checked
    def enter_guest(self, vcpu_id: int, direct_map: bool = True, cr3: int = 0) -> EnterResult:
        """The APF part of ``vcpu_enter_guest``: KVM_REQ_APF_HALT first, then KVM_REQ_APF_READY."""
        v = self._vcpu_thread(vcpu_id)
        if v.halted:
            raise InvariantViolation(f"vCPU {vcpu_id} entered while APF-halted")
        if v.req_apf_halt:
            v.req_apf_halt = False
            v.halted = True
            return EnterResult(False)
        completions: list[Completion] = []
        if v.req_apf_ready:
            v.req_apf_ready = False
            completions = self.check_completion(vcpu_id, direct_map, cr3)
        return EnterResult(True, completions)

    def runnable(self, vcpu_id: int, interrupt_pending: bool = False) -> bool:
        """``kvm_arch_vcpu_runnable`` as far as APF is concerned: not halted, a completion is on
        ``done``, or (caller's knowledge) an interrupt is pending."""
        v = self.vcpus[vcpu_id]
        return not v.halted or bool(self.queues.vcpus[vcpu_id].done) or interrupt_pending

    @checked
    def unblock(self, vcpu_id: int) -> None:
        """``vcpu_block`` woke a runnable vCPU: ``apf.halted = false``."""
        self.vcpus[vcpu_id].halted = False

    # ------------------------------------------------------------------ MSRs

    @checked
    def msr_write_en(self, vcpu_id: int, data: int, area: PvApfData | None) -> MsrResult:
        """MSR_KVM_ASYNC_PF_EN (``kvm_pv_enable_async_pf``); ``area`` is the guest's shared area
        at the GPA in ``data`` (None: not in a memslot)."""
        v = self._vcpu_thread(vcpu_id)
        if data & 0x30:
            return MsrResult(gp=True)
        if not self.has_async_pf_vmexit and data & KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT:
            return MsrResult(gp=True)
        if not self.has_async_pf_int and data & KVM_ASYNC_PF_DELIVERY_AS_INT:
            return MsrResult(gp=True)
        if not self.lapic_in_kernel:
            return MsrResult(gp=bool(data))
        v.msr_en_val = data
        if not v.pv_enabled:
            wait = self.queues.clear(vcpu_id)
            v.gfns.reset()  # after the clear in Linux; nobody can look while the thread waits
            return MsrResult(wait_for=wait)
        if area is None:
            return MsrResult(gp=True)
        v.area = area
        v.send_user_only = not data & KVM_ASYNC_PF_SEND_ALWAYS
        v.delivery_as_pf_vmexit = bool(data & KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT)
        if self.queues.wakeup_all(vcpu_id, BROADCAST_TOKEN) is None:
            return MsrResult()
        v.wakeups_queued += 1
        v.req_apf_ready = True  # done was empty: kvm_arch_async_page_present_queued
        return MsrResult(apf_ready_requested=True)

    @checked
    def msr_write_int(self, vcpu_id: int, data: int) -> MsrResult:
        """MSR_KVM_ASYNC_PF_INT: the page-ready vector in bits 7:0."""
        v = self._vcpu_thread(vcpu_id)
        if data >> 8 or not self.lapic_in_kernel:
            return MsrResult(gp=True)
        v.msr_int_val = data
        v.vec = data & 0xFF
        return MsrResult()

    @checked
    def msr_write_ack(self, vcpu_id: int, data: int, direct_map: bool = True,
                      cr3: int = 0) -> MsrResult:
        """MSR_KVM_ASYNC_PF_ACK: bit 0 clears ``pageready_pending`` and dequeues more."""
        v = self._vcpu_thread(vcpu_id)
        if not self.has_async_pf_int:
            return MsrResult(gp=True)
        if not data & 1:
            return MsrResult()
        v.pageready_pending = False
        return MsrResult(completions=self.check_completion(vcpu_id, direct_map, cr3))

    # ------------------------------------------------------------------ reset, teardown

    def _clear(self, vcpu_id: int) -> list[AsyncPfWork]:
        wait = self.queues.clear(vcpu_id)
        self.vcpus[vcpu_id].gfns.reset()
        return wait

    @checked
    def vcpu_reset(self, vcpu_id: int, init_event: bool = False) -> list[AsyncPfWork]:
        """``kvm_vcpu_reset``: clear the queue and the gfn hash, unhalt; a full reset
        (``init_event`` False) also zeroes the MSR values.

        Returns:
            items the vCPU thread must wait for (see :meth:`AsyncPfQueues.clear`).
        """
        self._vcpu_thread(vcpu_id)
        wait = self._clear(vcpu_id)
        v = self.vcpus[vcpu_id]
        v.halted = False
        if not init_event:
            v.msr_en_val = 0
            v.msr_int_val = 0
            v.vec = 0
        return wait

    @checked
    def paging_toggled(self, vcpu_id: int) -> list[AsyncPfWork]:
        """``kvm_post_set_cr0`` with CR0.PG changed: clear the queue and the gfn hash."""
        self._vcpu_thread(vcpu_id)
        return self._clear(vcpu_id)

    @checked
    def destroy(self) -> dict[int, list[AsyncPfWork]]:
        """VM teardown: clear every vCPU's queue; nothing is injected.

        Returns:
            vcpu_id -> items teardown must wait for (only vCPUs with something to wait for).
        """
        waits = {}
        for v in self.vcpus:
            wait = self._clear(v.vcpu_id)
            if wait:
                waits[v.vcpu_id] = wait
        return waits

    def _vcpu_thread(self, vcpu_id: int) -> X86VcpuApf:
        if self.queues.vcpus[vcpu_id].clearing:
            raise InvariantViolation(f"vCPU {vcpu_id} thread acts while blocked in a queue clear")
        return self.vcpus[vcpu_id]

    # ------------------------------------------------------------------ queries, invariants

    def queued(self, vcpu_id: int) -> int:
        return self.queues.vcpus[vcpu_id].queued

    def outstanding(self, vcpu_id: int) -> list[AsyncPfWork]:
        """Items on the vCPU's ``queue`` (not yet completed on the vCPU)."""
        return list(self.queues.vcpus[vcpu_id].queue)

    def check_invariants(self) -> None:
        """INV-H1..H5 (listed in docs/hypervisor.md "Protocol invariants"); raises
        :class:`InvariantViolation`."""
        self.queues.check_invariants()  # H1, H3
        for v in self.vcpus:
            where = f"vCPU {v.vcpu_id}"
            v.gfns.check(where)
            hashed = sorted(v.gfns.contents().values())
            if len(hashed) != len(set(hashed)):
                raise InvariantViolation(f"INV-H2 {where}: a gfn is hashed twice: {hashed}")
            qv = self.queues.vcpus[v.vcpu_id]
            if qv.clearing:
                continue
            queued_gfns = sorted(w.gfn for w in qv.queue)
            if hashed != queued_gfns:
                raise InvariantViolation(
                    f"INV-H2 {where}: gfn hash {[hex(g) for g in hashed]} != queue"
                    f" {[hex(g) for g in queued_gfns]}")
            if v.pageready_injected > v.notpresent_injected + v.wakeups_queued:
                raise InvariantViolation(
                    f"INV-H4 {where}: {v.pageready_injected} page-ready injected for"
                    f" {v.notpresent_injected} not-present + {v.wakeups_queued} wakeup_all")
            if v.pv_enabled and v.area is not None and v.area.token and not v.pageready_pending:
                raise InvariantViolation(f"INV-H5 {where}: token {v.area.token:#x} in the slot"
                                         " but no page-ready pending")
