"""x86 KVM async page fault, guest and host halves: scenarios 10-19 of docs/scenarios.md (Linux).

Every test drives the protocol objects by hand in a fixed order, with the real
:class:`~pfsim.sched.Scheduler` (2 guest CPUs, no idle balancing) for the guest's tasks.
:func:`world` boots both vCPUs the Linux way: MSR_KVM_ASYNC_PF_INT = 0xf3, then
MSR_KVM_ASYNC_PF_EN = ENABLED | DELIVERY_AS_INT | DELIVERY_AS_PF_VMEXIT, which queues one
wakeup_all item per vCPU; that broadcast (~0) is delivered and ACKed during boot, so every test
starts with empty queues, free token slots and ``apf.id == 0`` (first token on vCPU v is
``(1 << 12) | v``).

Placement after :func:`world`: T (tid 1) runs on CPU 0, V (tid 3) on CPU 1, U (tid 2) waits on
CPU 0's queue, W (tid 4) on CPU 1's queue.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.engine import Simulator
from pfsim.errors import InvariantViolation
from pfsim.guest.apf_kvm import KvmApfGuest, NotPresentOutcome, WakeKind
from pfsim.hypervisor.apf_gfn_hash import GFN_EMPTY, GfnHash
from pfsim.hypervisor.apf_kvm import KvmApfHost, X86FaultContext, X86FaultOutcome
from pfsim.hypervisor.async_pf import WorkState
from pfsim.machine.apf_kvm_abi import BROADCAST_TOKEN, KVM_PV_REASON_PAGE_NOT_PRESENT, hash_32
from pfsim.sched import Scheduler, Task, TaskState

T, U, V, W = 1, 2, 3, 4
G = 0x1234  # home slot hash_32(0x1234, 6): 0x1234 * 0x61C88647 = 0xf62c446c (u32) >> 26 = 61
G_HOME = 61


class RecordingExecutor:
    """Stands in for the guest executor: records every (time, cpu, tid) start."""

    def __init__(self, sched: Scheduler) -> None:
        self.starts: list[tuple[int, int, int]] = []
        sched.executor = self

    def start(self, cpu: int, task: Task, now: int) -> None:
        self.starts.append((now, cpu, task.tid))


class World:
    """Guest + host + scheduler, and the glue a guest executor / hypervisor would provide."""

    def __init__(self, alloc_dummy=None) -> None:
        self.sim = Simulator()
        self.sched = Scheduler(self.sim, 2, timeslice_ns=1_000_000, switch_ns=0,
                               idle_balance=False, name="guest")
        self.ex = RecordingExecutor(self.sched)
        self.tasks = {tid: Task(tid, name)
                      for tid, name in ((T, "T"), (U, "U"), (V, "V"), (W, "W"))}
        for tid in (T, V, U, W):
            self.sched.add_task(self.tasks[tid])
        self.sim.run()
        self.guest = KvmApfGuest(2, self.sched.wake_up, alloc_dummy=alloc_dummy, debug=True)
        self.host = KvmApfHost(2, debug=True)
        for cpu in (0, 1):
            vec, en = self.guest.cpu_init(cpu)
            assert not self.host.msr_write_int(cpu, vec).gp
            assert self.host.msr_write_en(cpu, en, self.guest.areas[cpu]).apf_ready_requested
            (done,) = self.host.enter_guest(cpu).completions
            assert done.token == BROADCAST_TOKEN and done.page_ready and done.vector == 0xF3
            ready = self.ready_interrupt(cpu)
            assert ready.wake is not None and ready.wake.kind is WakeKind.BROADCAST
        assert self.host.queues.frees == {1: 1, 2: 1}

    def ready_interrupt(self, cpu: int):
        """Vector 0xf3 on ``cpu``: the guest handler, then its ACK write to the host."""
        ready = self.guest.page_ready_interrupt(cpu)
        self.acked = self.host.msr_write_ack(cpu, 1).completions if ready.ack else []
        return ready

    def user_fault(self, cpu: int, gfn: int, **ctx):
        """The task running on ``cpu`` touches ``gfn`` (host-major); on ASYNC_INJECTED the #PF
        is delivered and, if it sleeps, CPU ``cpu`` schedules away."""
        task = self.sched.current(cpu)
        res = self.host.page_fault(cpu, gfn, X86FaultContext(**ctx))
        if res.outcome is X86FaultOutcome.ASYNC_INJECTED:
            out = self.guest.handle_async_pf(cpu, task, res.token, user_mode=True,
                                             irqs_enabled=True)
            if out is NotPresentOutcome.SLEEP:
                self.sched.schedule(cpu, preempted=False)
                self.sim.run()
        return res

    def complete(self, work) -> None:
        self.host.work_started(work)
        self.host.work_done(work)


def world(**kw) -> World:
    return World(**kw)


# ---------------------------------------------------------------------------------- scenario 10


def test_scenario_10_normal_pv_order():
    """Scenario 10.  T on vCPU0 (CPL 3) hits host-major gfn G = 0x1234.

    Host: token t = (1 << 12) | 0 = 0x1000, gfn hash = {61: G} (slot = hash_32(G, 6)), queued
    1, guest flags = PAGE_NOT_PRESENT, #PF(t) injected.  Guest: flags read and zeroed, a real
    node {0x1000, cpu 0, T} in bucket hash_32(0x1000, 8) = 136, T UNINTERRUPTIBLE; schedule()
    runs U on CPU 0.  Worker returns: KVM_REQ_APF_READY (done was empty) and a kick.  Entry:
    prefault of G, gfn removed (hash empty), slot = 0x1000, pageready_pending, vector 0xf3,
    queued 0, the item freed once.  Guest handler: node unlinked, T woken (RUNNABLE on CPU 0),
    slot zeroed, ACK: pageready_pending cleared.  T runs again: wait_resume -> done.
    """
    w = world()
    host, guest, t = w.host, w.guest, w.tasks[T]
    res = w.user_fault(0, G)
    assert res.outcome is X86FaultOutcome.ASYNC_INJECTED and res.token == 0x1000
    assert host.vcpus[0].gfns.contents() == {G_HOME: G} and host.queued(0) == 1
    assert res.work.notpresent_injected and guest.areas[0].flags == 0
    assert guest.buckets[136] == [guest.find(0x1000)] and guest.find(0x1000).task is t
    assert t.state is TaskState.UNINTERRUPTIBLE and w.sched.current(0) is w.tasks[U]

    host.work_started(res.work)
    done = host.work_done(res.work)
    assert done.apf_ready_requested and done.kick
    enter = host.enter_guest(0)
    (c,) = enter.completions
    assert enter.entered and c.token == 0x1000 and c.prefault_gfn == G and c.page_ready
    assert host.vcpus[0].gfns.contents() == {} and host.queued(0) == 0
    assert guest.areas[0].token == 0x1000 and host.vcpus[0].pageready_pending
    assert host.queues.frees[res.work.serial] == 1

    ready = w.ready_interrupt(0)
    assert ready.ack and ready.wake.kind is WakeKind.WOKEN and ready.wake.woken == [t]
    assert guest.areas[0].token == 0 and not host.vcpus[0].pageready_pending
    assert t.state is TaskState.RUNNABLE and list(w.sched.cpus[0].queue) == [t]
    assert guest.nodes() == []
    w.sched.schedule(0, preempted=True)
    w.sim.run()
    assert w.sched.current(0) is t and guest.wait_resume(t) and not guest.is_waiting(t)


def test_spurious_wake_of_a_sleeper_sleeps_again():
    """INV-X2 / the wait loop: T sleeps on 0x1000, U runs.  A spurious wake-up makes T run
    again: its node is still linked, so wait_resume says "sleep again" (T UNINTERRUPTIBLE) and
    CPU 0 goes back to U.  The real page-ready unlinks the node and wakes T; then the wait ends."""
    w = world()
    guest, t = w.guest, w.tasks[T]
    assert guest.not_present(0, t, 0x1000, True, True) is NotPresentOutcome.SLEEP
    w.sched.schedule(0, preempted=False)
    w.sim.run()
    assert w.sched.wake_up(t)
    w.sched.schedule(0, preempted=True)
    w.sim.run()
    assert w.sched.current(0) is t and not guest.wait_resume(t)
    assert t.state is TaskState.UNINTERRUPTIBLE and guest.find(0x1000).linked
    w.sched.schedule(0, preempted=False)
    w.sim.run()
    assert w.sched.current(0) is w.tasks[U]
    assert guest.page_ready(0, 0x1000).woken == [t]
    w.sched.schedule(0, preempted=True)
    w.sim.run()
    assert w.sched.current(0) is t and guest.wait_resume(t) and not guest.is_waiting(t)


# ---------------------------------------------------------------------------------- scenario 11


def test_scenario_11_second_fault_on_the_same_gfn_apf_halts():
    """Scenario 11.  T waits for G on vCPU0; U (now running on CPU 0) touches G too: the gfn is
    outstanding on this vCPU, so no new item (queued stays 1, repeated_faults 1) and the next
    entry APF-halts the vCPU.  It is not runnable until an interrupt arrives; after that
    interrupt it re-enters, U retries, halts again.  The worker's return makes it runnable
    (done non-empty): unblock, enter: page-ready for T's token, prefault of G, halted cleared.
    """
    w = world()
    host = w.host
    res = w.user_fault(0, G)
    assert w.sched.current(0) is w.tasks[U]
    again = w.user_fault(0, G)
    assert again.outcome is X86FaultOutcome.APF_HALT_REPEATED and again.work is None
    assert host.queued(0) == 1 and host.vcpus[0].repeated_faults == 1
    assert not host.enter_guest(0).entered and host.vcpus[0].halted
    assert not host.runnable(0)
    assert host.runnable(0, interrupt_pending=True)
    host.unblock(0)
    enter = host.enter_guest(0)  # the interrupt is delivered; the guest may switch tasks
    assert enter.entered and enter.completions == []
    assert w.user_fault(0, G).outcome is X86FaultOutcome.APF_HALT_REPEATED
    assert not host.enter_guest(0).entered

    w.host.work_started(res.work)
    assert host.work_done(res.work).apf_ready_requested
    assert host.runnable(0)
    host.unblock(0)
    (c,) = host.enter_guest(0).completions
    assert c.token == 0x1000 and c.page_ready and c.prefault_gfn == G
    assert not host.vcpus[0].halted and host.queued(0) == 0


# ---------------------------------------------------------------------------------- scenario 12


def test_scenario_12_same_gfn_from_another_vcpu_gets_its_own_item():
    """Scenario 12.  T on vCPU0 and V on vCPU1 both fault on G: the gfn hash is per vCPU, so two
    items with tokens 0x1000 and 0x1001, G in both hashes at slot 61.  Both complete: each vCPU
    receives its own page-ready and each sleeper is woken; every item freed once."""
    w = world()
    r0 = w.user_fault(0, G)
    r1 = w.user_fault(1, G)
    assert (r0.token, r1.token) == (0x1000, 0x1001) and r0.work is not r1.work
    assert w.host.vcpus[0].gfns.contents() == w.host.vcpus[1].gfns.contents() == {G_HOME: G}
    for cpu, res, tid in ((0, r0, T), (1, r1, V)):
        w.complete(res.work)
        (c,) = w.host.enter_guest(cpu).completions
        assert c.token == res.token
        assert w.ready_interrupt(cpu).wake.woken == [w.tasks[tid]]
    assert w.host.queues.frees[r0.work.serial] == w.host.queues.frees[r1.work.serial] == 1


# ---------------------------------------------------------------------------------- scenario 13


def test_scenario_13_queue_full_goes_synchronous():
    """Scenario 13.  64 outstanding items on vCPU0 (gfns 0..63, tokens (1..64) << 12): the hash
    holds all 64 gfns (every slot used, each reachable from its home).  The 65th host-major
    fault gets a token ((65 << 12), the counter advanced anyway) but kvm_setup_async_pf refuses:
    synchronous, sync_faults 1, queued stays 64.  Once one item completes, async works again."""
    w = world()
    host = w.host
    works = []
    for gfn in range(64):
        res = host.page_fault(0, gfn)
        assert res.outcome is X86FaultOutcome.ASYNC_INJECTED and res.token == (gfn + 1) << 12
        works.append(res.work)
    assert host.queued(0) == 64 and len(host.vcpus[0].gfns.contents()) == 64
    full = host.page_fault(0, 64)
    assert full.outcome is X86FaultOutcome.SYNC and full.reason == "queue_full"
    assert full.token == 65 << 12 and host.vcpus[0].sync_faults == 1 and host.queued(0) == 64
    w.complete(works[0])
    assert host.enter_guest(0).completions[0].token == 1 << 12
    assert host.page_fault(0, 64).outcome is X86FaultOutcome.ASYNC_INJECTED


def test_token_counter_wraps_to_one_and_never_yields_zero():
    """alloc_apf_token: with id = 2**20 - 1 the token is 0xFFFFF000; the next id (2**20) would
    give id << 12 == 0 in u32, so id restarts at 1: token 0x1000 again."""
    w = world()
    w.host.vcpus[0].id = (1 << 20) - 1
    assert w.host.page_fault(0, 1).token == 0xFFFFF000
    assert w.host.page_fault(0, 2).token == 0x1000


# ---------------------------------------------------------------------------------- scenario 14


def test_scenario_14_kernel_mode_fault_halts_without_page_ready():
    """Scenario 14, CPL 0 with interrupts allowed.  An item is created (token 0x1000, G
    hashed) but send_user_only forbids injection: flags stay 0, notpresent_injected False,
    APF halt.  Completion unhalts the vCPU, removes G from the hash and delivers no page-ready
    (slot stays 0, pageready_pending False).  With IF=0 the fault is synchronous: no item."""
    w = world()
    host = w.host
    res = host.page_fault(0, G, X86FaultContext(cpl=0))
    assert res.outcome is X86FaultOutcome.ASYNC_HALTED and not res.work.notpresent_injected
    assert w.guest.areas[0].flags == 0 and host.vcpus[0].gfns.contents() == {G_HOME: G}
    assert not host.enter_guest(0).entered
    w.complete(res.work)
    assert host.runnable(0)
    host.unblock(0)
    (c,) = host.enter_guest(0).completions
    assert not c.page_ready and c.prefault_gfn == G
    assert w.guest.areas[0].token == 0 and not host.vcpus[0].pageready_pending
    assert host.vcpus[0].gfns.contents() == {} and not host.vcpus[0].halted

    sync = host.page_fault(0, G, X86FaultContext(interrupts_allowed=False))
    assert sync.outcome is X86FaultOutcome.SYNC and sync.work is None
    assert sync.reason == "cannot_do_async:interrupts_not_allowed" and host.queued(0) == 0


def test_scenario_14_guest_panics_if_the_host_injects_anyway():
    """``__kvm_handle_async_pf``: an async #PF in kernel mode or with IF=0 panics the guest
    (reported, not raised); flags 0 is an ordinary #PF; flags other than NOT_PRESENT warn and
    are consumed."""
    w = world()
    guest, t = w.guest, w.tasks[T]
    assert guest.handle_async_pf(0, t, 0x1000, True, True) is NotPresentOutcome.NOT_ASYNC
    for user, irqs, outcome in ((False, True, NotPresentOutcome.PANIC_KERNEL_MODE),
                                (True, False, NotPresentOutcome.PANIC_IRQS_DISABLED)):
        guest.areas[0].flags = KVM_PV_REASON_PAGE_NOT_PRESENT
        assert guest.handle_async_pf(0, t, 0x1000, user, irqs) is outcome
    guest.areas[0].flags = 4
    assert guest.handle_async_pf(0, t, 0x1000, True, True) is NotPresentOutcome.UNEXPECTED_FLAGS
    assert len(guest.warnings) == 1 and guest.nodes() == [] and t.state is TaskState.RUNNING


# ---------------------------------------------------------------------------------- scenario 15


def test_scenario_15_wake_before_wait_uses_a_dummy():
    """Scenario 15.  READY(0x1000) on CPU 0 before the #PF is processed: no node, so a dummy
    {0x1000, cpu 0} goes into bucket 136 (dummies_allocated 1).  NOT_PRESENT(0x1000) for T then
    finds and frees it: T does not sleep (stays RUNNING), table empty, dummies_freed 1."""
    w = world()
    guest, t = w.guest, w.tasks[T]
    wake = guest.page_ready(0, 0x1000)
    assert wake.kind is WakeKind.DUMMY_INSERTED and wake.woken == []
    (dummy,) = guest.buckets[136]
    assert dummy.is_dummy and dummy.cpu == 0 and guest.dummies_allocated == 1
    assert guest.not_present(0, t, 0x1000, True, True) is NotPresentOutcome.NO_SLEEP
    assert guest.nodes() == [] and guest.dummies_freed == 1 and t.state is TaskState.RUNNING


def test_scenario_15_dummy_allocation_failure_retries_until_the_waiter_appears():
    """Scenario 15, second half.  The dummy allocation fails: the waker returns RETRY (still
    spinning, nothing inserted, no ACK).  T's NOT_PRESENT then queues a real node and sleeps.
    The retried handler finds it and wakes T; the slot is zeroed and ACKed; no dummy was ever
    allocated (allocated 0, failures 1)."""
    fail = [True]
    w = world(alloc_dummy=lambda token: not fail[0])
    guest, t = w.guest, w.tasks[T]
    guest.areas[0].token = 0x1000  # the host's page-ready, as check_completion writes it
    first = guest.page_ready_interrupt(0)
    assert not first.ack and first.wake.kind is WakeKind.RETRY and guest.nodes() == []
    assert guest.areas[0].token == 0x1000
    assert guest.not_present(0, t, 0x1000, True, True) is NotPresentOutcome.SLEEP
    w.sched.schedule(0, preempted=False)
    w.sim.run()
    second = guest.page_ready_interrupt(0)
    assert second.ack and second.wake.kind is WakeKind.WOKEN and second.wake.woken == [t]
    assert guest.areas[0].token == 0 and guest.nodes() == []
    assert (guest.dummies_allocated, guest.dummy_alloc_failures) == (0, 1)


def test_scenario_15_waiter_appears_while_the_dummy_is_allocated():
    """Scenario 15, the re-search: while the waker allocates its dummy (bucket lock dropped),
    another CPU queues T's node for the same token.  The waker's re-search finds it, wakes T
    and frees the unused dummy: no duplicate token (INV-X1), allocated 1 = freed 1."""
    holder: dict = {}

    def alloc(token: int) -> bool:
        w = holder["w"]
        assert w.guest.not_present(1, w.tasks[V], token, True, True) is NotPresentOutcome.SLEEP
        return True

    w = world(alloc_dummy=alloc)
    holder["w"] = w
    wake = w.guest.page_ready(1, 0x1001)
    assert wake.kind is WakeKind.WOKEN and wake.woken == [w.tasks[V]]
    assert w.guest.nodes() == [] and w.guest.dummies_allocated == w.guest.dummies_freed == 1
    assert w.tasks[V].state is TaskState.RUNNING  # still on its CPU: the wake was not lost


# ---------------------------------------------------------------------------------- scenario 16


def test_scenario_16_one_page_ready_at_a_time():
    """Scenario 16.  T, U and a third task X (tid 5) sleep in turn on CPU 0 (tokens 0x1000,
    0x2000, 0x3000).  All three workers return before the guest ACKs anything; only the first
    requests APF_READY.  Entry: exactly one token in the slot (0x1000), two items left on done;
    a second completion pass delivers nothing while the slot is busy.  Each guest handler run
    (wake, slot zeroed, ACK) lets the ACK handler write the next token: 0x2000, then 0x3000.
    vCPU0's page-ready count: 1 at boot + 3."""
    w = world()
    host = w.host
    x = Task(5, "X")
    r1 = w.user_fault(0, 1)  # T sleeps, U runs
    r2 = w.user_fault(0, 2)  # U sleeps, CPU 0 idle
    w.sched.add_task(x)  # least loaded CPU: 0
    w.sim.run()
    r3 = w.user_fault(0, 3)  # X sleeps
    assert [r.token for r in (r1, r2, r3)] == [0x1000, 0x2000, 0x3000]
    firsts = []
    for res in (r1, r2, r3):
        host.work_started(res.work)
        firsts.append(host.work_done(res.work).apf_ready_requested)
    assert firsts == [True, False, False]
    (c,) = host.enter_guest(0).completions
    assert c.token == 0x1000 and w.guest.areas[0].token == 0x1000
    assert len(host.queues.vcpus[0].done) == 2 and host.vcpus[0].pageready_pending
    assert host.check_completion(0) == [] and w.guest.areas[0].token == 0x1000

    assert w.ready_interrupt(0).wake.woken == [w.tasks[T]]
    assert [c.token for c in w.acked] == [0x2000] and w.guest.areas[0].token == 0x2000
    assert w.ready_interrupt(0).wake.woken == [w.tasks[U]]
    assert [c.token for c in w.acked] == [0x3000]
    assert w.ready_interrupt(0).wake.woken == [x] and w.acked == []
    assert host.queued(0) == 0 and host.vcpus[0].pageready_injected == 4
    assert not host.vcpus[0].pageready_pending and w.guest.areas[0].token == 0


# ---------------------------------------------------------------------------------- scenario 17


def test_scenario_17_broadcast_wakes_only_the_receiving_cpu():
    """Scenario 17.  T sleeps on CPU 0 (token 0x1000), V on CPU 1 (0x1001), and a stale dummy
    (0x7000) sits on CPU 0.  The guest rewrites MSR_KVM_ASYNC_PF_EN on vCPU0 (e.g. after
    migration): done is empty, so a wakeup_all item is queued (queued 2) and APF_READY
    requested.  Entry delivers token ~0 on vCPU0 only; the guest wakes T and unlinks the CPU-0
    dummy without freeing it (dummies_leaked 1); V's node on CPU 1 stays, V keeps sleeping.
    T's real item is still outstanding on the host (queued 1, G hashed)."""
    w = world()
    host, guest = w.host, w.guest
    w.user_fault(0, G)
    w.user_fault(1, G + 1)
    guest.page_ready(0, 0x7000)
    _, en = guest.cpu_init(0)
    msr = host.msr_write_en(0, en, guest.areas[0])
    assert msr.apf_ready_requested and host.queued(0) == 2
    (c,) = host.enter_guest(0).completions
    assert c.token == BROADCAST_TOKEN and c.page_ready and c.prefault_gfn is None
    ready = w.ready_interrupt(0)
    assert ready.wake.kind is WakeKind.BROADCAST and ready.wake.woken == [w.tasks[T]]
    assert [n.token for n in guest.nodes()] == [0x1001] and guest.dummies_leaked == 1
    assert w.tasks[V].state is TaskState.UNINTERRUPTIBLE
    assert host.queued(0) == 1 and host.vcpus[0].gfns.contents() == {G_HOME: G}


# ---------------------------------------------------------------------------------- scenario 18


def test_scenario_18_guest_cpu_offline():
    """Scenario 18.  V and W sleep on CPU 1 (tokens 0x1001, 0x2001); V's worker is running, W's
    has not started.  CPU 1 goes offline: the guest disables async PF (MSR_EN = 0) and wakes
    both sleepers (bucket order: 0x2001 in bucket 114 before 0x1001 in 234).  The host's
    disable clears vCPU1: W's item is cancelled and freed at once, the thread waits for V's;
    hash reset.  V's worker returns: the clear finishes (queued 0, each item freed once, no
    page-ready on vCPU1).  V and W run on CPU 0 and re-fault there: new vCPU0 tokens."""
    w = world()
    host, guest = w.host, w.guest
    rv = w.user_fault(1, 0x10)
    rw = w.user_fault(1, 0x20)
    assert (rv.token, rw.token) == (0x1001, 0x2001)
    host.work_started(rv.work)
    w.sched.cpus[1].online = False
    off = guest.cpu_offline(1)
    assert off.msr_disable and off.woken == [w.tasks[W], w.tasks[V]]
    msr = host.msr_write_en(1, 0, None)
    assert msr.wait_for == [rv.work] and rw.work.state is WorkState.CANCELLED
    assert host.queues.frees[rw.work.serial] == 1 and host.vcpus[1].gfns.contents() == {}
    done = host.work_done(rv.work)
    assert done.clear_finished and host.queued(1) == 0
    assert host.queues.frees[rv.work.serial] == 1 and guest.areas[1].token == 0
    assert host.vcpus[1].pageready_injected == 1  # only the boot broadcast

    w.sim.run()
    for tid in (W, V):
        task = w.tasks[tid]
        for _ in range(4):
            if w.sched.current(0) is task:
                break
            w.sched.schedule(0, preempted=True)
            w.sim.run()
        assert w.sched.current(0) is task and guest.wait_resume(task)
        res = w.user_fault(0, 0x10 if tid == V else 0x20)
        assert res.token & 0xFFF == 0  # a vCPU0 token


# ---------------------------------------------------------------------------------- scenario 19


def test_scenario_19_vcpu_reset_with_in_flight_io():
    """Scenario 19, reset.  vCPU0 holds A (worker not started), B (running) and C (returned, on
    done).  A full reset drops A (cancelled, freed now), frees C from done, and waits for B;
    the vCPU thread may not act meanwhile.  B's return finishes the clear: queued 0, hash
    empty, not halted, no page-ready injected (slot 0), MSRs zeroed; A, B, C each freed once."""
    w = world()
    host = w.host
    a = host.page_fault(0, 0xA).work
    b = host.page_fault(0, 0xB).work
    c = host.page_fault(0, 0xC).work
    host.work_started(b)
    host.work_started(c)
    host.work_done(c)
    injected = host.vcpus[0].pageready_injected
    wait = host.vcpu_reset(0)
    assert wait == [b] and a.state is WorkState.CANCELLED
    assert host.queues.frees.get(a.serial) == 1 and host.queues.frees.get(c.serial) == 1
    assert b.serial not in host.queues.frees
    with pytest.raises(InvariantViolation, match="blocked in a queue clear"):
        host.enter_guest(0)
    assert host.work_done(b).clear_finished
    assert host.queued(0) == 0 and host.vcpus[0].gfns.contents() == {}
    assert not host.vcpus[0].halted and w.guest.areas[0].token == 0
    assert host.vcpus[0].pageready_injected == injected and host.vcpus[0].msr_en_val == 0
    assert [host.queues.frees[x.serial] for x in (a, b, c)] == [1, 1, 1]


def test_scenario_19_vm_destroy_with_in_flight_io():
    """Scenario 19, teardown.  Items on both vCPUs: one pending and one running on vCPU0, one
    running on vCPU1.  Destroy cancels the pending one and waits for the two running ones; when
    they return nothing is injected and every item ever allocated (2 boot + 3) is freed
    exactly once, nothing left alive."""
    w = world()
    host = w.host
    p0 = host.page_fault(0, 1).work
    r0 = host.page_fault(0, 2).work
    r1 = host.page_fault(1, 3).work
    host.work_started(r0)
    host.work_started(r1)
    waits = host.destroy()
    assert waits == {0: [r0], 1: [r1]} and p0.state is WorkState.CANCELLED
    assert host.work_done(r0).clear_finished and host.work_done(r1).clear_finished
    assert host.queues.allocated == 5 and sorted(host.queues.frees.values()) == [1] * 5
    assert not host.queues.live and w.guest.areas[0].token == w.guest.areas[1].token == 0


# ---------------------------------------------------------------------------------- details


def test_paging_toggle_clears_queue_and_hash():
    """kvm_post_set_cr0 with CR0.PG changed: the not-started item is cancelled and freed, the
    gfn hash reset, queued 0, no page-ready; later faults allocate tokens from the same id."""
    w = world()
    res = w.host.page_fault(0, G)
    assert w.host.paging_toggled(0) == [] and res.work.state is WorkState.CANCELLED
    assert w.host.queued(0) == 0 and w.host.vcpus[0].gfns.contents() == {}
    assert w.host.page_fault(0, G).token == 0x2000


def test_gfn_hash_backward_shift_deletion():
    """kvm_del_async_pf_gfn.  Homes: 34 and 89 -> 63, 55 -> 0, 21 and 76 -> 1.  Insert 34, 89,
    55, 21: slots {63: 34, 0: 89, 1: 55, 2: 21} (wrapping).  Deleting 34 shifts each follower
    back one slot: {63: 89, 0: 55, 1: 21}.  Separately {0: 55, 1: 21, 2: 76}: deleting 55
    moves nothing (21 and 76 are at or past home 1): {1: 21, 2: 76}."""
    assert [GfnHash.home(g) for g in (34, 89, 55, 21, 76)] == [63, 63, 0, 1, 1]
    h = GfnHash()
    for g in (34, 89, 55, 21):
        h.add(g)
    assert h.contents() == {63: 34, 0: 89, 1: 55, 2: 21}
    assert h.delete(34) and h.contents() == {63: 89, 0: 55, 1: 21}
    assert all(h.find(g) for g in (89, 55, 21)) and not h.find(34)
    assert not h.delete(34)  # Linux WARNs once
    h = GfnHash()
    for g in (55, 21, 76):
        h.add(g)
    assert h.delete(55) and h.contents() == {1: 21, 2: 76}
    h.check("test")
    assert h.slots[0] == GFN_EMPTY


def test_hash_32_matches_linux():
    """hash_32(val, bits) = (val * 0x61C88647 mod 2**32) >> (32 - bits)."""
    assert hash_32(0x1000, 8) == 136 and hash_32(0x1234, 6) == G_HOME
    assert hash_32(0, 8) == 0 and hash_32(0xFFFFFFFF, 8) == 0x9E


def test_msr_validation():
    """MSR_KVM_ASYNC_PF_EN: reserved bits 5:4 #GP; INT delivery without the CPUID bit #GP;
    ENABLED without DELIVERY_AS_INT counts as disabled (queue cleared).  MSR_KVM_ASYNC_PF_INT
    bits 63:8 #GP.  ACK without ASYNC_PF_INT #GP."""
    host = KvmApfHost(1, has_async_pf_int=False, debug=True)
    assert host.msr_write_en(0, 0x30 | 1, None).gp
    assert host.msr_write_en(0, 1 | 8, None).gp
    assert not host.msr_write_en(0, 1, None).gp and not host.vcpus[0].pv_enabled
    assert host.msr_write_int(0, 0x1F3).gp and host.msr_write_ack(0, 1).gp


# ---------------------------------------------------------------------------------- properties


# (kind, cpu, arg) with kinds repeated to weight them; arg picks a token, task or variant
GUEST_EVENT = st.tuples(
    st.sampled_from(["fault"] * 3 + ["ready", "ready", "ready_next", "broadcast", "offline",
                     "schedule", "schedule", "spurious", "alloc"]),
    st.integers(0, 1), st.integers(0, 40))


@settings(max_examples=150, deadline=None)
@given(st.lists(GUEST_EVENT, max_size=50))
def test_property_guest_sleep_table_invariants(events):
    """Random orders of not-present (fresh per-CPU tokens), page-ready for issued tokens, for
    the next token (wake before wait), broadcasts, CPU offline, schedules (a task that runs
    again re-checks its node), spurious wake-ups and dummy-allocation failures: INV-X1..X3 and
    dummy accounting hold after every event (debug mode); after a page-ready for every issued
    token, no task sleeps and nobody is left waiting."""
    fail = [False]
    w = world(alloc_dummy=lambda token: not fail[0])
    guest, sched = w.guest, w.sched
    ids = [1, 1]
    issued: list[tuple[int, int]] = []

    def run_cpu(cpu: int) -> None:
        for _ in range(6):
            cur = sched.current(cpu)
            if cur is None or not guest.is_waiting(cur) or guest.wait_resume(cur):
                return
            sched.schedule(cpu, preempted=False)
            w.sim.run()

    for kind, cpu, arg in events:
        run_cpu(cpu)  # a waiting task that runs again re-checks its node first
        if kind == "fault":
            cur = sched.current(cpu)
            if cur is not None and cur.state is TaskState.RUNNING and not guest.is_waiting(cur):
                token = (ids[cpu] << 12) | cpu
                ids[cpu] += 1
                issued.append((cpu, token))
                if guest.not_present(cpu, cur, token, True, True) is NotPresentOutcome.SLEEP:
                    sched.schedule(cpu, preempted=False)
                    w.sim.run()
        elif kind == "ready" and issued:
            node_cpu, token = issued[arg % len(issued)]
            guest.page_ready(node_cpu, token)
        elif kind == "ready_next":
            guest.page_ready(cpu, (ids[cpu] << 12) | cpu)
        elif kind == "broadcast":
            guest.page_ready(cpu, BROADCAST_TOKEN)
        elif kind == "offline":
            guest.cpu_offline(cpu)
        elif kind == "schedule":
            if sched.current(cpu) is not None and sched.current(cpu).state is TaskState.RUNNING:
                sched.schedule(cpu, preempted=True)
                w.sim.run()
            run_cpu(cpu)
        elif kind == "spurious":
            sched.wake_up(w.tasks[(T, U, V, W)[arg % 4]])
            w.sim.run()
        elif kind == "alloc":
            fail[0] = bool(arg % 2)
        guest.check_invariants()
    fail[0] = False
    for node_cpu, token in issued:
        guest.page_ready(node_cpu, token)
    w.sim.run()
    for _ in range(8):
        for cpu in (0, 1):
            run_cpu(cpu)
            if sched.current(cpu) is not None:
                sched.schedule(cpu, preempted=True)
            w.sim.run()
    guest.check_invariants()
    assert all(not t.is_sleeping for t in w.tasks.values())
    assert [n for n in guest.nodes() if not n.is_dummy] == []


HOST_EVENT = st.tuples(
    st.sampled_from(["fault"] * 3 + ["kernel_fault", "irq_off_fault", "start", "start", "done",
                     "enter", "enter", "guest_ack", "msr", "reset"]),
    st.integers(0, 1), st.integers(0, 99))


@settings(max_examples=150, deadline=None)
@given(st.lists(HOST_EVENT, max_size=60))
def test_property_host_invariants(events):
    """Random orders of user / kernel faults, worker starts and returns, vCPU entries (with the
    APF-halt block / unblock), the guest consuming its slot and ACKing, MSR enable / disable
    and resets: INV-H1..H5 hold after every event (debug mode); after every worker has returned
    and the VM is destroyed, every item was freed exactly once."""
    w = world()
    host = w.host
    areas = w.guest.areas
    pending: list = []
    running: list = []
    for kind, cpu, arg in events:
        blocked = host.queues.vcpus[cpu].clearing
        if kind in ("fault", "kernel_fault", "irq_off_fault") and not blocked:
            ctx = X86FaultContext(cpl=0 if kind == "kernel_fault" else 3,
                                  interrupts_allowed=kind != "irq_off_fault")
            res = host.page_fault(cpu, arg % 8, ctx)
            if res.work is not None:
                pending.append(res.work)
        elif kind == "start":
            pending = [x for x in pending if not x.freed]  # resets cancel pending work
            if pending:
                work = pending.pop(arg % len(pending))
                host.work_started(work)
                running.append(work)
        elif kind == "done" and running:
            host.work_done(running.pop(arg % len(running)))
        elif kind == "enter" and not blocked:
            if host.vcpus[cpu].halted:
                if host.runnable(cpu, interrupt_pending=arg % 2 == 1):
                    host.unblock(cpu)
            else:
                host.enter_guest(cpu)
        elif kind == "guest_ack" and not blocked and areas[cpu].token:
            areas[cpu].token = 0
            host.msr_write_ack(cpu, 1)
        elif kind == "msr" and not blocked:
            host.msr_write_en(cpu, 0b1001 if arg % 2 else 0, areas[cpu])
        elif kind == "reset" and not blocked:
            host.vcpu_reset(cpu, init_event=arg % 2 == 1)
    for work in running:  # lets every clear still in progress finish
        host.work_done(work)
    pending = [x for x in pending if not x.freed]
    for work in pending[::2]:
        host.work_started(work)
    waits = host.destroy()
    assert sorted(x.serial for ws in waits.values() for x in ws) == [x.serial for x in pending[::2]]
    for work in pending[::2]:
        host.work_done(work)
    assert all(not v.clearing for v in host.queues.vcpus)
    assert not host.queues.live and all(n == 1 for n in host.queues.frees.values())
