"""s390 pfault, KVM host side: the DIAG 0x258 handshake, the async/sync decision, INIT and DONE.

Protocol (Linux v6.6-v6.15; src: arch/s390/kvm/diag.c ``__diag_page_ref_service``;
arch/s390/kvm/kvm-s390.c ``kvm_arch_setup_async_pf``, ``kvm_arch_async_page_not_present``,
``kvm_arch_async_page_present``, ``vcpu_pre_run``, ``kvm_arch_vcpu_ioctl_normal_reset``;
arch/s390/kvm/interrupt.c ``__inject_pfault_init``, ``__inject_pfault_done``,
``deliverable_irqs``, ``__deliver_pfault_init``, ``__deliver_pfault_done``)::

    DIAG 0x258 TOKEN (per vCPU): register token address + select/compare masks   rc 0 / 8
    DIAG 0x258 CANCEL:           token = INVALID (pending work and DONEs survive)  rc 0 / 4
    host fault needing I/O, gmap pfault on:
        async only if token valid, (PSW & select) == compare (user mode), PSW ext enabled,
        no interrupt pending, CR0 service-signal subclass on, token readable,
        generic setup ok (< 64 queued)      -> INIT(token) in the vCPU's single local slot
        else                                  -> pfault_sync++, the vCPU waits for the I/O
    worker returns (ASYNC_PF_SYNC)          -> floating DONE(token), VM-wide FIFO capped at
                                               64 * KVM_MAX_VCPUS, deliverable to any vCPU
    vCPU entry: free finished items; deliver INIT before DONE, one ext interrupt per entry,
                only with PSW ext enabled
    vCPU reset: token = INVALID, wait for all work, drop the INIT slot (floating DONEs stay)

Interrupts come out as :class:`S390ExtInterrupt`, which the guest executor hands to
``PfaultGuest.pfault_interrupt`` on the delivering CPU.  The interrupt codes, PSW and CR0 bits
and the DIAG 0x258 block both halves use are in :mod:`pfsim.machine.apf_s390_abi`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.async_pf import ASYNC_PF_PER_VCPU, AsyncPfQueues, AsyncPfWork, SetupFailure
from pfsim.machine.apf_s390_abi import (
    CR0_SERVICE_SIGNAL_SUBMASK,
    DIAG258_ZARCH,
    EXT_IRQ_CP_SERVICE,
    PFAULT_DONE,
    PFAULT_INIT,
    PSW_MASK_EXT,
    PfaultRefbk,
)
from pfsim.machine.checked import checked

KVM_S390_PFAULT_TOKEN_INVALID = (1 << 64) - 1
KVM_MAX_VCPUS = 255


class DiagResult(Enum):
    """Outcome of DIAG 0x258 for the caller.

    ``rc`` values are written to Ry and the guest continues; program interrupts are injected
    into the guest (its exception table then leaves its rc at -EOPNOTSUPP: pfault disabled);
    ``NOT_SUPPORTED`` exits to userspace (-EOPNOTSUPP).
    """

    OK = 0
    CANCEL_NOT_ACTIVE = 4
    TOKEN_ALREADY_SET = 8
    SPECIFICATION = "specification"
    ADDRESSING = "addressing"
    PRIVILEGED_OPERATION = "privileged_operation"
    NOT_SUPPORTED = "not_supported"

    @property
    def rc(self) -> int | None:
        """Value stored in Ry, or None when the DIAG did not complete normally."""
        return self.value if isinstance(self.value, int) else None


class S390SyncReason(Enum):
    """Why a host fault was not made asynchronous (first failing check, in kernel order)."""

    GMAP_PFAULT_DISABLED = "gmap_pfault_disabled"  # no non-blocking attempt at all: not counted
    TOKEN_INVALID = "token_invalid"
    NOT_SELECTED = "psw_select_compare"
    EXT_DISABLED = "ext_disabled"
    IRQ_PENDING = "irq_pending"
    SUBCLASS_DISABLED = "cr0_service_signal_off"
    TOKEN_READ_FAILED = "token_read_failed"
    QUEUE_FULL = SetupFailure.QUEUE_FULL.value
    ERROR_HVA = SetupFailure.ERROR_HVA.value
    NO_MEMORY = SetupFailure.NO_MEMORY.value


@dataclass(frozen=True)
class S390FaultResult:
    """Result of :meth:`PfaultHost.page_fault`.

    ``work`` set: asynchronous; the caller starts the worker for it (the I/O is already
    submitted) and the vCPU re-enters the guest, where :meth:`PfaultHost.pre_run` delivers the
    INIT.  ``work`` None: synchronous; the vCPU thread waits for the whole I/O (``reason``).
    """

    work: AsyncPfWork | None
    reason: S390SyncReason | None = None

    @property
    def is_async(self) -> bool:
        return self.work is not None


@dataclass(frozen=True)
class S390ExtInterrupt:
    """An external interrupt as the guest sees it: code, cpu-address field, ext_params2."""

    code: int
    subcode: int
    param64: int


@dataclass(frozen=True)
class S390WorkDone:
    """Result of :meth:`PfaultHost.work_done`.

    ``done_injected``: a floating DONE is pending; the caller kicks a vCPU (any one with
    external interrupts enabled) so its :meth:`PfaultHost.pre_run` delivers it.  False means
    the floating list was full (-EBUSY, Linux WARNs once): that DONE is lost.
    ``clear_finished``: a vCPU thread blocked in a queue clear may resume.
    """

    done_injected: bool
    clear_finished: bool


class S390VcpuPfault:
    """Per-vCPU pfault state: the handshake, the INIT slot and counters."""

    __slots__ = ("vcpu_id", "pfault_token", "pfault_select", "pfault_compare", "init_pending",
                 "pfault_sync", "diagnose_258", "init_injected", "init_delivered",
                 "init_discarded")

    def __init__(self, vcpu_id: int) -> None:
        self.vcpu_id = vcpu_id
        self.pfault_token = KVM_S390_PFAULT_TOKEN_INVALID
        self.pfault_select = 0
        self.pfault_compare = 0
        self.init_pending: int | None = None
        """Token in the single PFAULT_INIT slot (``IRQ_PEND_PFAULT_INIT`` + ``irq.ext``)."""
        self.pfault_sync = 0
        self.diagnose_258 = 0
        self.init_injected = 0
        self.init_delivered = 0
        self.init_discarded = 0


class PfaultHost:
    """KVM's s390 pfault for one VM.

    Args:
        nvcpus: number of vCPUs.
        gmap_pfault_enabled: userspace enabled async faults (FLIC KVM_DEV_FLIC_APF_ENABLE).
        max_vcpus: KVM_MAX_VCPUS; the floating DONE list holds ``64 * max_vcpus`` entries.
        alloc_work: allocation hook for work items (False = GFP_NOWAIT failure).
        debug: check every invariant after every public call.
    """

    def __init__(self, nvcpus: int, *, gmap_pfault_enabled: bool = True,
                 max_vcpus: int = KVM_MAX_VCPUS, alloc_work: Callable[[], bool] | None = None,
                 debug: bool = False) -> None:
        self.vcpus = [S390VcpuPfault(i) for i in range(nvcpus)]
        self.queues = AsyncPfQueues(nvcpus, sync=True, alloc=alloc_work)
        self.gmap_pfault_enabled = gmap_pfault_enabled
        self.floating_cap = ASYNC_PF_PER_VCPU * max_vcpus
        self.floating: deque[int] = deque()
        """Pending PFAULT_DONE tokens (FIRQ_LIST_PFAULT), oldest first."""
        self.done_injected = 0
        self.done_delivered = 0
        self.done_dropped = 0
        self.warnings: list[str] = []
        self.debug = debug

    # ------------------------------------------------------------------ DIAG 0x258

    @checked
    def diag258(self, vcpu_id: int, rx_addr: int, block: PfaultRefbk | None, *,
                supervisor: bool = True, token_addr_valid: bool = True) -> DiagResult:
        """``__diag_page_ref_service`` (reached only from supervisor state).

        Args:
            rx_addr: address of the parameter block (must be 8-aligned).
            block: the block read from guest real memory, or None when the read failed.
            supervisor: guest PSW is in supervisor state (else privileged-operation).
            token_addr_valid: the token address lies in a memslot.
        """
        v = self._vcpu_thread(vcpu_id)
        if not supervisor:
            return DiagResult.PRIVILEGED_OPERATION
        v.diagnose_258 += 1
        if rx_addr & 7:
            return DiagResult.SPECIFICATION
        if block is None:
            return DiagResult.ADDRESSING
        if block.versn != 2 or block.dwlen < 5 or block.diagc != 0x258:
            return DiagResult.SPECIFICATION
        if block.fcode == 0:
            if v.pfault_token != KVM_S390_PFAULT_TOKEN_INVALID:
                return DiagResult.TOKEN_ALREADY_SET  # SC24-6084: the token must not change
            if ((block.cmpmk & block.selmk) != block.cmpmk or block.gaddr & 7
                    or block.reserved != DIAG258_ZARCH):
                return DiagResult.SPECIFICATION
            if not token_addr_valid:
                return DiagResult.ADDRESSING
            v.pfault_token = block.gaddr
            v.pfault_select = block.selmk
            v.pfault_compare = block.cmpmk
            return DiagResult.OK
        if block.fcode == 1:
            if block.gaddr or block.selmk or block.cmpmk or block.reserved:
                return DiagResult.SPECIFICATION
            if v.pfault_token == KVM_S390_PFAULT_TOKEN_INVALID:
                return DiagResult.CANCEL_NOT_ACTIVE
            v.pfault_token = KVM_S390_PFAULT_TOKEN_INVALID  # pending tokens survive
            return DiagResult.OK
        return DiagResult.NOT_SUPPORTED

    # ------------------------------------------------------------------ fault path

    def _irq_pending(self, v: S390VcpuPfault, psw: int, other_irq_pending: bool) -> bool:
        """``kvm_s390_vcpu_has_irq(vcpu, 0)`` restricted to what this model holds."""
        if other_irq_pending:
            return True
        if not psw & PSW_MASK_EXT:
            return False  # pfault INIT/DONE are external interrupts: masked by PSW ext
        return v.init_pending is not None or bool(self.floating)

    @checked
    def page_fault(self, vcpu_id: int, gfn: int, psw: int, cr0: int, token_value: int | None, *,
                   other_irq_pending: bool = False, hva_error: bool = False) -> S390FaultResult:
        """A guest DAT fault needs host I/O (``kvm_s390_handle_dat_fault`` / ``vcpu_post_run``).

        Args:
            psw: the guest PSW mask at the fault.
            cr0: guest control register 0.
            token_value: the 8 bytes at the registered token address (the guest's LPP: PID of
                the running task in the low word), or None when reading them fails.
            other_irq_pending: another interrupt (timer, I/O, SIGP...) is deliverable.

        Returns:
            async (INIT now pending on this vCPU) or synchronous; see :class:`S390FaultResult`.
        """
        v = self._vcpu_thread(vcpu_id)
        reason = self._refusal(v, psw, cr0, token_value, other_irq_pending)
        if reason is None:
            assert token_value is not None
            work = self.queues.setup(vcpu_id, gfn, gfn << 12, token_value, hva_error=hva_error)
            if isinstance(work, SetupFailure):
                reason = S390SyncReason(work.value)
            else:
                # kvm_arch_async_page_not_present: vCPU-local INIT; the slot is free because
                # no interrupt was pending
                v.init_pending = token_value
                v.init_injected += 1
                work.notpresent_injected = True
                return S390FaultResult(work)
        if reason is not S390SyncReason.GMAP_PFAULT_DISABLED:
            v.pfault_sync += 1
        return S390FaultResult(None, reason)

    def _refusal(self, v: S390VcpuPfault, psw: int, cr0: int, token_value: int | None,
                 other_irq_pending: bool) -> S390SyncReason | None:
        if not self.gmap_pfault_enabled:
            return S390SyncReason.GMAP_PFAULT_DISABLED
        if v.pfault_token == KVM_S390_PFAULT_TOKEN_INVALID:
            return S390SyncReason.TOKEN_INVALID
        if (psw & v.pfault_select) != v.pfault_compare:
            return S390SyncReason.NOT_SELECTED
        if not psw & PSW_MASK_EXT:
            return S390SyncReason.EXT_DISABLED
        if self._irq_pending(v, psw, other_irq_pending):
            return S390SyncReason.IRQ_PENDING
        if not cr0 & CR0_SERVICE_SIGNAL_SUBMASK:
            return S390SyncReason.SUBCLASS_DISABLED
        if token_value is None:
            return S390SyncReason.TOKEN_READ_FAILED
        return None

    # ------------------------------------------------------------------ worker

    @checked
    def work_started(self, work: AsyncPfWork) -> None:
        """The workqueue started ``async_pf_execute`` for ``work`` (it now blocks on the I/O)."""
        self.queues.work_started(work)

    @checked
    def work_done(self, work: AsyncPfWork) -> S390WorkDone:
        """``async_pf_execute`` returned: inject the floating DONE, then put ``work`` on done."""
        injected = len(self.floating) < self.floating_cap
        if injected:
            self.floating.append(work.token)
            self.done_injected += 1
        else:
            self.done_dropped += 1
            if not self.warnings:
                self.warnings.append("__inject_pfault_done: -EBUSY (floating pfault list full)")
        returned = self.queues.work_returned(work)
        return S390WorkDone(injected, returned.clear_finished)

    # ------------------------------------------------------------------ vCPU entry

    @checked
    def pre_run(self, vcpu_id: int, psw: int) -> S390ExtInterrupt | None:
        """``vcpu_pre_run``: free finished items, then deliver at most one pfault interrupt.

        Returns:
            the interrupt the caller must deliver to the guest on this CPU
            (``PfaultGuest.pfault_interrupt(cpu, irq.code, irq.subcode, irq.param64)``), or None.
        """
        self._vcpu_thread(vcpu_id)
        while (work := self.queues.pop_done(vcpu_id)) is not None:
            self.queues.retire(work)  # kvm_check_async_pf_completion: only frees on s390
        if not psw & PSW_MASK_EXT:
            return None
        v = self.vcpus[vcpu_id]
        if v.init_pending is not None:  # IRQ_PEND_PFAULT_INIT ranks before PFAULT_DONE
            token, v.init_pending = v.init_pending, None
            v.init_delivered += 1
            return S390ExtInterrupt(EXT_IRQ_CP_SERVICE, PFAULT_INIT, token)
        if self.floating:
            self.done_delivered += 1
            return S390ExtInterrupt(EXT_IRQ_CP_SERVICE, PFAULT_DONE, self.floating.popleft())
        return None

    # ------------------------------------------------------------------ reset, userspace

    @checked
    def vcpu_reset(self, vcpu_id: int) -> list[AsyncPfWork]:
        """Normal / initial / clear reset: token INVALID, clear the queue, drop local irqs.

        Returns:
            items the vCPU thread must wait for (ASYNC_PF_SYNC: even not-started ones run to
            completion and still inject their floating DONE); report each with
            :meth:`work_done`.
        """
        v = self._vcpu_thread(vcpu_id)
        v.pfault_token = KVM_S390_PFAULT_TOKEN_INVALID
        wait = self.queues.clear(vcpu_id)
        if v.init_pending is not None:
            v.init_pending = None  # kvm_s390_clear_local_irqs
            v.init_discarded += 1
        return wait

    @checked
    def set_token_from_userspace(self, vcpu_id: int, token: int) -> list[AsyncPfWork]:
        """KVM_REG_S390_PFTOKEN / sync regs: setting INVALID also clears the queue."""
        v = self._vcpu_thread(vcpu_id)
        v.pfault_token = token
        if token == KVM_S390_PFAULT_TOKEN_INVALID:
            return self.queues.clear(vcpu_id)
        return []

    @checked
    def apf_disable_wait(self) -> dict[int, list[AsyncPfWork]]:
        """FLIC KVM_DEV_FLIC_APF_DISABLE_WAIT: gmap pfault off, every vCPU's queue cleared."""
        self.gmap_pfault_enabled = False
        waits = {}
        for v in self.vcpus:
            wait = self.queues.clear(v.vcpu_id)
            if wait:
                waits[v.vcpu_id] = wait
        return waits

    def _vcpu_thread(self, vcpu_id: int) -> S390VcpuPfault:
        if self.queues.vcpus[vcpu_id].clearing:
            raise InvariantViolation(f"vCPU {vcpu_id} thread acts while blocked in a queue clear")
        return self.vcpus[vcpu_id]

    # ------------------------------------------------------------------ queries, invariants

    def queued(self, vcpu_id: int) -> int:
        return self.queues.vcpus[vcpu_id].queued

    def check_invariants(self) -> None:
        """Ownership of work items and interrupt bookkeeping; raises :class:`InvariantViolation`.

        Every item is linked or freed exactly once, after its work returned (shared with x86);
        no wakeup_all items and ``queued <= 64``; the handshake registers are consistent; every
        injected DONE is pending or was delivered; every INIT is in its slot, delivered or
        discarded by a reset; the floating list respects its cap.
        """
        self.queues.check_invariants()
        for v in self.vcpus:
            where = f"vCPU {v.vcpu_id}"
            qv = self.queues.vcpus[v.vcpu_id]
            if any(w.wakeup_all for w in qv.done):
                raise InvariantViolation(f"{where}: wakeup_all item on s390")
            if qv.queued > ASYNC_PF_PER_VCPU:
                raise InvariantViolation(f"{where}: queued={qv.queued} > {ASYNC_PF_PER_VCPU}")
            masks_ok = (v.pfault_compare & v.pfault_select) == v.pfault_compare
            if v.pfault_token != KVM_S390_PFAULT_TOKEN_INVALID and (v.pfault_token & 7
                                                                     or not masks_ok):
                raise InvariantViolation(f"{where}: inconsistent pfault handshake")
            slot = 0 if v.init_pending is None else 1
            if v.init_injected != v.init_delivered + v.init_discarded + slot:
                raise InvariantViolation(f"{where}: INIT accounting broken")
        if len(self.floating) > self.floating_cap:
            raise InvariantViolation("floating pfault list above its cap")
        if self.done_injected != self.done_delivered + len(self.floating):
            raise InvariantViolation("floating DONE accounting broken")
