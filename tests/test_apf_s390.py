"""s390 pfault, guest and KVM host halves: scenarios 1-9 of docs/scenarios.md (Linux).

Every test drives the protocol objects by hand in a fixed order, on the real
:class:`~pfsim.sched.Scheduler` (2 guest CPUs, no idle balancing so placements are
hand-known) and the real engine.  The guest kernel around the handler is the small
:class:`Kernel` below: it provides ``current`` / ``need_resched`` / ``wake_up`` and the
return-to-user path (``schedule(cpu, preempted=False)`` when need_resched is set).

Task placement after :func:`world`: T (tid 1) runs on CPU 0, V (tid 3) on CPU 1, U (tid 2)
waits on CPU 0's queue.  Every task starts with ``usage == 1``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfsim.engine import Simulator
from pfsim.errors import InvariantViolation
from pfsim.guest.apf_s390 import (
    PfaultGuest,
    PfaultOutcome,
    lpp_value,
    pfault_fini_refbk,
    pfault_init_refbk,
)
from pfsim.hypervisor.apf_s390 import DiagResult, PfaultHost, S390ExtInterrupt, S390SyncReason
from pfsim.machine.apf_s390_abi import (
    CR0_SERVICE_SIGNAL_SUBMASK,
    EXT_IRQ_CP_SERVICE,
    PFAULT_DONE,
    PFAULT_INIT,
    PfaultRefbk,
    psw_mask,
)
from pfsim.sched import Scheduler, Task, TaskState

USER = psw_mask(problem_state=True)
KERNEL = psw_mask(problem_state=False)
CR0 = CR0_SERVICE_SIGNAL_SUBMASK
T, U, V = 1, 2, 3


class RecordingExecutor:
    """Stands in for the guest executor: records every (time, cpu, tid) start."""

    def __init__(self, sched: Scheduler) -> None:
        self.starts: list[tuple[int, int, int]] = []
        sched.executor = self

    def start(self, cpu: int, task: Task, now: int) -> None:
        self.starts.append((now, cpu, task.tid))


class Kernel:
    """The guest kernel around ``pfault_interrupt`` (implements ``GuestCpuOps``)."""

    def __init__(self, sim: Simulator, sched: Scheduler, tasks: dict[int, Task]) -> None:
        self.sim, self.sched, self.tasks = sim, sched, tasks
        self.need_resched: set[int] = set()

    def current(self, cpu: int) -> Task | None:
        return self.sched.current(cpu)

    def set_need_resched(self, cpu: int) -> None:
        self.need_resched.add(cpu)

    def wake_up(self, task: Task) -> bool:
        return self.sched.wake_up(task)

    def find_task(self, pid: int) -> Task | None:
        task = self.tasks.get(pid)
        return None if task is None or task.freed else task

    def return_to_user(self, cpu: int) -> None:
        """The interrupt returns: schedule() if need_resched is set, then run kicks."""
        if cpu in self.need_resched:
            self.need_resched.discard(cpu)
            self.sched.schedule(cpu, preempted=False)
        self.sim.run()

    def run_until_current(self, cpu: int, tid: int) -> None:
        """Slice ends on ``cpu`` until task ``tid`` is the one running there."""
        for _ in range(10):
            if self.sched.current(cpu) is self.tasks[tid]:
                return
            self.sched.schedule(cpu, preempted=True)
            self.sim.run()
        raise AssertionError(f"task {tid} never ran on CPU {cpu}")


def world(with_host: bool = True):
    """Guest with tasks T, U, V on 2 CPUs; host with the pfault handshake done on both vCPUs."""
    sim = Simulator()
    sched = Scheduler(sim, 2, timeslice_ns=1_000_000, switch_ns=0, idle_balance=False,
                      name="guest")
    ex = RecordingExecutor(sched)
    tasks = {tid: Task(tid, name) for tid, name in ((T, "T"), (U, "U"), (V, "V"))}
    for tid in (T, V, U):
        sched.add_task(tasks[tid])
    sim.run()
    kernel = Kernel(sim, sched, tasks)
    guest = PfaultGuest(kernel, kernel.find_task, debug=True)
    host = PfaultHost(2, debug=True)
    if with_host:
        for cpu in (0, 1):
            assert host.diag258(cpu, 0x1000, pfault_init_refbk()) is DiagResult.OK
    return sim, sched, ex, tasks, kernel, guest, host


def deliver(guest: PfaultGuest, cpu: int, irq: S390ExtInterrupt | None) -> PfaultOutcome:
    assert irq is not None
    return guest.pfault_interrupt(cpu, irq.code, irq.subcode, irq.param64)


def fault(host: PfaultHost, cpu: int, tid: int, gfn: int, psw: int = USER):
    """A host-major fault of task ``tid`` running on ``cpu``."""
    return host.page_fault(cpu, gfn, psw, CR0, lpp_value(tid))


def finish(host: PfaultHost, work) -> None:
    host.work_started(work)
    assert host.work_done(work).done_injected


# ---------------------------------------------------------------------------------- scenario 1


def test_scenario_1_normal_order_init_then_done_on_the_other_vcpu():
    """Scenario 1.  T on vCPU0 (user mode) hits a host-major page.

    Host: async (token = T's LPP), INIT pending on vCPU0, 1 item queued.  INIT delivered on
    vCPU0: pfault_wait(T) = 1, list = [T], T.usage 1 -> 2, T UNINTERRUPTIBLE, need_resched on
    CPU 0; the return-to-user schedule() runs U on CPU 0.  The worker finishes: floating DONE,
    delivered on vCPU1 (where V runs): T woken (RUNNABLE on CPU 0's queue, idle balancing is
    off), off the list, usage back to 1, pfault_wait 0.  vCPU0's next entry frees the item.
    Counters: irqext_pfl 2, init 1, done 1, no sync fallback.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    res = fault(host, 0, T, gfn=0x42)
    assert res.is_async and host.queued(0) == 1
    assert host.vcpus[0].init_pending == lpp_value(T)

    irq = host.pre_run(0, USER)
    assert irq == S390ExtInterrupt(EXT_IRQ_CP_SERVICE, PFAULT_INIT, lpp_value(T))
    assert deliver(guest, 0, irq) is PfaultOutcome.BLOCK
    t = tasks[T]
    assert guest.pfault_wait(T) == 1 and guest.pfault_list == (t,)
    assert t.usage == 2 and guest.list_refs(T) == 1
    assert t.state is TaskState.UNINTERRUPTIBLE and kernel.need_resched == {0}

    kernel.return_to_user(0)
    assert sched.current(0) is tasks[U] and ex.starts[-1] == (0, 0, U)

    finish(host, res.work)
    assert list(host.floating) == [lpp_value(T)]
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.WOKEN
    assert guest.pfault_wait(T) == 0 and guest.pfault_list == ()
    assert t.usage == 1 and t.state is TaskState.RUNNABLE
    assert list(sched.cpus[0].queue) == [t]
    assert host.queued(0) == 1  # freed only by vCPU0's own completion check
    assert host.pre_run(0, USER) is None and host.queued(0) == 0
    assert host.queues.frees == {res.work.serial: 1}
    assert (guest.irqext_pfl, guest.init_count, guest.done_count) == (2, 1, 1)
    assert host.vcpus[0].pfault_sync == 0 and host.done_delivered == 1


def test_scenario_1_wake_before_return_to_user_schedule_is_not_lost():
    """Scenario 1 variant (``pfault_interrupt`` leaves the blocking to the return-to-user
    schedule(), so a wake in between is not lost).  INIT blocks T on CPU 0, but the
    DONE is delivered on CPU 1 before CPU 0 reaches the return-to-user schedule(): wake_up finds
    T still on its CPU and only sets it RUNNING; schedule(preempted=False) then picks T again
    with no context switch.  pfault_wait 0, usage 1, list empty.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    res = fault(host, 0, T, gfn=0x42)
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.BLOCK
    finish(host, res.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.WOKEN
    assert tasks[T].state is TaskState.RUNNING and tasks[T].on_cpu
    switches = sched.cpus[0].context_switches
    kernel.return_to_user(0)
    assert sched.current(0) is tasks[T] and sched.cpus[0].context_switches == switches
    assert ex.starts[-1] == (0, 0, T)
    assert guest.pfault_wait(T) == 0 and tasks[T].usage == 1 and guest.pfault_list == ()


# ---------------------------------------------------------------------------------- scenario 2


def test_scenario_2_done_before_init():
    """Scenario 2.  The page-in completes at once: the floating DONE is delivered on vCPU1
    while vCPU0 still has the INIT pending.  DONE finds T running on CPU 0 -> pfault_wait -1
    (early_completions 1).  INIT then sets 0 and T never sleeps: no list entry, no extra
    reference, no need_resched, T still RUNNING on CPU 0.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    res = fault(host, 0, T, gfn=0x42)
    finish(host, res.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.EARLY_RECORDED
    assert guest.pfault_wait(T) == -1 and guest.early_completions == 1
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.EARLY_CONSUMED
    assert guest.pfault_wait(T) == 0 and guest.pfault_list == ()
    assert tasks[T].usage == 1 and tasks[T].state is TaskState.RUNNING
    assert kernel.need_resched == set() and sched.current(0) is tasks[T]
    assert host.queued(0) == 0  # pre_run(0) freed the finished item


def test_scenario_2_both_on_the_faulting_vcpu_init_is_delivered_first():
    """Scenario 2 counterpart: INIT and DONE both pending when vCPU0 enters.  The local INIT
    ranks before the floating DONE, one external interrupt per entry: INIT blocks T
    (pfault_wait 1, usage 2), the next entry delivers DONE and wakes it (0, usage 1)."""
    sim, sched, ex, tasks, kernel, guest, host = world()
    res = fault(host, 0, T, gfn=0x42)
    finish(host, res.work)
    first = host.pre_run(0, USER)
    assert first is not None and first.subcode == PFAULT_INIT
    assert deliver(guest, 0, first) is PfaultOutcome.BLOCK and tasks[T].usage == 2
    second = host.pre_run(0, USER)
    assert second is not None and second.subcode == PFAULT_DONE
    assert deliver(guest, 0, second) is PfaultOutcome.WOKEN
    assert guest.pfault_wait(T) == 0 and tasks[T].usage == 1
    assert host.pre_run(0, psw_mask(True, ext_enabled=False)) is None


# ---------------------------------------------------------------------------------- scenario 3


def test_scenario_3_cancel_leftover_done_is_ignored():
    """Scenario 3.  V faults on vCPU1 and blocks (pfault_wait 1).  vCPU1 goes offline: CANCEL
    (rc 0; a second CANCEL gives rc 4), pfault_cpu_dead wakes V, which moves to CPU 0.  V later
    sleeps for another reason (INTERRUPTIBLE).  The pending work survived the CANCEL; its DONE
    is delivered on vCPU0 and finds V not running with pfault_wait 0: ignored (ignored_done 1),
    pfault_wait stays 0, V stays asleep, usage 1.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    res = fault(host, 1, V, gfn=0x77)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.BLOCK
    kernel.return_to_user(1)
    assert sched.current(1) is None

    assert host.diag258(1, 0x1000, pfault_fini_refbk()) is DiagResult.OK
    assert host.diag258(1, 0x1000, pfault_fini_refbk()) is DiagResult.CANCEL_NOT_ACTIVE
    sched.cpus[1].online = False
    assert guest.cpu_dead(1) == [tasks[V]]
    sim.run()
    kernel.run_until_current(0, V)
    tasks[V].state = TaskState.INTERRUPTIBLE  # e.g. nanosleep
    sched.schedule(0, preempted=False)
    sim.run()

    finish(host, res.work)  # the token survived the CANCEL
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.LEFTOVER_IGNORED
    assert guest.pfault_wait(V) == 0 and guest.ignored_done == 1
    assert tasks[V].state is TaskState.INTERRUPTIBLE and tasks[V].usage == 1


# ---------------------------------------------------------------------------------- scenario 4


def test_scenario_4_stale_early_swallows_one_unrelated_init():
    """Scenario 4.  T faults on gfn A; before the INIT is delivered vCPU0 is reset: the INIT is
    discarded (token INVALID) while the not-started work is waited for and still injects its
    DONE.  After a new handshake the DONE reaches vCPU1 with T running: pfault_wait -1.  T then
    faults on an unrelated gfn B: its INIT is swallowed (0, T keeps running, no need_resched);
    T re-executes, faults on B again: a second item for B, INIT blocks T (1, usage 2).  Exactly
    one extra host round trip: 2 work items for B.  The first B item's DONE wakes T (0, usage
    1); the second finds T runnable: -1 again.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    a = fault(host, 0, T, gfn=0xA)
    wait = host.vcpu_reset(0)
    assert wait == [a.work] and host.vcpus[0].init_pending is None
    host.work_started(a.work)
    done = host.work_done(a.work)
    assert done.done_injected and done.clear_finished and host.queued(0) == 0
    assert host.queues.frees == {a.work.serial: 1}
    assert host.diag258(0, 0x1000, pfault_init_refbk()) is DiagResult.OK
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.EARLY_RECORDED
    assert guest.pfault_wait(T) == -1

    b1 = fault(host, 0, T, gfn=0xB)
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.EARLY_CONSUMED
    assert guest.pfault_wait(T) == 0 and tasks[T].state is TaskState.RUNNING
    assert kernel.need_resched == set()
    b2 = fault(host, 0, T, gfn=0xB)  # the instruction is re-executed: one extra round trip
    assert b2.is_async and host.queued(0) == 2
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.BLOCK
    assert guest.pfault_wait(T) == 1 and tasks[T].usage == 2
    kernel.return_to_user(0)

    finish(host, b1.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.WOKEN
    assert guest.pfault_wait(T) == 0 and tasks[T].usage == 1
    finish(host, b2.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.EARLY_RECORDED
    assert guest.pfault_wait(T) == -1
    assert b1.work.gfn == b2.work.gfn == 0xB and host.queues.allocated == 3  # A, B, B again


# ---------------------------------------------------------------------------------- scenario 5


def test_scenario_5_refault_while_waiting():
    """Scenario 5.  T blocks on gfn A (1, usage 2, U runs).  A spurious wake_up_process makes T
    runnable; T runs again (slice end on CPU 0), re-executes and faults on A again: a second
    item and INIT -> REBLOCK: pfault_wait stays 1, T is on the list once, usage stays 2, T is
    UNINTERRUPTIBLE and schedules away.  The first DONE releases it (0, usage 1); the second
    DONE then finds T runnable: -1.
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    t = tasks[T]
    a1 = fault(host, 0, T, gfn=0xA)
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.BLOCK
    kernel.return_to_user(0)
    assert sched.current(0) is tasks[U]

    assert sched.wake_up(t)  # spurious
    kernel.run_until_current(0, T)
    a2 = fault(host, 0, T, gfn=0xA)
    assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.REBLOCK
    assert guest.pfault_wait(T) == 1 and guest.pfault_list == (t,) and t.usage == 2
    assert t.state is TaskState.UNINTERRUPTIBLE
    kernel.return_to_user(0)
    assert sched.current(0) is tasks[U]

    finish(host, a1.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.WOKEN
    assert guest.pfault_wait(T) == 0 and t.usage == 1 and guest.wakeups == 1
    finish(host, a2.work)
    assert deliver(guest, 1, host.pre_run(1, USER)) is PfaultOutcome.EARLY_RECORDED
    assert guest.pfault_wait(T) == -1


# ---------------------------------------------------------------------------------- scenario 6


def test_scenario_6_cpu_dead_wakes_the_whole_list():
    """Scenario 6.  T and U block on vCPU0, V on vCPU1: list = [V, U, T] (head insertion), each
    usage 2.  vCPU1 cancels and goes offline; pfault_cpu_dead(1) wakes all three (not only V):
    pfault_wait 0, usage 1, list empty, all runnable on CPU 0.  The three DONEs arrive later on
    vCPU0 and find running tasks: each becomes -1 (early_completions 3).
    """
    sim, sched, ex, tasks, kernel, guest, host = world()
    works = []
    for cpu, tid, gfn in ((0, T, 0x10), (0, U, 0x11), (1, V, 0x12)):
        assert sched.current(cpu) is tasks[tid]
        res = fault(host, cpu, tid, gfn)
        works.append(res.work)
        assert deliver(guest, cpu, host.pre_run(cpu, USER)) is PfaultOutcome.BLOCK
        kernel.return_to_user(cpu)
    assert guest.pfault_list == (tasks[V], tasks[U], tasks[T])
    assert [tasks[i].usage for i in (T, U, V)] == [2, 2, 2]

    assert host.diag258(1, 0x1000, pfault_fini_refbk()) is DiagResult.OK
    sched.cpus[1].online = False
    assert guest.cpu_dead(1) == [tasks[V], tasks[U], tasks[T]]
    sim.run()
    assert guest.pfault_list == ()
    assert [guest.pfault_wait(i) for i in (T, U, V)] == [0, 0, 0]
    assert [tasks[i].usage for i in (T, U, V)] == [1, 1, 1]
    assert all(tasks[i].state in (TaskState.RUNNING, TaskState.RUNNABLE) for i in (T, U, V))

    for work in works:
        finish(host, work)
    for _ in works:
        assert deliver(guest, 0, host.pre_run(0, USER)) is PfaultOutcome.EARLY_RECORDED
    assert [guest.pfault_wait(i) for i in (T, U, V)] == [-1, -1, -1]
    assert guest.early_completions == 3


# ---------------------------------------------------------------------------------- scenario 7


@pytest.mark.parametrize(("psw", "cr0", "irq", "handshake", "reason"), [
    (KERNEL, CR0, False, True, S390SyncReason.NOT_SELECTED),
    (psw_mask(True, ext_enabled=False), CR0, False, True, S390SyncReason.EXT_DISABLED),
    (USER, CR0, True, True, S390SyncReason.IRQ_PENDING),
    (USER, 0, False, True, S390SyncReason.SUBCLASS_DISABLED),
    (USER, CR0, False, False, S390SyncReason.TOKEN_INVALID),
])
def test_scenario_7_no_init_synchronous_fallback(psw, cr0, irq, handshake, reason):
    """Scenario 7.  Kernel-mode fault (PSW problem bit clear: select/compare fails), external
    interrupts disabled, another interrupt pending, CR0 service-signal subclass off, or no
    handshake: no work item, no INIT, pfault_sync 1: the vCPU waits for the whole I/O."""
    host = PfaultHost(2, debug=True)
    if handshake:
        assert host.diag258(0, 0x1000, pfault_init_refbk()) is DiagResult.OK
    res = host.page_fault(0, 0x42, psw, cr0, lpp_value(T), other_irq_pending=irq)
    assert not res.is_async and res.reason is reason
    assert host.vcpus[0].pfault_sync == 1 and host.queued(0) == 0
    assert host.vcpus[0].init_pending is None and host.pre_run(0, USER) is None


def test_scenario_7_other_refusals():
    """Scenario 7, remaining cases.  An INIT already in vCPU0's slot counts as a pending
    interrupt (sync, pfault_sync 1); an unreadable token (sync, 2); a full queue after 64
    items (sync, 3); gmap pfault disabled: the first attempt already blocks, not counted."""
    host = PfaultHost(2, debug=True)
    assert host.diag258(0, 0x1000, pfault_init_refbk()) is DiagResult.OK
    assert fault(host, 0, T, 1).is_async
    assert fault(host, 0, T, 2).reason is S390SyncReason.IRQ_PENDING
    assert host.pre_run(0, USER) is not None  # INIT delivered: slot free again
    assert host.page_fault(0, 2, USER, CR0, None).reason is S390SyncReason.TOKEN_READ_FAILED
    for gfn in range(2, 65):
        assert fault(host, 0, T, gfn).is_async
        host.pre_run(0, USER)
    assert host.queued(0) == 64
    assert fault(host, 0, T, 65).reason is S390SyncReason.QUEUE_FULL
    assert host.vcpus[0].pfault_sync == 3
    host.gmap_pfault_enabled = False
    assert fault(host, 0, T, 66).reason is S390SyncReason.GMAP_PFAULT_DISABLED
    assert host.vcpus[0].pfault_sync == 3


# ---------------------------------------------------------------------------------- scenarios 8, 9


def test_scenario_8_unknown_pid_is_dropped():
    """Scenario 8.  INIT and DONE whose pid maps to no task (999), and a DONE for an exited,
    freed task: each counted in IRQEXT_PFL (3) and dropped (dropped_unknown_pid 3), no state
    change anywhere."""
    sim, sched, ex, tasks, kernel, guest, host = world(with_host=False)
    gone = Task(9, "gone")
    gone.state = TaskState.DEAD
    gone.put()
    tasks[9] = gone
    for subcode, pid in ((PFAULT_INIT, 999), (PFAULT_DONE, 999), (PFAULT_DONE, 9)):
        assert (guest.pfault_interrupt(0, EXT_IRQ_CP_SERVICE, subcode, lpp_value(pid))
                is PfaultOutcome.DROPPED_UNKNOWN_PID)
    assert guest.irqext_pfl == 3 and guest.dropped_unknown_pid == 3
    assert guest.pfault_list == () and guest.init_count == guest.done_count == 0
    assert [tasks[i].usage for i in (T, U, V)] == [1, 1, 1]


def test_scenario_9_wrong_subcode_is_not_pfault():
    """Scenario 9.  Ext code 0x2603 with subcode 0x0d00 (virtio) is not a pfault: ignored and
    not counted in IRQEXT_PFL; neither is another ext code with a pfault subcode."""
    sim, sched, ex, tasks, kernel, guest, host = world(with_host=False)
    virtio = guest.pfault_interrupt(0, EXT_IRQ_CP_SERVICE, 0x0D00, lpp_value(T))
    other_code = guest.pfault_interrupt(0, 0x1004, PFAULT_INIT, lpp_value(T))
    assert virtio is other_code is PfaultOutcome.NOT_PFAULT
    assert guest.irqext_pfl == 0 and guest.pfault_wait(T) == 0


# ---------------------------------------------------------------------------------- details


def test_init_for_a_task_that_is_not_current_warns_once():
    """INIT carrying T's token delivered on CPU 1 (V current): WARN_ON_ONCE, nothing else;
    a second one counts but adds no warning."""
    sim, sched, ex, tasks, kernel, guest, host = world(with_host=False)
    for _ in range(2):
        assert (guest.pfault_interrupt(1, EXT_IRQ_CP_SERVICE, PFAULT_INIT, lpp_value(T))
                is PfaultOutcome.WARN_NOT_CURRENT)
    assert guest.not_current == 2 and len(guest.warnings) == 1
    assert guest.pfault_wait(T) == 0 and tasks[T].usage == 1 and tasks[T].state is TaskState.RUNNING


def test_diag258_handshake_return_codes_and_specification_cases():
    """DIAG 0x258 (arch/s390/kvm/diag.c ``__diag_page_ref_service``): TOKEN rc 0, again rc 8;
    CANCEL rc 0, again rc 4; program interrupts for a misaligned block, bad version / length /
    code, compare not within select, misaligned token address, missing z/Arch marker, non-zero
    CANCEL fields; ADDRESSING for an unreadable block or a token outside memslots; problem
    state -> privileged operation; unknown subcode -> exit to userspace."""
    host = PfaultHost(1, debug=True)
    good = pfault_init_refbk()
    zarch = 1 << 63
    assert host.diag258(0, 0x1004, good) is DiagResult.SPECIFICATION
    assert host.diag258(0, 0x1000, None) is DiagResult.ADDRESSING
    for bad in (PfaultRefbk(versn=1, reserved=zarch), PfaultRefbk(dwlen=4, reserved=zarch),
                PfaultRefbk(diagc=0x259, reserved=zarch),
                PfaultRefbk(gaddr=0x340, selmk=0, cmpmk=1 << 48, reserved=zarch),
                PfaultRefbk(gaddr=0x344, reserved=zarch), PfaultRefbk(gaddr=0x340)):
        assert host.diag258(0, 0x1000, bad) is DiagResult.SPECIFICATION
    assert host.diag258(0, 0x1000, good, token_addr_valid=False) is DiagResult.ADDRESSING
    assert host.diag258(0, 0x1000, good, supervisor=False) is DiagResult.PRIVILEGED_OPERATION
    assert host.diag258(0, 0x1000, PfaultRefbk(fcode=2)) is DiagResult.NOT_SUPPORTED
    assert host.diag258(0, 0x1000, pfault_fini_refbk()).rc == 4
    assert host.diag258(0, 0x1000, good).rc == 0
    assert host.vcpus[0].pfault_token == 0x340
    assert host.diag258(0, 0x1000, good).rc == 8
    assert host.diag258(0, 0x1000, PfaultRefbk(fcode=1, gaddr=8)) is DiagResult.SPECIFICATION
    assert host.diag258(0, 0x1000, pfault_fini_refbk()).rc == 0
    assert host.diag258(0, 0x1000, pfault_fini_refbk()).rc == 4
    assert host.vcpus[0].diagnose_258 == 16


def test_floating_done_list_is_capped():
    """With KVM_MAX_VCPUS = 1 the floating list holds 64 DONEs: the 65th injection fails
    (-EBUSY, one warning, done_dropped 1) and that completion never reaches the guest."""
    host = PfaultHost(2, max_vcpus=1, debug=True)
    works = []
    for cpu, gfns in ((0, range(64)), (1, range(1))):
        assert host.diag258(cpu, 0x1000, pfault_init_refbk()) is DiagResult.OK
        for gfn in gfns:
            works.append(fault(host, cpu, T, gfn).work)
            host.pre_run(cpu, USER)
    for work in works:
        host.work_started(work)
        host.work_done(work)
    assert len(host.floating) == 64 and host.done_dropped == 1 and len(host.warnings) == 1


def test_userspace_token_reset_and_flic_disable_wait_clear_queues():
    """Userspace setting the token to INVALID clears vCPU0's queue: the thread waits even for
    the not-started item (ASYNC_PF_SYNC), which still injects its DONE (a leftover for the
    guest).  KVM_DEV_FLIC_APF_DISABLE_WAIT turns gmap pfault off and waits for vCPU1's running
    item (a fault before it went synchronous once, pfault_sync 1, because that DONE was still
    floating); afterwards faults block at once and are not counted."""
    host = PfaultHost(2, debug=True)
    for cpu in (0, 1):
        host.diag258(cpu, 0x1000, pfault_init_refbk())
    first = fault(host, 0, T, 1).work
    assert host.set_token_from_userspace(0, (1 << 64) - 1) == [first]
    with pytest.raises(InvariantViolation, match="blocked in a queue clear"):
        host.pre_run(0, USER)
    host.work_started(first)
    done = host.work_done(first)
    assert done.done_injected and done.clear_finished and list(host.floating) == [lpp_value(T)]
    assert fault(host, 1, V, 2).reason is S390SyncReason.IRQ_PENDING  # that floating DONE
    assert host.pre_run(1, USER).subcode == PFAULT_DONE
    second = fault(host, 1, V, 2).work
    host.work_started(second)
    assert host.apf_disable_wait() == {1: [second]} and not host.gmap_pfault_enabled
    assert host.work_done(second).clear_finished and host.queued(1) == 0
    assert fault(host, 1, V, 3).reason is S390SyncReason.GMAP_PFAULT_DISABLED
    assert host.vcpus[1].pfault_sync == 1 and sorted(host.queues.frees.values()) == [1, 1]


def test_release_task_drops_a_stale_early_state():
    """A task that exits with pfault_wait -1 is forgotten (reads 0 again); releasing a task
    that is still on pfault_list is an invariant violation (the list holds a reference)."""
    sim, sched, ex, tasks, kernel, guest, host = world(with_host=False)
    guest.pfault_interrupt(1, EXT_IRQ_CP_SERVICE, PFAULT_DONE, lpp_value(T))
    assert guest.pfault_wait(T) == -1
    guest.release_task(tasks[T])
    assert guest.pfault_wait(T) == 0
    guest.pfault_interrupt(1, EXT_IRQ_CP_SERVICE, PFAULT_INIT, lpp_value(V))
    with pytest.raises(InvariantViolation, match="on pfault_list"):
        guest.release_task(tasks[V])


# ---------------------------------------------------------------------------------- properties


# (kind, cpu, arg) with kinds repeated to weight them; arg picks a task or a variant
GUEST_EVENT = st.tuples(
    st.sampled_from(["init"] * 4 + ["init_other", "done", "done", "resched", "resched",
                     "spurious", "sleep", "cpu_dead", "noise"]),
    st.integers(0, 1), st.sampled_from([T, U, V]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GUEST_EVENT, max_size=50))
def test_property_guest_invariants_hold_under_any_interleaving(events):
    """Random orders of INIT (for the CPU's current task, or another one), DONE on either CPU,
    return-to-user / slice-end schedules, spurious wake-ups, ordinary interruptible sleeps,
    CPU-dead and foreign interrupts: INV-S1..S5 hold after every event; usage == 1 + list
    reference for every task; and once every task has been woken from ordinary sleep and has
    received one more DONE, the list is empty and no task is left in D-state (INV-S4, no lost
    wake-up)."""
    sim, sched, ex, tasks, kernel, guest, host = world(with_host=False)
    for kind, cpu, arg in events:
        cur = sched.current(cpu)
        if kind == "init":
            if cur is not None and cur.state is TaskState.RUNNING:  # raised in user code only
                guest.pfault_interrupt(cpu, EXT_IRQ_CP_SERVICE, PFAULT_INIT, lpp_value(cur.tid))
        elif kind == "init_other":
            if tasks[arg] is not cur:
                guest.pfault_interrupt(cpu, EXT_IRQ_CP_SERVICE, PFAULT_INIT, lpp_value(arg))
        elif kind == "done":
            guest.pfault_interrupt(cpu, EXT_IRQ_CP_SERVICE, PFAULT_DONE, lpp_value(arg))
        elif kind == "resched":
            if cpu in kernel.need_resched:
                kernel.return_to_user(cpu)
            elif cur is not None:
                sched.schedule(cpu, preempted=True)
                sim.run()
        elif kind == "spurious":
            sched.wake_up(tasks[arg])
            sim.run()
        elif kind == "sleep":
            # e.g. nanosleep; a task on the list is re-executing its faulting instruction
            if (cur is not None and cur.state is TaskState.RUNNING
                    and guest.pfault_wait(cur.tid) != 1 and cpu not in kernel.need_resched):
                cur.state = TaskState.INTERRUPTIBLE
                sched.schedule(cpu, preempted=False)
                sim.run()
        elif kind == "cpu_dead":
            guest.cpu_dead(cpu)
            sim.run()
        else:
            code = EXT_IRQ_CP_SERVICE if arg == T else 0x1004
            guest.pfault_interrupt(cpu, code, 0x0D00 if arg == U else PFAULT_INIT, lpp_value(T))
        guest.check_invariants()
        for task in tasks.values():
            assert task.usage == 1 + guest.list_refs(task.tid)
    for cpu in (0, 1):
        kernel.return_to_user(cpu)
    for task in tasks.values():
        if task.state is TaskState.INTERRUPTIBLE:
            sched.wake_up(task)
    for tid in (T, U, V):
        guest.pfault_interrupt(0, EXT_IRQ_CP_SERVICE, PFAULT_DONE, lpp_value(tid))
    sim.run()
    guest.check_invariants()
    assert guest.pfault_list == ()
    assert all(t.state is not TaskState.UNINTERRUPTIBLE for t in tasks.values())
    assert all(t.usage == 1 for t in tasks.values())


HOST_EVENT = st.tuples(
    st.sampled_from(["fault"] * 3 + ["kernel_fault", "start", "start", "done", "pre_run",
                     "pre_run", "pre_run_masked", "cancel", "token", "reset"]),
    st.integers(0, 1), st.integers(0, 99))


@settings(max_examples=150, deadline=None)
@given(st.lists(HOST_EVENT, max_size=60))
def test_property_host_ownership_under_any_interleaving(events):
    """Random orders of user/kernel faults, worker starts and returns, vCPU entries (ext on or
    off), CANCEL / TOKEN handshakes and resets (which block the vCPU until its work returns):
    the host invariants hold after every event (debug mode), and after every worker has
    finished and every vCPU has entered once more, every item was freed exactly once and each
    DONE injected was delivered or is still floating."""
    host = PfaultHost(2, debug=True)
    pending: list = []
    running: list = []
    for cpu in (0, 1):
        host.diag258(cpu, 0x1000, pfault_init_refbk())
    for kind, cpu, arg in events:
        blocked = host.queues.vcpus[cpu].clearing
        if kind in ("fault", "kernel_fault") and not blocked:
            res = host.page_fault(cpu, arg % 6, USER if kind == "fault" else KERNEL, CR0,
                                  lpp_value(T))
            if res.work is not None:
                pending.append(res.work)
        elif kind == "start" and pending:
            work = pending.pop(arg % len(pending))
            host.work_started(work)
            running.append(work)
        elif kind == "done" and running:
            host.work_done(running.pop(arg % len(running)))
        elif kind in ("pre_run", "pre_run_masked") and not blocked:
            host.pre_run(cpu, psw_mask(True, ext_enabled=kind == "pre_run"))
        elif kind == "cancel" and not blocked:
            host.diag258(cpu, 0x1000, pfault_fini_refbk())
        elif kind == "token" and not blocked:
            host.diag258(cpu, 0x1000, pfault_init_refbk())
        elif kind == "reset" and not blocked:
            host.vcpu_reset(cpu)
    for work in pending:
        host.work_started(work)
    for work in pending + running:
        host.work_done(work)
    for cpu in (0, 1):
        while host.pre_run(cpu, USER) is not None:
            pass
    assert not host.queues.live and all(n == 1 for n in host.queues.frees.values())
    assert host.done_injected == host.done_delivered + len(host.floating)
