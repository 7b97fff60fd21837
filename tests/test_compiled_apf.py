"""Differential tests: the compiled async-PF protocol halves against the Python reference classes.

Each test drives a Python reference pair (``KvmApfHost`` + ``KvmApfGuest``, or ``PfaultHost`` +
``PfaultGuest``, all with ``debug=True``) and the compiled functions of
:mod:`pfsim.compiled.apf_kvm` / :mod:`pfsim.compiled.apf_s390` with the same operations, in the
order :mod:`pfsim.apf_modes` (KvmMode, S390Mode) issues them.  After every protocol
call the twin compares each returned value and the whole observable state (queues and done
lists in order, live work items, gfn hash slots, sleep-table buckets in order, shared areas,
pfault list order, pfault_wait values, counters, task states / usage / freed).  Expected values
come only from the Python objects; the compiled state is never compared with itself.

Tasks are the caller's task table: Python :class:`~pfsim.sched.Task` objects and int64 arrays,
changed identically on both sides by the driver (scheduling, exits, spurious wake-ups).  The
wake-ups Python performs inside a handler are applied to the arrays after the compiled call,
from the returned task ids, as the compiled caller does.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from pfsim.compiled import apf_kvm as K
from pfsim.compiled import apf_s390 as S
from pfsim.compiled.view import View
from pfsim.errors import InvariantViolation
from pfsim.guest.apf_kvm import KvmApfGuest, NotPresentOutcome, WakeKind
from pfsim.guest.apf_s390 import PfaultGuest, PfaultOutcome, lpp_value, pfault_init_refbk
from pfsim.hypervisor.apf_gfn_hash import GFN_EMPTY
from pfsim.hypervisor.apf_kvm import KvmApfHost, X86FaultContext, X86FaultOutcome
from pfsim.hypervisor.apf_s390 import PfaultHost, S390SyncReason
from pfsim.hypervisor.async_pf import WorkState
from pfsim.machine.apf_kvm_abi import BROADCAST_TOKEN
from pfsim.machine.apf_s390_abi import (
    CR0_SERVICE_SIGNAL_SUBMASK,
    EXT_IRQ_CP_SERVICE,
    PSW_MASK_EXT,
    PSW_MASK_PSTATE,
)
from pfsim.sched import Task, TaskState

SLEEPING = (TaskState.INTERRUPTIBLE, TaskState.UNINTERRUPTIBLE)
WORK_STATE = {WorkState.PENDING: K.PENDING, WorkState.RUNNING: K.WORK_RUNNING,
              WorkState.RETURNED: K.RETURNED, WorkState.CANCELLED: K.CANCELLED}
FAULT = {X86FaultOutcome.SYNC: K.SYNC, X86FaultOutcome.APF_HALT_REPEATED: K.APF_HALT_REPEATED,
         X86FaultOutcome.ASYNC_INJECTED: K.ASYNC_INJECTED,
         X86FaultOutcome.ASYNC_HALTED: K.ASYNC_HALTED}
NOT_PRESENT = {NotPresentOutcome.NOT_ASYNC: K.NOT_ASYNC, NotPresentOutcome.SLEEP: K.SLEEP,
               NotPresentOutcome.NO_SLEEP: K.NO_SLEEP,
               NotPresentOutcome.PANIC_IRQS_DISABLED: K.PANIC_IRQS_DISABLED,
               NotPresentOutcome.PANIC_KERNEL_MODE: K.PANIC_KERNEL_MODE,
               NotPresentOutcome.UNEXPECTED_FLAGS: K.UNEXPECTED_FLAGS}
WAKE = {WakeKind.WOKEN: K.WOKEN, WakeKind.DUMMY_INSERTED: K.DUMMY_INSERTED,
        WakeKind.RETRY: K.RETRY, WakeKind.BROADCAST: K.BROADCAST}
PFAULT = {PfaultOutcome.NOT_PFAULT: S.NOT_PFAULT,
          PfaultOutcome.DROPPED_UNKNOWN_PID: S.DROPPED_UNKNOWN_PID,
          PfaultOutcome.WARN_NOT_CURRENT: S.WARN_NOT_CURRENT, PfaultOutcome.BLOCK: S.BLOCK,
          PfaultOutcome.REBLOCK: S.REBLOCK, PfaultOutcome.EARLY_CONSUMED: S.EARLY_CONSUMED,
          PfaultOutcome.WOKEN: S.WOKEN, PfaultOutcome.EARLY_RECORDED: S.EARLY_RECORDED,
          PfaultOutcome.LEFTOVER_IGNORED: S.LEFTOVER_IGNORED}
USER_PSW = PSW_MASK_EXT | PSW_MASK_PSTATE
CR0 = CR0_SERVICE_SIGNAL_SUBMASK


def _same(got: object, want: object, what: str) -> None:
    assert got == want, f"{what}: compiled {got!r} != python {want!r}"


def _live_slots(work: np.ndarray, serial_row: int, freed_row: int) -> dict[int, int]:
    """serial -> pool slot of every live compiled work item."""
    return {int(work[serial_row, w]): int(w) for w in np.flatnonzero(work[freed_row] == 0)}


# ================================================================================ KVM twin


class KvmTwin:
    """KvmMode's Python objects and the compiled state, driven together."""

    def __init__(self, nvcpus: int = 2, ntasks: int = 6) -> None:
        self.nv = nvcpus
        self.tasks = [Task(t, f"t{t}") for t in range(ntasks)]  # tid == task id
        self.hv = KvmApfHost(nvcpus, debug=True)
        self.guest = KvmApfGuest(nvcpus, wake_up=self._py_wake, debug=True)
        self.st = K.new_kvm_state(nvcpus, ntasks)
        self.view = View(self.st)  # what compiled functions receive
        self.state = np.array([int(t.state) for t in self.tasks], np.int64)
        self.freed = np.zeros(ntasks, np.int64)
        self.comp = np.zeros((2, 128), np.int64)
        self.woken = np.zeros(ntasks, np.int64)
        self.works: list[tuple[object, int]] = []  # started, not done: (python, compiled)
        self.pending_pf: list[list[tuple[int, bool]]] = [[] for _ in range(nvcpus)]
        self.undelivered: list[list] = [[] for _ in range(nvcpus)]  # page-ready not yet taken
        self.last_ready = None  # the last page_ready_interrupt result (Python)

    # ---------------------------------------------------------------- caller-owned task state

    @staticmethod
    def _py_wake(task: Task) -> bool:
        """The scheduler's ``wake_up`` as far as the protocol can tell."""
        if task.state not in SLEEPING:
            return False
        task.state = TaskState.RUNNABLE
        return True

    def _c_wake(self, t: int) -> None:
        if self.state[t] in (K.INTERRUPTIBLE, K.UNINTERRUPTIBLE):
            self.state[t] = K.RUNNABLE

    def set_state(self, t: int, state: TaskState) -> None:
        self.tasks[t].state = state
        self.state[t] = int(state)

    # ---------------------------------------------------------------- protocol calls

    def setup(self) -> None:
        for c in range(self.nv):  # KvmMode.setup
            int_val, en_val = self.guest.cpu_init(c)
            self.hv.msr_write_int(c, int_val)
            self.hv.msr_write_en(c, en_val, self.guest.areas[c])
        K.kvm_setup(self.view, self.nv)
        self.compare("setup")

    def fault(self, c: int, gfn: int, user: bool = True, irqs: bool = True):
        ctx = X86FaultContext(cpl=3 if user else 0, interrupts_allowed=irqs)
        res = self.hv.page_fault(c, gfn, ctx)
        outcome, token, w = K.kvm_page_fault(self.view, c, gfn, user, irqs)
        _same(outcome, FAULT[res.outcome], "page_fault outcome")
        _same(token, res.token or 0, "page_fault token")
        if res.reason is not None:
            _same(K.SYNC_REASONS[self.st[K.ST_HV][K.HV_SYNC_REASON, c]], res.reason, "reason")
        if res.work is None:
            _same(w, -1, "page_fault work")
        else:
            _same(int(self.st[K.ST_WORK][K.WK_SERIAL, w]), res.work.serial, "work serial")
            self.hv.work_started(res.work)  # KvmMode starts the worker at once
            assert K.kvm_work_started(self.view, w)
            self.works.append((res.work, w))
        if res.outcome is X86FaultOutcome.ASYNC_INJECTED:
            self.pending_pf[c].append((res.token, user))
        self.compare(f"fault({c}, {gfn:#x})")
        return res

    def work_done(self, i: int) -> None:
        py, w = self.works.pop(i)
        done = self.hv.work_done(py)
        got = K.kvm_work_done(self.view, w)
        _same(got, (int(done.apf_ready_requested), int(done.kick)), "work_done")
        self.compare("work_done")

    def _completions(self, comps, n: int) -> None:
        want = [(c.token, int(c.page_ready)) for c in comps]
        got = [(int(self.comp[K.COMP_TOKEN, i]), int(self.comp[K.COMP_PAGE_READY, i]))
               for i in range(n)]
        _same(got, want, "completions")

    def entry(self, c: int, interrupt_pending: bool = False, deliver: bool = True) -> bool:
        """KvmMode.on_entry, call by call; ``deliver`` False: the guest takes the page-ready
        interrupt later (:meth:`deliver`), so work can complete while it is pending."""
        if self.hv.vcpus[c].halted:
            assert K.kvm_is_halted(self.view, c)
            runnable = self.hv.runnable(c, interrupt_pending)
            _same(K.kvm_runnable(self.view, c, interrupt_pending), runnable, "runnable")
            if not runnable:
                return False
            self.hv.unblock(c)
            K.kvm_unblock(self.view, c)
        res = self.hv.enter_guest(c)
        entered, n = K.kvm_enter_guest(self.view, c, self.comp)
        _same(entered, int(res.entered), "entered")
        self._completions(res.completions, n)
        self.compare(f"enter_guest({c})")
        if res.entered and deliver:
            self.deliver(c, res.completions)
        elif res.entered:
            self.undelivered[c] += res.completions
        return res.entered

    def deliver(self, c: int, completions) -> None:
        """KvmMode._deliver: page-ready interrupt, then the ACK, while page-ready is raised."""
        while completions and any(comp.page_ready for comp in completions):
            self.ready_interrupt(c)
            ready_ack = self.last_ready.ack
            completions = self.hv.msr_write_ack(c, 1).completions if ready_ack else []
            if ready_ack:
                self._completions(completions, K.kvm_msr_write_ack(self.view, c, self.comp))
            self.compare(f"ack({c})")

    def ready_interrupt(self, c: int):
        ready = self.guest.page_ready_interrupt(c)
        ack, kind, n = K.kvm_page_ready_interrupt(self.view, c, self.woken)
        woken = [int(t) for t in self.woken[:n]]
        for t in woken:
            self._c_wake(t)
        _same(ack, int(ready.ack), "ack")
        _same(kind, -1 if ready.wake is None else WAKE[ready.wake.kind], "wake kind")
        _same(woken, [] if ready.wake is None else [t.tid for t in ready.wake.woken], "woken")
        self.last_ready = ready
        self.compare(f"page_ready_interrupt({c})")
        return ready

    def not_present(self, c: int, t: int, token: int, user: bool, irqs: bool = True):
        out = self.guest.handle_async_pf(c, self.tasks[t], token, user, irqs)
        got = K.kvm_handle_async_pf(self.view, c, t, token, user, irqs, self.state)
        _same(got, NOT_PRESENT[out], "handle_async_pf")
        self.compare(f"handle_async_pf({c}, task {t})")
        return out

    def resume(self, t: int) -> bool:
        self.set_state(t, TaskState.RUNNING)  # the scheduler picked the task
        done = self.guest.wait_resume(self.tasks[t])
        _same(K.kvm_wait_resume(self.view, t, self.state), done, "wait_resume")
        self.compare(f"wait_resume({t})")
        return done

    # ---------------------------------------------------------------- comparison

    def compare(self, where: str) -> None:
        st, hv_py, g = self.st, self.hv, self.guest
        sc, hv, work = st[K.ST_SC], st[K.ST_HV], st[K.ST_WORK]
        slots = _live_slots(work, K.WK_SERIAL, K.WK_FREED)
        q = hv_py.queues
        _same(sorted(slots), sorted(q.live), f"{where}: live items")
        for serial, py in q.live.items():
            w = slots[serial]
            want = [py.vcpu_id, py.gfn, py.token, py.wakeup_all, py.notpresent_injected,
                    WORK_STATE[py.state], py.on_queue, py.on_done]
            rows = (K.WK_VCPU, K.WK_GFN, K.WK_TOKEN, K.WK_WAKEUP_ALL, K.WK_NOTPRESENT_INJECTED,
                    K.WK_STATE, K.WK_ON_QUEUE, K.WK_ON_DONE)
            _same([int(work[r, w]) for r in rows], [int(x) for x in want], f"{where}: #{serial}")
        _same([int(sc[K.SC_SERIAL]), int(sc[K.SC_ALLOCATED]), int(sc[K.SC_FREED_TOTAL])],
              [q._serial, q.allocated, q.freed_total], f"{where}: serial/allocated/freed")
        for c, v in enumerate(hv_py.vcpus):
            qv = q.vcpus[c]
            serials = [int(work[K.WK_SERIAL, w]) for w in K.kvm_list(st, K.ST_QUEUE, c)]
            _same(serials, [w.serial for w in qv.queue], f"{where}: vCPU {c} queue")
            serials = [int(work[K.WK_SERIAL, w]) for w in K.kvm_list(st, K.ST_DONE, c)]
            _same(serials, [w.serial for w in qv.done], f"{where}: vCPU {c} done")
            area = -1 if v.area is None else [id(a) for a in g.areas].index(id(v.area))
            want = {K.HV_MSR_EN_VAL: v.msr_en_val, K.HV_MSR_INT_VAL: v.msr_int_val,
                    K.HV_VEC: v.vec, K.HV_ID: v.id, K.HV_SEND_USER_ONLY: v.send_user_only,
                    K.HV_DELIVERY_AS_PF_VMEXIT: v.delivery_as_pf_vmexit,
                    K.HV_PAGEREADY_PENDING: v.pageready_pending, K.HV_HALTED: v.halted,
                    K.HV_AREA: area, K.HV_REQ_APF_HALT: v.req_apf_halt,
                    K.HV_REQ_APF_READY: v.req_apf_ready, K.HV_SYNC_FAULTS: v.sync_faults,
                    K.HV_REPEATED_FAULTS: v.repeated_faults,
                    K.HV_NOTPRESENT_INJECTED: v.notpresent_injected,
                    K.HV_PAGEREADY_INJECTED: v.pageready_injected,
                    K.HV_WAKEUPS_QUEUED: v.wakeups_queued, K.HV_WARNINGS: len(v.warnings),
                    K.HV_QUEUED: qv.queued}
            _same({r: int(hv[r, c]) for r in want}, {r: int(x) for r, x in want.items()},
                  f"{where}: vCPU {c} host fields")
            gfns = [-1 if s == GFN_EMPTY else s for s in v.gfns.slots]
            _same([int(s) for s in st[K.ST_GFNS][c]], gfns, f"{where}: vCPU {c} gfn hash")
            a = g.areas[c]
            _same([int(st[K.ST_AREA][r, c]) for r in (K.AREA_FLAGS, K.AREA_TOKEN,
                                                       K.AREA_ENABLED)],
                  [a.flags, a.token, a.enabled], f"{where}: CPU {c} area")
        node = st[K.ST_NODE]
        buckets = [[(int(node[K.ND_TOKEN, n]), int(node[K.ND_CPU, n]), int(node[K.ND_TASK, n]))
                    for n in chain] for chain in K.kvm_buckets(st)]
        want_buckets = [[(n.token, n.cpu, -1 if n.task is None else n.task.tid) for n in b]
                        for b in g.buckets]
        _same(buckets, want_buckets, f"{where}: sleep table")
        waiting = [int(t) for t in np.flatnonzero(st[K.ST_WAITING])]
        _same(waiting, [t.tid for t in self.tasks if g.is_waiting(t)], f"{where}: waiters")
        linked = {n.task.tid for n in g.nodes() if n.task is not None}
        _same({t for t in waiting if node[K.ND_LINKED, t]}, linked, f"{where}: linked sleepers")
        counters = K.kvm_counters(st)
        for name in ("not_present_count", "sleeps", "page_ready_count", "broadcasts",
                     "irq_hv_callback_count", "dummies_allocated", "dummies_freed",
                     "dummies_leaked", "dummy_alloc_failures"):
            _same(counters[name], getattr(g, name), f"{where}: {name}")
        _same(counters["guest_warnings"], len(g.warnings), f"{where}: guest warnings")
        _same([int(s) for s in self.state], [int(t.state) for t in self.tasks],
              f"{where}: task states")
        _same(K.kvm_check(st, self.state, self.freed), "", f"{where}: kvm_check")


def _kvm_random_run(seed: int, steps: int) -> KvmTwin:
    """KvmMode-like random interleavings of faults, completions, entries and guest handlers."""
    rng = random.Random(seed)
    tw = KvmTwin()
    tw.setup()
    gfns = [rng.randrange(1 << 40) for _ in range(12)]
    for _ in range(steps):
        c = rng.randrange(tw.nv)
        halted = tw.hv.vcpus[c].halted
        op = rng.random()
        if op < 0.25 and not halted:
            tw.fault(c, rng.choice(gfns), user=rng.random() < 0.85, irqs=rng.random() < 0.93)
        elif op < 0.42 and tw.works:
            tw.work_done(rng.randrange(len(tw.works)))
        elif op < 0.60 and tw.undelivered[c] and rng.random() < 0.5:
            tw.deliver(c, tw.undelivered[c])
            tw.undelivered[c] = []
        elif op < 0.60:
            tw.entry(c, interrupt_pending=rng.random() < 0.2, deliver=rng.random() < 0.7)
        elif op < 0.85 and not halted:
            free = [t for t, task in enumerate(tw.tasks)
                    if not tw.guest.is_waiting(task) and task.state not in SLEEPING]
            if not free:
                continue
            t = rng.choice(free)
            tw.set_state(t, TaskState.RUNNING)  # it is current on c
            token, user = tw.pending_pf[c].pop(0) if tw.pending_pf[c] else (rng.randrange(
                1, 1 << 32), True)
            if rng.random() < 0.1:
                user = False  # a kernel-mode #PF: panic path
            tw.not_present(c, t, token, user, irqs=rng.random() < 0.95)
        else:
            waiters = [t for t, task in enumerate(tw.tasks) if tw.guest.is_waiting(task)]
            if not waiters:
                continue
            t = rng.choice(waiters)
            if tw.tasks[t].state is TaskState.UNINTERRUPTIBLE and rng.random() < 0.15:
                tw.set_state(t, TaskState.RUNNABLE)  # a spurious wake-up
            elif tw.tasks[t].state is TaskState.RUNNABLE:
                tw.resume(t)
    return tw


@pytest.mark.parametrize("seed", range(8))
def test_kvm_random_operation_sequences_match_python(seed):
    tw = _kvm_random_run(seed, 400)
    assert tw.hv.queues.allocated > tw.nv  # faults went async, not only the boot items


def test_kvm_wakeup_all_broadcast_at_boot():
    """MSR_KVM_ASYNC_PF_EN queues one wakeup_all item per vCPU; the first entry dequeues it as
    page-ready token ~0, whose interrupt is a BROADCAST on that CPU, then the ACK."""
    tw = KvmTwin()
    tw.setup()
    assert tw.hv.vcpus[0].req_apf_ready and tw.hv.vcpus[0].wakeups_queued == 1
    for c in range(tw.nv):
        res = tw.hv.enter_guest(c)
        entered, n = K.kvm_enter_guest(tw.st, c, tw.comp)
        assert res.entered and [(x.token, x.page_ready) for x in res.completions] == [
            (BROADCAST_TOKEN, True)]
        _same(entered, 1, "entered")
        tw._completions(res.completions, n)
        tw.compare("boot entry")
        ready = tw.ready_interrupt(c)
        assert ready.ack and ready.wake is not None and ready.wake.kind is WakeKind.BROADCAST
        assert tw.hv.msr_write_ack(c, 1).completions == []
        _same(K.kvm_msr_write_ack(tw.st, c, tw.comp), 0, "ack completions")
        tw.compare("boot ack")
    assert tw.guest.broadcasts == 2 and tw.hv.queues.freed_total == 2


def test_kvm_page_ready_before_not_present_leaves_a_dummy():
    """The worker finishes and the page-ready is delivered before the guest ran the #PF: the
    wake inserts a dummy node; the #PF then finds it, frees it and does not sleep."""
    tw = KvmTwin()
    tw.setup()
    for c in range(tw.nv):
        tw.entry(c)
    res = tw.fault(0, 0x1234)
    assert res.outcome is X86FaultOutcome.ASYNC_INJECTED and res.token == (1 << 12)
    tw.work_done(0)
    tw.entry(0)
    assert tw.last_ready.wake.kind is WakeKind.DUMMY_INSERTED
    assert [(n.token, n.task) for n in tw.guest.nodes()] == [(res.token, None)]
    tw.set_state(1, TaskState.RUNNING)
    assert tw.not_present(0, 1, res.token, True) is NotPresentOutcome.NO_SLEEP
    assert tw.guest.dummies_freed == 1 and tw.guest.nodes() == []


def test_kvm_not_present_then_page_ready_wakes_the_sleeper():
    tw = KvmTwin()
    tw.setup()
    for c in range(tw.nv):
        tw.entry(c)
    res = tw.fault(1, 0x77)
    tw.set_state(2, TaskState.RUNNING)
    assert tw.not_present(1, 2, res.token, True) is NotPresentOutcome.SLEEP
    assert tw.tasks[2].state is TaskState.UNINTERRUPTIBLE
    tw.work_done(0)
    tw.entry(1)
    assert tw.last_ready.wake.kind is WakeKind.WOKEN and tw.tasks[2].state is TaskState.RUNNABLE
    assert tw.resume(2)


def test_kvm_broadcast_wakes_sleepers_of_its_cpu_and_leaks_dummies():
    """A page-ready ~0 on CPU 0 (a wakeup_all) unlinks every node of CPU 0, bucket by bucket:
    sleepers are woken in that order, dummies are leaked; CPU 1's nodes stay."""
    tw = KvmTwin(ntasks=6)
    tw.setup()
    for c in range(tw.nv):
        tw.entry(c)
    for t, c in ((1, 0), (2, 1), (3, 0), (4, 0)):
        res = tw.fault(c, 0x300 + t)
        tw.set_state(t, TaskState.RUNNING)
        assert tw.not_present(c, t, res.token, True) is NotPresentOutcome.SLEEP
    for c in (0, 1, 0):  # page-ready ahead of the #PF: a dummy each
        tw.fault(c, 0x400 + len(tw.hv.queues.live))
        tw.work_done(len(tw.works) - 1)
        tw.entry(c)
    assert len(tw.guest.nodes()) == 7
    tw.guest.areas[0].token = BROADCAST_TOKEN  # the slot as a wakeup_all leaves it
    tw.st[K.ST_AREA][K.AREA_TOKEN, 0] = BROADCAST_TOKEN
    ready = tw.ready_interrupt(0)
    assert ready.wake.kind is WakeKind.BROADCAST and len(ready.wake.woken) == 3
    assert tw.guest.dummies_leaked == 2 and len(tw.guest.nodes()) == 2


def test_kvm_repeated_gfn_apf_halts_until_completion():
    """A second fault on an outstanding gfn: no new item, KVM_REQ_APF_HALT; the entry halts the
    vCPU, which stays unrunnable until the first item completes."""
    tw = KvmTwin()
    tw.setup()
    for c in range(tw.nv):
        tw.entry(c)
    first = tw.fault(0, 0x42)
    again = tw.fault(0, 0x42)
    assert again.outcome is X86FaultOutcome.APF_HALT_REPEATED and again.work is None
    assert not tw.entry(0) and tw.hv.vcpus[0].halted
    assert not tw.entry(0)  # not runnable: done is empty, no interrupt
    tw.work_done(0)
    assert tw.entry(0) and not tw.hv.vcpus[0].halted
    assert tw.hv.vcpus[0].repeated_faults == 1 and first.work.freed


def test_kvm_kernel_mode_fault_is_halted_not_injected():
    tw = KvmTwin()
    tw.setup()
    res = tw.fault(0, 0x99, user=False)
    assert res.outcome is X86FaultOutcome.ASYNC_HALTED
    assert not tw.entry(0)
    assert tw.fault(1, 0x99, irqs=False).reason == "cannot_do_async:interrupts_not_allowed"


def test_kvm_queue_limit_falls_back_to_sync():
    """64 outstanding items on one vCPU: the 65th fault is refused (queue_full) and goes
    synchronous, though its token was allocated."""
    tw = KvmTwin()
    tw.setup()
    for c in range(tw.nv):
        tw.entry(c)
    for i in range(64):
        assert tw.fault(0, 0x1000 + i).work is not None
    res = tw.fault(0, 0x2000)
    assert res.outcome is X86FaultOutcome.SYNC and res.reason == "queue_full"
    assert res.token == (65 << 12)
    assert tw.hv.queued(0) == 64 and tw.hv.vcpus[0].sync_faults == 1
    while tw.works:
        tw.work_done(len(tw.works) - 1)
    tw.entry(0)
    assert tw.hv.queued(0) == 0


def test_kvm_token_id_wraps_to_one():
    tw = KvmTwin()
    tw.setup()
    tw.hv.vcpus[1].id = (1 << 20) - 1
    tw.st[K.ST_HV][K.HV_ID, 1] = (1 << 20) - 1
    a, b = tw.fault(1, 0x5), tw.fault(1, 0x6)
    assert a.token == (((1 << 20) - 1) << 12) | 1 and b.token == (1 << 12) | 1


def test_kvm_invariant_violations_set_the_error_code():
    tw = KvmTwin()
    tw.setup()
    res = tw.fault(0, 0x42)  # started by the twin
    with pytest.raises(InvariantViolation):
        tw.hv.work_started(res.work)
    assert not K.kvm_work_started(tw.st, tw.works[0][1])
    assert tw.st[K.ST_SC][K.SC_ERR] == K.ERR_NOT_PENDING and "not pending" in K.kvm_check(tw.st)

    tw = KvmTwin()
    tw.setup()
    tw.fault(0, 0x42, user=False)
    assert not tw.entry(0)
    with pytest.raises(InvariantViolation):
        tw.hv.enter_guest(0)
    assert K.kvm_enter_guest(tw.st, 0, tw.comp) == (0, 0)
    assert tw.st[K.ST_SC][K.SC_ERR] == K.ERR_ENTER_WHILE_HALTED

    tw = KvmTwin()
    tw.setup()
    tw.entry(0)
    res = tw.fault(0, 0x42)
    tw.set_state(3, TaskState.RUNNING)
    tw.not_present(0, 3, res.token, True)
    tw.set_state(3, TaskState.RUNNING)
    with pytest.raises(InvariantViolation):
        tw.guest.not_present(0, tw.tasks[3], 0x5000, True, True)
    area = tw.st[K.ST_AREA]
    area[K.AREA_FLAGS, 0] = K.KVM_PV_REASON_PAGE_NOT_PRESENT
    assert K.kvm_handle_async_pf(tw.st, 0, 3, 0x5000, True, True, tw.state) == K.ERROR
    assert tw.st[K.ST_SC][K.SC_ERR] == K.ERR_ALREADY_WAITING

    tw = KvmTwin()
    with pytest.raises(InvariantViolation):
        tw.guest.wait_resume(tw.tasks[0])
    assert not K.kvm_wait_resume(tw.st, 0, tw.state)
    assert tw.st[K.ST_SC][K.SC_ERR] == K.ERR_NOT_WAITING

    tw = KvmTwin(ntasks=2)  # a task id the state was not made for (no Python counterpart)
    assert not K.kvm_wait_resume(tw.st, 2, np.zeros(3, np.int64))
    assert tw.st[K.ST_SC][K.SC_ERR] == K.ERR_BAD_TASK


def test_kvm_check_reports_what_python_check_invariants_reports():
    """The same corruption applied to both sides is flagged by both checks."""
    tw = _kvm_random_run(3, 60)
    tw.hv.queues.vcpus[0].queued += 1
    tw.st[K.ST_HV][K.HV_QUEUED, 0] += 1
    with pytest.raises(InvariantViolation, match="INV-H1"):
        tw.hv.check_invariants()
    assert K.kvm_check(tw.st).startswith("INV-H1")

    tw = KvmTwin()
    tw.setup()
    tw.fault(0, 0x42)
    tw.hv.vcpus[0].gfns.reset()
    tw.st[K.ST_GFNS][0] = K.GFN_EMPTY
    with pytest.raises(InvariantViolation, match="INV-H2"):
        tw.hv.check_invariants()
    assert K.kvm_check(tw.st).startswith("INV-H2")


# ================================================================================ s390 twin


class _Ops:
    """GuestCpuOps of the Python guest, on the twin's task table."""

    def __init__(self, twin: S390Twin) -> None:
        self.twin = twin

    def current(self, cpu: int) -> Task | None:
        t = self.twin.current[cpu]
        return None if t < 0 else self.twin.tasks[t]

    def set_need_resched(self, cpu: int) -> None:
        self.twin.py_resched.add(cpu)

    def wake_up(self, task: Task) -> bool:
        if task.state not in SLEEPING:
            return False
        on_cpu = self.twin.tasks.index(task) in self.twin.current
        task.state = TaskState.RUNNING if on_cpu else TaskState.RUNNABLE
        return True


class S390Twin:
    """S390Mode's Python objects and the compiled state, driven together.

    Task 0 is a freed task whose tid is reused by the last task (find_task must skip it).
    """

    def __init__(self, nvcpus: int = 2, ntasks: int = 6) -> None:
        self.nv = nvcpus
        tids = [100 + ntasks - 1] + [100 + t for t in range(1, ntasks)]
        self.tasks = [Task(tid, f"t{t}") for t, tid in enumerate(tids)]
        dead = self.tasks[0]
        dead.state, dead.usage, dead.freed = TaskState.DEAD, 0, True
        self.current = [-1] * nvcpus
        self.py_resched: set[int] = set()
        self.c_resched: set[int] = set()
        self.hv = PfaultHost(nvcpus, debug=True)
        self.guest = PfaultGuest(_Ops(self), self._find_task, debug=True)
        self.st = S.new_s390_state(nvcpus, ntasks)
        self.view = View(self.st)  # what compiled functions receive
        self.state = np.array([int(t.state) for t in self.tasks], np.int64)
        self.usage = np.array([t.usage for t in self.tasks], np.int64)
        self.freed = np.array([int(t.freed) for t in self.tasks], np.int64)
        self.tid = np.array(tids, np.int64)
        self.works: list[tuple[object, int]] = []
        for c in range(nvcpus):
            self.run(c, c + 1)

    def _find_task(self, pid: int) -> Task | None:
        for task in self.tasks:  # S390Mode._find_task: first live task with that tid
            if task.tid == pid and not task.freed:
                return task
        return None

    # ---------------------------------------------------------------- caller-owned task state

    def set_state(self, t: int, state: TaskState) -> None:
        self.tasks[t].state = state
        self.state[t] = int(state)

    def run(self, c: int, t: int) -> None:
        """Task ``t`` (-1: none) becomes current on ``c``; a running predecessor is requeued."""
        old = self.current[c]
        if old >= 0 and self.tasks[old].state is TaskState.RUNNING:
            self.set_state(old, TaskState.RUNNABLE)
        self.current[c] = t
        if t >= 0:
            self.set_state(t, TaskState.RUNNING)

    def _c_wake(self, t: int) -> None:
        if self.state[t] in (S.INTERRUPTIBLE, S.UNINTERRUPTIBLE):
            self.state[t] = S.RUNNING if t in self.current else S.RUNNABLE

    def schedule(self, c: int, preempt: bool = False) -> None:
        """Return to user with need_resched, or a slice end (``preempt``)."""
        assert self.py_resched == self.c_resched
        if not preempt and c not in self.py_resched:
            return
        self.py_resched.discard(c)
        self.c_resched.discard(c)
        old = self.current[c]
        if old >= 0 and self.tasks[old].state is TaskState.RUNNING:
            if not preempt:
                return  # woken before schedule(): picked again
            self.set_state(old, TaskState.RUNNABLE)
        ready = [t for t, task in enumerate(self.tasks)
                 if task.state is TaskState.RUNNABLE and t not in self.current]
        self.current[c] = -1
        if ready:
            self.run(c, ready[0])
        elif old >= 0 and self.tasks[old].state is TaskState.RUNNABLE:
            self.run(c, old)  # nothing else to run

    def exit(self, t: int) -> None:
        """A runnable task that is not on the wait list exits: its last reference goes."""
        self.set_state(t, TaskState.DEAD)
        self.tasks[t].put()
        self.usage[t] -= 1
        self.freed[t] = int(self.usage[t] == 0)

    # ---------------------------------------------------------------- protocol calls

    def setup(self) -> None:
        for c in range(self.nv):  # S390Mode.setup
            self.hv.diag258(c, 0x1000, pfault_init_refbk(), supervisor=True)
        S.s390_setup(self.view, self.nv)
        self.compare("setup")

    def fault(self, c: int, gfn: int, psw: int = USER_PSW, cr0: int = CR0):
        t = self.current[c]
        token = lpp_value(self.tasks[t].tid) if t >= 0 else None
        res = self.hv.page_fault(c, gfn, psw, cr0, token)
        w = S.s390_page_fault(self.view, c, gfn, psw, cr0, S.u64_to_i64(token or 0),
                              token is not None)
        if res.work is None:
            _same(w, -1, "page_fault work")
            reason = S.SYNC_REASONS[self.st[S.ST_HV][S.HV_SYNC_REASON, c]]
            _same(S390SyncReason(reason), res.reason, "sync reason")
        else:
            _same(int(self.st[S.ST_WORK][S.WK_SERIAL, w]), res.work.serial, "work serial")
            self.hv.work_started(res.work)  # S390Mode starts the worker at once
            assert S.s390_work_started(self.view, w)
            self.works.append((res.work, w))
        self.compare(f"fault({c}, {gfn:#x})")
        return res

    def work_done(self, i: int) -> None:
        py, w = self.works.pop(i)
        done = self.hv.work_done(py)
        _same(S.s390_work_done(self.view, w), int(done.done_injected), "done_injected")
        _same(S.s390_has_floating(self.view), bool(self.hv.floating), "has_floating")
        self.compare("work_done")

    def pre_run(self, c: int, psw: int = USER_PSW) -> list[PfaultOutcome]:
        """S390Mode._pre_run: deliver every pending pfault interrupt, one per pre_run."""
        outcomes = []
        while True:
            irq = self.hv.pre_run(c, psw)
            subcode, param = S.s390_pre_run(self.view, c, psw)
            want = (0, 0) if irq is None else (irq.subcode, irq.param64)
            _same((subcode, S.i64_to_u64(param)), want, "pre_run interrupt")
            self.compare(f"pre_run({c})")
            if irq is None:
                return outcomes
            assert irq.code == EXT_IRQ_CP_SERVICE
            outcomes.append(self.interrupt(c, irq.subcode, irq.param64))

    def interrupt(self, c: int, subcode: int, param64: int) -> PfaultOutcome:
        out = self.guest.pfault_interrupt(c, EXT_IRQ_CP_SERVICE, subcode, param64)
        got, wake, resched = S.s390_pfault_interrupt(
            self.view, c, subcode, S.u64_to_i64(param64), self.current[c], self.state,
            self.usage, self.freed, self.tid)
        _same(got, PFAULT[out], "pfault_interrupt outcome")
        if wake >= 0:
            self._c_wake(wake)
        _same(wake >= 0, out is PfaultOutcome.WOKEN, "wake task")
        if resched:
            self.c_resched.add(c)
        _same(self.c_resched, self.py_resched, "need_resched")
        self.compare(f"pfault_interrupt({c}, {subcode:#x})")
        return out

    # ---------------------------------------------------------------- comparison

    def compare(self, where: str) -> None:
        st, hv_py, g = self.st, self.hv, self.guest
        sc, hv, work = st[S.ST_SC], st[S.ST_HV], st[S.ST_WORK]
        slots = _live_slots(work, S.WK_SERIAL, S.WK_FREED)
        q = hv_py.queues
        _same(sorted(slots), sorted(q.live), f"{where}: live items")
        for serial, py in q.live.items():
            w = slots[serial]
            want = [py.vcpu_id, py.gfn, py.token, py.notpresent_injected, WORK_STATE[py.state],
                    py.on_queue, py.on_done]
            rows = (S.WK_VCPU, S.WK_GFN, S.WK_TOKEN, S.WK_NOTPRESENT_INJECTED, S.WK_STATE,
                    S.WK_ON_QUEUE, S.WK_ON_DONE)
            got = [int(work[r, w]) for r in rows]
            got[2] = S.i64_to_u64(got[2])
            _same(got, [int(x) for x in want], f"{where}: #{serial}")
        _same([int(sc[S.SC_SERIAL]), int(sc[S.SC_ALLOCATED]), int(sc[S.SC_FREED_TOTAL])],
              [q._serial, q.allocated, q.freed_total], f"{where}: serial/allocated/freed")
        for c, v in enumerate(hv_py.vcpus):
            qv = q.vcpus[c]
            serials = [int(work[S.WK_SERIAL, w]) for w in S.s390_list(st, S.ST_QUEUE, c)]
            _same(serials, [w.serial for w in qv.queue], f"{where}: vCPU {c} queue")
            serials = [int(work[S.WK_SERIAL, w]) for w in S.s390_list(st, S.ST_DONE, c)]
            _same(serials, [w.serial for w in qv.done], f"{where}: vCPU {c} done")
            init = None if not hv[S.HV_INIT_PENDING, c] else S.i64_to_u64(hv[S.HV_INIT_TOKEN, c])
            got = [S.i64_to_u64(hv[S.HV_PFAULT_TOKEN, c]), init] + [
                int(hv[r, c]) for r in (S.HV_PFAULT_SELECT, S.HV_PFAULT_COMPARE,
                                        S.HV_PFAULT_SYNC, S.HV_DIAGNOSE_258, S.HV_INIT_INJECTED,
                                        S.HV_INIT_DELIVERED, S.HV_INIT_DISCARDED, S.HV_QUEUED)]
            want = [v.pfault_token, v.init_pending, v.pfault_select, v.pfault_compare,
                    v.pfault_sync, v.diagnose_258, v.init_injected, v.init_delivered,
                    v.init_discarded, qv.queued]
            _same(got, want, f"{where}: vCPU {c} host fields")
        _same([S.i64_to_u64(x) for x in S.s390_floating(st)], list(hv_py.floating),
              f"{where}: floating DONEs")
        counters = S.s390_counters(st)
        for name in ("done_injected", "done_delivered", "done_dropped"):
            _same(counters[name], getattr(hv_py, name), f"{where}: {name}")
        _same(counters["host_warnings"], len(hv_py.warnings), f"{where}: host warnings")
        for name in ("irqext_pfl", "init_count", "done_count", "early_completions",
                     "early_consumed", "ignored_done", "dropped_unknown_pid", "not_current",
                     "blocks", "wakeups"):
            _same(counters[name], getattr(g, name), f"{where}: {name}")
        _same(counters["guest_warnings"], len(g.warnings), f"{where}: guest warnings")
        _same([self.tasks[t].tid for t in S.s390_pfault_list(st)],
              [task.tid for task in g.pfault_list], f"{where}: pfault_list")
        task = st[S.ST_TASK]
        for t, py_task in enumerate(self.tasks):
            if py_task.freed:
                continue  # Python keys pfault_wait by tid, which task 0 shares
            _same((int(task[S.TK_WAIT, t]), int(task[S.TK_LIST_REFS, t])),
                  (g.pfault_wait(py_task.tid), g.list_refs(py_task.tid)),
                  f"{where}: task {t} pfault_wait / list refs")
        _same([[int(a[t]) for t in range(len(self.tasks))] for a in (self.state, self.usage,
                                                                       self.freed)],
              [[int(x.state) for x in self.tasks], [x.usage for x in self.tasks],
               [int(x.freed) for x in self.tasks]], f"{where}: task table")
        _same(S.s390_check(st, self.state, self.usage, self.freed), "", f"{where}: s390_check")


def _s390_random_run(seed: int, steps: int) -> S390Twin:
    """S390Mode-like random interleavings of faults, completions, deliveries and scheduling."""
    rng = random.Random(seed)
    tw = S390Twin()
    tw.setup()
    gfns = [rng.randrange(1 << 40) for _ in range(10)]
    for _ in range(steps):
        c = rng.randrange(tw.nv)
        op = rng.random()
        if op < 0.25:
            psw = rng.choice([USER_PSW] * 8 + [PSW_MASK_EXT, PSW_MASK_PSTATE])
            tw.fault(c, rng.choice(gfns), psw, CR0 if rng.random() < 0.95 else 0)
        elif op < 0.45 and tw.works:
            tw.work_done(rng.randrange(len(tw.works)))
        elif op < 0.70:
            tw.pre_run(c, USER_PSW if rng.random() < 0.9 else PSW_MASK_PSTATE)
        elif op < 0.82:
            tw.schedule(c, preempt=rng.random() < 0.3)
        elif op < 0.87:
            t = tw.current[c]
            if t >= 0 and tw.tasks[t].state is TaskState.RUNNING \
                    and tw.guest.pfault_wait(tw.tasks[t].tid) != 1:
                tw.set_state(t, TaskState.INTERRUPTIBLE)  # sleeps in a system call
                tw.schedule(c, preempt=True)
        elif op < 0.93:
            sleepers = [t for t, task in enumerate(tw.tasks)
                        if task.state in SLEEPING and t not in tw.current]
            if sleepers:
                tw.set_state(rng.choice(sleepers), TaskState.RUNNABLE)  # a (spurious) wake-up
        else:
            leavers = [t for t, task in enumerate(tw.tasks)
                       if task.state is TaskState.RUNNABLE and t not in tw.current
                       and tw.guest.pfault_wait(task.tid) != 1]
            if leavers and rng.random() < 0.3:
                tw.exit(rng.choice(leavers))
                tw.compare("exit")
    return tw


@pytest.mark.parametrize("seed", range(8))
def test_s390_random_operation_sequences_match_python(seed):
    tw = _s390_random_run(seed, 400)
    assert tw.hv.queues.allocated > 0


def test_s390_done_before_init_is_an_early_completion():
    """The floating DONE is delivered on vCPU1 while vCPU0 still has the INIT pending: T is
    running, so pfault_wait = -1; the INIT then consumes it and T never sleeps."""
    tw = S390Twin()
    tw.setup()
    res = tw.fault(0, 0x42)
    assert res.is_async
    tw.work_done(0)
    assert tw.pre_run(1) == [PfaultOutcome.EARLY_RECORDED]
    assert tw.guest.pfault_wait(tw.tasks[1].tid) == -1
    assert tw.pre_run(0) == [PfaultOutcome.EARLY_CONSUMED]
    assert tw.guest.early_completions == 1 and tw.guest.early_consumed == 1
    assert tw.tasks[1].state is TaskState.RUNNING and tw.py_resched == set()


def test_s390_init_while_on_the_list_reblocks():
    """T blocks on gfn A, is woken spuriously, runs again and refaults: the second INIT finds
    it on the list (REBLOCK: no second entry, no second reference); the first DONE wakes it,
    the second finds it runnable (-1)."""
    tw = S390Twin()
    tw.setup()
    tw.fault(0, 0xA)
    assert tw.pre_run(0) == [PfaultOutcome.BLOCK]
    tw.schedule(0)
    assert tw.current[0] != 1 and tw.tasks[1].usage == 2
    tw.set_state(1, TaskState.RUNNABLE)  # spurious wake-up
    tw.run(0, 1)
    tw.fault(0, 0xA)
    assert tw.pre_run(0) == [PfaultOutcome.REBLOCK]
    assert tw.tasks[1].usage == 2 and tw.guest.pfault_list == (tw.tasks[1],)
    tw.schedule(0)
    tw.work_done(0)
    assert tw.pre_run(1) == [PfaultOutcome.WOKEN]
    tw.work_done(0)
    assert tw.pre_run(1) == [PfaultOutcome.EARLY_RECORDED]
    assert tw.tasks[1].usage == 1 and tw.guest.pfault_wait(tw.tasks[1].tid) == -1


def test_s390_sync_reasons_and_dropped_pids():
    tw = S390Twin()
    assert tw.fault(0, 1).reason is S390SyncReason.TOKEN_INVALID  # before the handshake
    tw.setup()
    assert tw.fault(0, 1, psw=PSW_MASK_EXT).reason is S390SyncReason.NOT_SELECTED
    assert tw.fault(0, 1, psw=PSW_MASK_PSTATE).reason is S390SyncReason.EXT_DISABLED
    assert tw.fault(0, 1, cr0=0).reason is S390SyncReason.SUBCLASS_DISABLED
    tw.fault(0, 1)
    assert tw.fault(0, 2).reason is S390SyncReason.IRQ_PENDING  # the INIT is still pending
    tw.run(1, -1)  # CPU 1 idle: no LPP token to read
    assert tw.fault(1, 3).reason is S390SyncReason.TOKEN_READ_FAILED
    tw.pre_run(0)
    tw.schedule(0)
    tw.exit(4)
    tw.compare("exit")
    for pid in (104, 999):  # exited, never existed
        assert tw.interrupt(1, S.PFAULT_DONE, lpp_value(pid)) is PfaultOutcome.DROPPED_UNKNOWN_PID
    assert tw.interrupt(1, 0x1234, 0) is PfaultOutcome.NOT_PFAULT
    assert tw.interrupt(1, S.PFAULT_INIT, lpp_value(102)) is PfaultOutcome.WARN_NOT_CURRENT
    assert tw.interrupt(1, S.PFAULT_INIT, lpp_value(103)) is PfaultOutcome.WARN_NOT_CURRENT
    assert tw.guest.not_current == 2 and len(tw.guest.warnings) == 1


def test_s390_find_task_ignores_entries_beyond_the_guest_tasks():
    """A caller's task table may go on with host threads: a pid only they carry is unknown to
    the guest (S390Mode._find_task searches guest threads only)."""
    tw = S390Twin()
    tw.setup()
    out = tw.guest.pfault_interrupt(0, EXT_IRQ_CP_SERVICE, S.PFAULT_DONE, lpp_value(999))
    assert out is PfaultOutcome.DROPPED_UNKNOWN_PID
    extend = [np.append(a, x) for a, x in ((tw.state, S.RUNNING), (tw.usage, 1), (tw.freed, 0),
                                           (tw.tid, 999))]
    got = S.s390_pfault_interrupt(tw.st, 0, S.PFAULT_DONE, S.u64_to_i64(lpp_value(999)),
                                  tw.current[0], *extend)
    _same(got, (S.DROPPED_UNKNOWN_PID, -1, 0), "host thread pid")
    tw.compare("host thread pid")


def test_s390_queue_limit_falls_back_to_sync():
    tw = S390Twin()
    tw.setup()
    for i in range(64):
        assert tw.fault(0, 0x100 + i).is_async
        tw.pre_run(0)  # deliver the INIT so the next fault finds no interrupt pending
    assert tw.fault(0, 0x200).reason is S390SyncReason.QUEUE_FULL
    assert tw.hv.queued(0) == 64 and tw.hv.vcpus[0].pfault_sync == 1


def test_s390_invariant_violations_set_the_error_code():
    tw = S390Twin()
    tw.setup()
    res = tw.fault(0, 0x42)
    tw.work_done(0)
    with pytest.raises(InvariantViolation):
        tw.hv.work_done(res.work)  # the DONE is injected before work_returned raises
    assert S.s390_work_done(tw.st, S.s390_list(tw.st, S.ST_DONE, 0)[0]) == S.ERROR
    assert tw.st[S.ST_SC][S.SC_ERR] == S.ERR_NOT_RUNNING
    _same([S.i64_to_u64(x) for x in S.s390_floating(tw.st)], list(tw.hv.floating), "floating")
    assert "not running" in S.s390_check(tw.st)


def test_s390_check_reports_what_python_check_invariants_reports():
    tw = _s390_random_run(5, 80)
    tw.hv.done_delivered += 1
    tw.st[S.ST_SC][S.SC_DONE_DELIVERED] += 1
    with pytest.raises(InvariantViolation, match="floating DONE accounting"):
        tw.hv.check_invariants()
    assert S.s390_check(tw.st) == "floating DONE accounting broken"
