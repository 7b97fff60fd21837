"""The fair policies worked by hand: CFS of Linux v2.6.32 and EEVDF of Linux v6.6.

Two tasks on one CPU, no switch cost, driven by an executor that runs each task until its
slice ends, it sleeps, or a wake-up preempts it (``on_preempt``).  Every pick and slice end
below is derived in the docstrings from the kernel functions pfsim.sched.policy cites; the
test compares the (time, task) of every start the scheduler asks for.
"""

from __future__ import annotations

from pfsim.engine import Simulator
from pfsim.sched import Scheduler, Task, TaskState
from pfsim.sched.policy import Eevdf, Fair, tunable_factor

MS = 1_000_000


class SliceExecutor:
    """Runs each task through a script of ("run", ns) and ("sleep", ns) steps, honouring
    slice ends and wake-up preemption."""

    def __init__(self, sim: Simulator, sched: Scheduler, scripts: dict[int, list[list]]):
        self.sim, self.sched, self.scripts = sim, sched, scripts
        self.starts: list[tuple[int, int]] = []
        self.epoch = 0
        self.since = 0
        sched.executor = self
        sched.on_preempt = lambda cpu: sim.at(sim.now, self._preempt, cpu)

    def start(self, cpu: int, task: Task, now: int) -> None:
        self.starts.append((now, task.tid))
        self.epoch += 1
        self.since = now
        step = self.scripts[task.tid][0]
        end = min(now + step[1], self.sched.slice_end(cpu))
        self.sim.at(end, self._stop, cpu, task, self.epoch)

    def _charge(self, task: Task) -> None:
        step = self.scripts[task.tid][0]
        step[1] -= self.sim.now - self.since
        self.since = self.sim.now

    def _stop(self, cpu: int, task: Task, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self._charge(task)
        script = self.scripts[task.tid]
        if script[0][1] > 0:  # slice end
            self.sched.schedule(cpu, preempted=True)
            return
        script.pop(0)
        if script and script[0][0] == "sleep":
            _, ns = script.pop(0)
            task.state = TaskState.INTERRUPTIBLE
            self.sim.at(self.sim.now + ns, self.sched.wake_up, task)
            self.sched.schedule(cpu, preempted=False)
        else:
            task.state = TaskState.DEAD
            self.sched.schedule(cpu)

    def _preempt(self, cpu: int) -> None:
        task = self.sched.current(cpu)
        self.epoch += 1
        self._charge(task)
        self.sched.schedule(cpu, preempted=True)


def _run(policy, until):
    sim = Simulator()
    sched = Scheduler(sim, 1, 3 * MS, 0, policy=policy)
    a, b = Task(1, "a"), Task(2, "b")
    ex = SliceExecutor(sim, sched, {1: [["run", 100 * MS]],
                                    2: [["run", 1 * MS], ["sleep", 4 * MS], ["run", 100 * MS]]})
    sched.add_task(a)
    sched.add_task(b)
    sim.run(until)
    return ex.starts, sched, a, b


def test_cfs_sleeper_credit_and_wakeup_preemption():
    """latency 6 ms, min_granularity 0.75 ms (sched_nr_latency 8), wakeup_granularity 1 ms.

    * t=0: A and B start at min_vruntime 0; A first (tie, queue order).  sched_slice with
      nr_running 2: __sched_period(2) = 6 ms, / 2 = 3 ms.
    * t=3: A's slice ends, vA = 3; B (vB 0) runs, slice 3 ms.
    * t=4: B sleeps after 1 ms: vB = 1, update_min_vruntime = min(vA 3, curr vB 1) = 1.
      A runs alone: slice 6 ms (until 10).
    * t=8: B wakes.  enqueue_entity: update_curr first (vA = 3 + 4 = 7, min_vruntime = 7),
      then place_entity: vB = max(1, 7 - 6/2) = 4 (GENTLE_FAIR_SLEEPERS: B keeps its absolute
      vruntime 1, clamped to half a latency of credit).  wakeup_preempt_entity: 7 - 4 = 3 >
      1 ms, so B preempts A at once; slice 3 ms (until 11).
    * t=11: vB = 7, vA = 7; queue [A, B]: A (tie, queue order), slice 3 ms.
    * t=14: vA = 10 > vB 7: B.  t=17: vB = 10 = vA, queue [A, B]: A.

    On the code before the fix, B kept its lag against min_vruntime across the sleep (vB = 1
    at the wake-up, against a min_vruntime not brought up to date) and ran alone from 8 to
    14 ms: the start at 11 ms is A's only with the 2.6.32 rules.
    """
    starts, sched, a, b = _run(Fair(6 * MS, 750_000, 1 * MS), 18 * MS)
    assert starts == [(0, 1), (3 * MS, 2), (4 * MS, 1), (8 * MS, 2), (11 * MS, 1),
                      (14 * MS, 2), (17 * MS, 1)]
    assert sched.cpus[0].min_vruntime == 10 * MS
    assert (b.vruntime, a.vruntime) == (10 * MS, 10 * MS)


def test_cfs_slice_follows_sched_period():
    """__sched_period: latency up to sched_nr_latency = ceil(5 / 2) = 3 tasks, then
    min_granularity * nr.  sched_slice = period / nr: 5 ms, 2.5 ms, 1.666 ms (below the
    granularity: there is no per-task floor in 2.6.32), then 4 x 2 / 4 = 2 ms."""
    from pfsim.sched.scheduler import RunQueue
    policy = Fair(5 * MS, 2 * MS, 1 * MS)
    rq = RunQueue(0)
    got = []
    for queued in range(4):
        rq.queue.clear()
        rq.queue.extend(Task(10 + i, "t") for i in range(queued))
        got.append(policy.slice(rq))
    assert got == [5 * MS, 2_500_000, 1_666_666, 2 * MS]


def test_eevdf_lag_eligibility_and_deadlines():
    """base_slice 3 ms, TICK_NSEC 4 ms (HZ 250): lag limit max(2 x 3, 4) = 6 ms.

    * t=0: A placed on an empty queue at V = min_vruntime = 0, deadline 3; B at V = 0,
      deadline 3 (a new task has no lag).  pick_eevdf: both eligible, same deadline: A
      (smaller vruntime tie, queue order).  Slice = deadline - vruntime = 3 ms.
    * t=3: vA = 3 reaches its deadline: update_deadline gives 6.  V = (3 + 0) / 2; A is not
      eligible (3 x 2 > 3), B is: B runs, slice 3 - 0 = 3 ms.
    * t=4: B sleeps after 1 ms: vB = 1.  update_entity_lag with B still counted:
      V = (3 + 1) / 2 = 2, vlag = 2 - 1 = 1 ms.  A runs, slice 6 - 3 = 3 ms (until 7).
    * t=7: vA = 6 = deadline: new deadline 9; A alone, picked again, slice 3 ms.
    * t=8: B wakes.  update_curr: vA = 7.  place_entity (PLACE_LAG): V = 7, W = 1, lag
      inflated to 1 x (1 + 1) / 1 = 2: vB = 5, deadline 8 (then V = 6 and B's lag is 1 again).
      check_preempt_wakeup: A is not eligible (sum 12 < 7 x 2), B is: pick_eevdf gives B,
      which preempts; slice 8 - 5 = 3 ms.
    * t=11: vB = 8, deadline 11.  Sum 15: A eligible (7 x 2 <= 15), B not: A, slice 9 - 7 = 2.
    * t=13: vA = 9, deadline 12.  Sum 17: B (8 x 2 <= 17), slice 11 - 8 = 3.
    * t=16: vB = 11, deadline 14.  Sum 20: A (9 x 2 <= 20), slice 12 - 9 = 3.
    """
    starts, sched, a, b = _run(Eevdf(3 * MS, 4 * MS), 18 * MS)
    assert starts == [(0, 1), (3 * MS, 2), (4 * MS, 1), (7 * MS, 1), (8 * MS, 2),
                      (11 * MS, 1), (13 * MS, 2), (16 * MS, 1)]
    assert (a.vruntime, a.deadline, b.vruntime, b.deadline) == (9 * MS, 12 * MS, 11 * MS, 14 * MS)


def test_eevdf_run_to_parity_keeps_an_eligible_current_task():
    """RUN_TO_PARITY: a woken task with an earlier deadline does not preempt a current task
    that is still eligible and has its deadline from the pick.

    Base slice 3 ms.  A runs alone from 0 (deadline 3).  B is added at t=1: update_curr makes
    vA = 1, B is placed at V = 1 with deadline 4.  pick_eevdf: A is eligible (sum 2 >= 1 x 2)
    and vlag == deadline (its pick-time deadline), so A is kept: no preemption; A's slice ends
    at 3 (vA 3, deadline 6), then B (eligible: 4 >= 1 x 2; deadline 4) runs 3 ms.
    """
    sim = Simulator()
    sched = Scheduler(sim, 1, 3 * MS, 0, policy=Eevdf(3 * MS, 4 * MS))
    a, b = Task(1, "a"), Task(2, "b")
    ex = SliceExecutor(sim, sched, {1: [["run", 100 * MS]], 2: [["run", 100 * MS]]})
    sched.add_task(a)
    sim.at(1 * MS, sched.add_task, b)
    sim.run(7 * MS)
    assert ex.starts == [(0, 1), (3 * MS, 2), (6 * MS, 1)]
    assert (b.vruntime, b.deadline) == (4 * MS, 7 * MS)


def test_tunable_scaling_is_get_update_sysctl_factor():
    """1 + ilog2(min(cpus, 8)) for log, min(cpus, 8) for linear, 1 for none."""
    assert [tunable_factor("log", n) for n in (1, 2, 3, 4, 8, 64)] == [1, 2, 2, 3, 4, 4]
    assert [tunable_factor("linear", n) for n in (1, 3, 16)] == [1, 3, 8]
    assert tunable_factor("none", 16) == 1


def test_eevdf_place_inflates_lag_with_truncation_and_dequeue_clamps_it():
    """place_entity with PLACE_LAG, two queued tasks (W = 2) at 10 ms and 13 ms, no current:
    V = floor(23 / 2) = 11.5 ms.  A task with vlag -1,000,001 ns is placed with
    div_s64(-1,000,001 x 3, 2) = -1,500,001 (toward zero; a floor would give -1,500,002):
    vruntime 13,000,001, deadline one base slice (3 ms) later.

    update_entity_lag when it leaves again, counted in V: sum 36,000,001 / 3 = 12,000,000
    (floor), lag 12,000,000 - 13,000,001 = -1,000,001, inside the limit
    max(2 x 3 ms, 4 ms) = 6 ms.  Moved to 30 ms ahead of the others, its lag is clamped to -6 ms.
    """
    from pfsim.sched.scheduler import RunQueue
    policy = Eevdf(3 * MS, 4 * MS)
    rq = RunQueue(0)
    x, y, t = Task(1, "x"), Task(2, "y"), Task(3, "t")
    x.vruntime, y.vruntime = 10 * MS, 13 * MS
    rq.queue.extend([x, y])
    t.vlag = -1_000_001
    policy.place(rq, t, wakeup=True, new=False)
    assert (t.vruntime, t.deadline) == (13_000_001, 16_000_001)
    rq.queue.append(t)
    policy.dequeue(rq, t, sleep=False)
    assert t.vlag == -1_000_001
    t.vruntime = 42 * MS
    policy.dequeue(rq, t, sleep=False)
    assert t.vlag == -6 * MS
