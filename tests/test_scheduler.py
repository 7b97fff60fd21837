"""Scheduler and preempt notifiers: scenarios 27-30 of docs/scenarios.md (Linux).

The scheduler is driven by a scripted executor: each task runs for fixed stretches and then
yields (slice end), blocks or exits, so every switch happens at a hand-known time.
"""

from __future__ import annotations

import pytest

from pfsim.engine import Simulator
from pfsim.errors import InvariantViolation
from pfsim.hypervisor.vcpu_notifier import KvmPreemptOps, KvmVcpu, vcpu_load, vcpu_put
from pfsim.sched import PreemptNotifier, Scheduler, SwitchContext, Task, TaskState


class ScriptedExecutor:
    """Runs each task through its script: a list of (run_ns, action) with action in
    'yield' (slice end), 'block' (sleep interruptibly), 'exit'."""

    def __init__(self, sim: Simulator, sched: Scheduler, scripts: dict[int, list[tuple[int, str]]]):
        self.sim, self.sched, self.scripts = sim, sched, scripts
        self.starts: list[tuple[int, int, int]] = []  # (time, cpu, tid)
        sched.executor = self

    def start(self, cpu: int, task: Task, now: int) -> None:
        self.starts.append((now, cpu, task.tid))
        script = self.scripts[task.tid]
        if not script:
            return
        run_ns, action = script.pop(0)
        self.sim.at(now + run_ns, self._act, cpu, task, action)

    def _act(self, cpu: int, task: Task, action: str) -> None:
        if action == "block":
            task.state = TaskState.INTERRUPTIBLE
            self.sched.schedule(cpu, preempted=False)
        elif action == "exit":
            task.state = TaskState.DEAD
            self.sched.schedule(cpu)
        else:
            self.sched.schedule(cpu, preempted=True)


class Recorder:
    """preempt_ops that log every callback with its context."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def sched_out(self, notifier, next_task, ctx: SwitchContext):
        self.log.append(("out", self.name, next_task.tid if next_task else None, ctx.cpu,
                         ctx.preempt_count, ctx.irqs_disabled, ctx.rq_locked))

    def sched_in(self, notifier, cpu, ctx: SwitchContext):
        self.log.append(("in", self.name, cpu, ctx.preempt_count, ctx.irqs_disabled, ctx.rq_locked))


def make(ncpus=1, timeslice=1000, switch=10):
    sim = Simulator()
    sched = Scheduler(sim, ncpus, timeslice, switch, idle_balance=True, name="host")
    return sim, sched


def test_switch_fires_out_then_in_with_the_documented_contexts():
    """Two tasks on one CPU, each runs one slice and exits.  A→B: A's sched_out (preemption
    disabled, IRQs off, rq locked) then B's sched_in (preemption disabled, IRQs on, unlocked);
    the switch costs 10 ns, so B starts at 1000 + 10."""
    sim, sched = make()
    log: list = []
    a, b = Task(1, "a"), Task(2, "b")
    ex = ScriptedExecutor(sim, sched, {1: [(1000, "yield"), (5, "exit")], 2: [(1000, "exit")]})
    sched.preempt_notifier_inc()
    for task, name in ((a, "A"), (b, "B")):
        sched.preempt_notifier_register(task, PreemptNotifier(Recorder(name, log)))
        sched.add_task(task)
    sim.run()
    assert log[0] == ("in", "A", 0, 1, False, False)
    assert log[1] == ("out", "A", 2, 0, 1, True, True)
    assert log[2] == ("in", "B", 0, 1, False, False)
    assert ex.starts[:2] == [(10, 0, 1), (1020, 0, 2)]
    assert a.freed and b.freed and a.usage == 0


def test_schedule_picking_the_same_task_fires_nothing_scenario_29():
    """Scenario 29: a lone task whose slice ends three times is picked again each time: no
    notifier callback, no context-switch count, no switch cost (it restarts at the same ns)."""
    sim, sched = make()
    log: list = []
    task = Task(1, "solo")
    ex = ScriptedExecutor(sim, sched, {1: [(1000, "yield")] * 3 + [(1, "exit")]})
    sched.preempt_notifier_inc()
    sched.preempt_notifier_register(task, PreemptNotifier(Recorder("T", log)))
    sched.add_task(task)
    sim.run(until_ns=3011)  # events at 3011 (the exit), whose switch to idle fires sched_out
    assert log == [("in", "T", 0, 1, False, False)]  # only the first switch from idle
    assert sched.cpus[0].context_switches == 1
    assert [s[0] for s in ex.starts] == [10, 1010, 2010, 3010]


def test_register_with_static_key_off_warns_and_adds_scenario_30():
    """Scenario 30: registering while no VM exists (key off) records Linux's warning and still
    adds the notifier (at the head: LIFO order)."""
    sim, sched = make()
    task = Task(1, "t")
    first, second = PreemptNotifier(Recorder("1", [])), PreemptNotifier(Recorder("2", []))
    sched.preempt_notifier_register(task, first)
    sched.preempt_notifier_register(task, second)
    assert sched.warnings == ["registering preempt_notifier while notifiers disabled"] * 2
    assert task.preempt_notifiers == [second, first]


def test_unregister_from_a_callback_is_refused_scenario_30():
    """Scenario 30: unregistering from inside a callback is undefined in Linux; the model
    forbids it."""
    sim, sched = make()

    class Unregisters:
        def sched_in(self, notifier, cpu, ctx):
            sched.preempt_notifier_unregister(notifier)

        def sched_out(self, notifier, next_task, ctx):
            pass

    task = Task(1, "t")
    ScriptedExecutor(sim, sched, {1: [(10, "exit")]})
    sched.preempt_notifier_inc()
    sched.preempt_notifier_register(task, PreemptNotifier(Unregisters()))
    sched.add_task(task)
    with pytest.raises(InvariantViolation, match="from a notifier callback"):
        sim.run()


def test_vcpu_thread_preempted_by_host_task_scenario_27():
    """Scenario 27: vCPU thread V runs on host CPU 0 inside KVM_RUN (vcpu_load done); host task
    H, pinned to CPU 0, is queued behind it.  At V's slice end (t = 1010) V is switched out while
    still runnable → kvm_sched_out with IRQs off and the rq lock held sets preempted = ready =
    True.  CPU 1 is idle and pulls V: kvm_sched_in on CPU 1 clears both flags and loads the
    vCPU on the new CPU (one migration)."""
    sim, sched = make(ncpus=2)
    v = Task(1, "vcpu0", allowed_cpu=None)
    h = Task(2, "host", allowed_cpu=0)
    vcpu = KvmVcpu(0)
    notifier = PreemptNotifier(KvmPreemptOps(vcpu))
    sched.preempt_notifier_inc()  # a VM exists
    ex = ScriptedExecutor(sim, sched, {1: [(1000, "yield"), (500, "exit")], 2: [(2000, "exit")]})
    sched.add_task(v)  # least loaded: CPU 0
    sim.run(until_ns=1)
    vcpu_load(sched, v, vcpu, notifier, cpu=0)
    sched.cpus[1].online = False  # keep CPU 1 out until V is preempted
    sched.add_task(h)
    sim.run(until_ns=1011)
    assert vcpu.log[-1] == ("sched_out", 0, True, True, True)
    assert vcpu.preempted and vcpu.ready
    sched.cpus[1].online = True
    sched.schedule(1)  # CPU 1 idles in: pulls V
    assert vcpu.log[-1] == ("sched_in", 1, False, False, False)
    assert not vcpu.preempted and not vcpu.ready
    assert vcpu.loaded_cpu == 1 and vcpu.cpu_migrations == 1
    assert (ex.starts[-1][1], ex.starts[-1][2]) == (1, 1)


def test_vcpu_thread_blocking_in_halt_is_not_preempted_scenario_28():
    """Scenario 28: the vCPU thread blocks (kvm_vcpu_block on HLT): its sched_out sees a
    sleeping thread, so preempted stays False; a wake-up brings it back through sched_in."""
    sim, sched = make()
    v = Task(1, "vcpu0")
    vcpu = KvmVcpu(0)
    notifier = PreemptNotifier(KvmPreemptOps(vcpu))
    sched.preempt_notifier_inc()
    ScriptedExecutor(sim, sched, {1: [(300, "block"), (100, "yield")]})
    sched.add_task(v)
    sim.run(until_ns=1)
    vcpu_load(sched, v, vcpu, notifier, cpu=0)
    sim.run(until_ns=400)
    assert v.state == TaskState.INTERRUPTIBLE
    assert vcpu.log[-1] == ("sched_out", 0, False, True, True)
    assert not vcpu.preempted and not vcpu.ready
    assert sched.wake_up(v)
    sim.run(until_ns=420)
    assert vcpu.log[-1][0] == "sched_in" and vcpu.arch_loads == 2
    vcpu_put(sched, vcpu, notifier)
    assert v.preempt_notifiers == []


def test_wake_before_switch_is_not_lost():
    """A task that set itself sleeping but is still on its CPU when woken is set running again
    and re-picked by the schedule() that follows, with no switch."""
    sim, sched = make()
    t = Task(1, "t")
    ScriptedExecutor(sim, sched, {1: [(100, "exit")]})
    sched.add_task(t)
    sim.run(until_ns=50)
    t.state = TaskState.UNINTERRUPTIBLE
    assert sched.wake_up(t) and t.state == TaskState.RUNNING
    switches = sched.cpus[0].context_switches
    sched.schedule(0, preempted=False)
    assert sched.current(0) is t and sched.cpus[0].context_switches == switches


def test_idle_cpu_pulls_work_and_wakeups_prefer_idle_cpus():
    """Three always-runnable tasks on two CPUs: both CPUs stay busy (no idle time while work
    is queued), and the round robin gives each task its turns."""
    sim, sched = make(ncpus=2)
    scripts = {i: [(1000, "yield")] * 3 + [(1000, "exit")] for i in (1, 2, 3)}
    ex = ScriptedExecutor(sim, sched, scripts)
    for i in (1, 2, 3):
        sched.add_task(Task(i, f"t{i}"))
    end = sim.run()
    assert sum(1 for s in ex.starts if s[2] == 1) == 4
    total_work = 3 * 4 * 1000
    assert end <= total_work // 2 + 6 * 10 + 1000
    assert sched.idle_ns(0, end) + sched.idle_ns(1, end) <= 1000 + 2 * 10


def test_task_reference_counts():
    """get/put balance; a freed task cannot be touched; a live task cannot be freed."""
    t = Task(1, "t")
    t.get()
    t.put()
    with pytest.raises(InvariantViolation):
        t.put()  # usage would reach 0 while not dead
    t.state = TaskState.DEAD
    t.usage = 1
    t.put()
    assert t.freed
    with pytest.raises(InvariantViolation):
        t.get()
