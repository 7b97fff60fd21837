"""Async-PF modes wired into the running simulation: ``kvm`` (x86 PV) and ``s390`` (pfault).

Part of the composition root: each mode must know both halves of its protocol, so it lives
above the guest and the hypervisor, which never import each other.  The protocol state
machines live in :mod:`pfsim.hypervisor.apf_kvm`, :mod:`pfsim.guest.apf_kvm`,
:mod:`pfsim.hypervisor.apf_s390` and :mod:`pfsim.guest.apf_s390` (their shared ABIs in
:mod:`pfsim.machine`); this module only connects them to the host
(:class:`~pfsim.hypervisor.host.Host`, which calls the hooks of
:class:`~pfsim.hypervisor.apf_hooks.ApfMode`) and to the guest executor, in the order the
kernels do:

kvm:  EPT violation needing I/O → ``KvmApfHost.page_fault``:
      SYNC → the vCPU thread sleeps for the I/O (a sync fallback);
      ASYNC_INJECTED → the worker waits for the swap-in; the vCPU re-enters the guest with
      #PF(token) → ``KvmApfGuest.not_present`` puts the task to sleep and the guest schedules;
      ASYNC_HALTED / APF_HALT_REPEATED → the vCPU APF-halts until a completion or interrupt.
      Swap-in done → ``work_done``; the vCPU is kicked; at its next entry ``enter_guest``
      dequeues completions, each page-ready is an interrupt whose guest handler wakes the task
      and ACKs, which dequeues the next one (one page-ready in flight per vCPU).
s390: EPT (DAT) violation needing I/O → ``PfaultHost.page_fault`` with the guest's PSW (problem
      state for user code), CR0 and the LPP token (the running task's pid):
      async → INIT pending on this vCPU, delivered at its re-entry: the task is set
      UNINTERRUPTIBLE with need_resched and blocks on return to user unless the DONE came first;
      swap-in done → floating DONE, delivered on the first vCPU that runs guest code (kicking
      a halted one if none does), which wakes the task or records an early completion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pfsim.guest.apf_kvm import KvmApfGuest, NotPresentOutcome, WakeKind
from pfsim.guest.apf_s390 import PfaultGuest, PfaultOutcome, lpp_value, pfault_init_refbk
from pfsim.hypervisor.apf_hooks import ApfMode
from pfsim.hypervisor.apf_kvm import KvmApfHost, X86FaultContext, X86FaultOutcome
from pfsim.hypervisor.apf_s390 import PfaultHost
from pfsim.machine.apf_kvm_abi import BROADCAST_TOKEN
from pfsim.machine.trace_records import K_NOT_PRESENT, K_PAGE_READY
from pfsim.machine.latency import ASYNC
from pfsim.machine.latency import record as record_latency
from pfsim.machine.apf_s390_abi import (
    CR0_SERVICE_SIGNAL_SUBMASK,
    PFAULT_DONE,
    PSW_MASK_EXT,
    PSW_MASK_PSTATE,
)
from pfsim.sched import Task

if TYPE_CHECKING:
    from pfsim.hypervisor.host import Host


def wait_starts(host: Host, task: Task) -> None:
    """An async PF put ``task`` to sleep: the start of its round trip (kept when it already
    waits, as after s390's REBLOCK)."""
    if task.data.apf_since < 0:
        task.data.apf_since = host.sim.now


def wait_ends(host: Host, task: Task) -> None:
    """The page-ready / completion wakes ``task``: one async round trip, if it waited."""
    since = task.data.apf_since
    if since >= 0:
        record_latency(host.kernel.latency, ASYNC, host.sim.now - since)
        task.data.apf_since = -1


class KvmMode(ApfMode):
    """x86 KVM paravirtual async PF."""

    name = "kvm"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        nv = len(host.threads)
        debug = host.config.hypervisor.apf_debug
        self.hv = KvmApfHost(nv, debug=debug)
        self.hv.queues.record_frees = debug  # the per-item history grows with the run
        self.guest = KvmApfGuest(nv, wake_up=self._wake_up, debug=debug)
        self.page_ready = 0

    def setup(self) -> None:
        for c in range(len(self.host.threads)):
            int_val, en_val = self.guest.cpu_init(c)
            self.hv.msr_write_int(c, int_val)
            self.hv.msr_write_en(c, en_val, self.guest.areas[c])

    def major_fault(self, c: int, gfn: int, user: bool) -> bool:
        host = self.host
        ctx = X86FaultContext(cpl=3 if user else 0,
                              interrupts_allowed=host.kernel.executor.interrupts_enabled(c))
        result = self.hv.page_fault(c, gfn, ctx)
        outcome = result.outcome
        if outcome is X86FaultOutcome.SYNC:
            host.sync_fallbacks += 1
            return False
        if result.work is not None:
            work = result.work
            self.hv.work_started(work)
            host.when_page_in(gfn, lambda: self._work_done(work))
        if outcome is X86FaultOutcome.ASYNC_INJECTED:
            assert result.token is not None
            token = result.token
            host.guest_interrupt(c, host.costs.ept_violation + host.costs.apf_inject, lambda: self._not_present(c, token, user))
            return True
        # APF halt (repeated gfn, or kernel mode): the next entry halts the vCPU
        host.apf_halt(c)
        return True

    def _not_present(self, c: int, token: int, user: bool) -> None:
        executor = self.host.kernel.executor
        task = self.host.kernel.scheduler.current(c)
        if task is None:
            return
        outcome = self.guest.handle_async_pf(c, task, token, user, executor.interrupts_enabled(c))
        if self.recorder.on and outcome in (NotPresentOutcome.SLEEP, NotPresentOutcome.NO_SLEEP):
            now = self.host.sim.now  # counted in not_present: one end of the fault's flow
            self.recorder.add(now, K_NOT_PRESENT, c, task.tid, 0, token & 0xFFFFFFFF)
        if outcome is NotPresentOutcome.SLEEP:
            task.data.apf_wait = True
            wait_starts(self.host, task)
            executor.need_resched[c] = True
        elif outcome in (NotPresentOutcome.PANIC_KERNEL_MODE, NotPresentOutcome.PANIC_IRQS_DISABLED):
            self.host.kernel.kernel_panic({"reason": f"Host injected async #PF ({outcome.value})",
                                           "tid": task.tid})

    def _wake_up(self, task: Task) -> bool:
        wait_ends(self.host, task)
        return self.host.kernel.scheduler.wake_up(task)

    def _work_done(self, work: Any) -> None:
        done = self.hv.work_done(work)
        if done.apf_ready_requested or done.kick:
            self.host.kick_for_completion(work.vcpu_id)

    def on_entry(self, c: int, interrupt_pending: bool = False) -> bool:
        if self.hv.vcpus[c].halted:
            if not self.hv.runnable(c, interrupt_pending):
                return False
            self.hv.unblock(c)
        entered = self.hv.enter_guest(c)
        if not entered.entered:
            return False
        self._deliver(c, entered.completions)
        return True

    def _deliver(self, c: int, completions: list[Any]) -> None:
        while completions:
            for completion in completions:
                if completion.page_ready and completion.token != BROADCAST_TOKEN:
                    self.page_ready += 1  # the boot-time wakeup_all broadcast is not counted
                    if self.recorder.on:
                        self.recorder.add(self.host.sim.now, K_PAGE_READY, c, -1, 0,
                                          completion.token)
            if not any(comp.page_ready for comp in completions):
                return
            ready = self.guest.page_ready_interrupt(c)
            self.host.spend_at_entry(c, self.host.costs.page_ready)
            if ready.wake is not None and ready.wake.kind is WakeKind.RETRY:
                return
            completions = self.hv.msr_write_ack(c, 1).completions if ready.ack else []

    def task_resumes(self, task: Task) -> bool:
        return self.guest.wait_resume(task)

    def counters(self) -> dict[str, int]:
        # a page-ready that beat its not-present leaves a dummy node the #PF then frees
        return {"not_present": self.guest.not_present_count, "page_ready": self.page_ready,
                "early_completions": self.guest.dummies_freed}


class _S390Ops:
    """GuestCpuOps for the pfault guest half."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def current(self, cpu: int) -> Task | None:
        return self.host.kernel.scheduler.current(cpu)

    def set_need_resched(self, cpu: int) -> None:
        self.host.kernel.executor.need_resched[cpu] = True

    def wake_up(self, task: Task) -> bool:
        wait_ends(self.host, task)
        return self.host.kernel.scheduler.wake_up(task)


class S390Mode(ApfMode):
    """s390 pfault."""

    name = "s390"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        nv = len(host.threads)
        debug = host.config.hypervisor.apf_debug
        self.hv = PfaultHost(nv, debug=debug)
        self.hv.queues.record_frees = debug
        self.guest = PfaultGuest(_S390Ops(host), self._find_task, debug=debug)

    def _find_task(self, pid: int) -> Task | None:
        for process in self.host.kernel.processes:
            for task in process.threads:
                if task.tid == pid and not task.freed:
                    return task
        return None

    def setup(self) -> None:
        for c in range(len(self.host.threads)):
            self.hv.diag258(c, 0x1000, pfault_init_refbk(), supervisor=True)

    def _psw(self, user: bool) -> int:
        return PSW_MASK_EXT | (PSW_MASK_PSTATE if user else 0)

    def major_fault(self, c: int, gfn: int, user: bool) -> bool:
        host = self.host
        task = host.kernel.scheduler.current(c)
        token = lpp_value(task.tid) if task is not None else None
        result = self.hv.page_fault(c, gfn, self._psw(user), CR0_SERVICE_SIGNAL_SUBMASK, token)
        if result.work is None:
            host.sync_fallbacks += 1
            return False
        work = result.work
        self.hv.work_started(work)
        host.when_page_in(gfn, lambda: self._work_done(work))
        # re-entry delivers the vCPU-local INIT
        host.guest_interrupt(c, host.costs.ept_violation + host.costs.apf_inject, lambda: self._pre_run(c))
        return True

    def _work_done(self, work: Any) -> None:
        done = self.hv.work_done(work)
        if done.done_injected:
            self.host.kick_floating()

    def _pre_run(self, c: int) -> None:
        """Deliver every pending pfault interrupt for ``c`` (one per entry, in a loop)."""
        user = True
        while (irq := self.hv.pre_run(c, self._psw(user))) is not None:
            counted = self.guest.init_count + self.guest.done_count
            current = self.host.kernel.scheduler.current(c)
            outcome = self.guest.pfault_interrupt(c, irq.code, irq.subcode, irq.param64)
            if self.recorder.on and self.guest.init_count + self.guest.done_count > counted:
                pid = irq.param64 & 0xFFFFFFFF
                done = irq.subcode == PFAULT_DONE
                self.recorder.add(self.host.sim.now, K_PAGE_READY if done else K_NOT_PRESENT, c,
                                  -1 if done else pid, 0, pid)
            if outcome in (PfaultOutcome.BLOCK, PfaultOutcome.REBLOCK) and current is not None:
                wait_starts(self.host, current)
            if irq.subcode == PFAULT_DONE:  # the INIT's delivery is in apf_inject
                self.host.spend_at_entry(c, self.host.costs.page_ready)
            if outcome in (PfaultOutcome.BLOCK, PfaultOutcome.REBLOCK):
                continue

    def on_entry(self, c: int, interrupt_pending: bool = False) -> bool:
        self._pre_run(c)
        return True

    def has_floating(self) -> bool:
        return bool(self.hv.floating)

    def counters(self) -> dict[str, int]:
        g = self.guest
        return {"not_present": g.init_count, "page_ready": g.done_count,
                "early_completions": g.early_completions}


MODES: dict[str, type[ApfMode]] = {"off": ApfMode, "halt": ApfMode, "kvm": KvmMode, "s390": S390Mode}
"""The mode class of each ``hypervisor.async_pf`` value (off and halt: no asynchronous hooks;
the host itself halts or stalls the vCPU)."""
