"""Scheduling policies: which queued task runs next, for how long, and who preempts whom.

``rr``: round robin: FIFO queues, a fixed slice, no wake-up preemption.

``cfs``: the Completely Fair Scheduler as Linux v2.6.32 has it (kernel/sched_fair.c of the
2.6.32.70 longterm release), for tasks of equal weight:

* every task has a ``vruntime`` that grows with the CPU time it uses (``update_curr``); the
  queued task with the smallest runs next (``__pick_next_entity``), ties in queue order;
* ``min_vruntime`` follows the running task and the leftmost queued one and never goes back
  (``update_min_vruntime``: ``max(min_vruntime, min(curr, leftmost))``, where ``curr`` is the
  task still current while it is dequeued to sleep, as 2.6.32 does);
* slice = ``__sched_period(nr_running) / nr_running`` (``sched_slice``), the period being
  ``sched_latency`` up to ``sched_nr_latency = ceil(latency / min_granularity)`` tasks and
  ``min_granularity * nr_running`` above;
* a sleeping task keeps its absolute ``vruntime``; on wake-up it is placed at
  ``max(vruntime, min_vruntime - sched_latency / 2)`` (``place_entity`` with FAIR_SLEEPERS and
  GENTLE_FAIR_SLEEPERS), after the running task's time is accounted (``enqueue_entity`` calls
  ``update_curr`` first); a task that changes CPU keeps its offset to ``min_vruntime``
  (``task_waking_fair`` subtracts the old queue's, ``enqueue_entity`` with ENQUEUE_MIGRATE adds
  the new one's; ``dequeue_entity`` does the same for a pulled task); a new task starts at
  ``min_vruntime``;
* a woken task preempts the running one when the running one's vruntime exceeds its own by
  more than ``wakeup_granularity`` (``check_preempt_wakeup`` / ``wakeup_preempt_entity``).

Left out of ``cfs``: START_DEBIT (a new task would start one ``sched_vslice`` after
``min_vruntime``), ADAPTIVE_GRAN (the granularity shrinks when the running task has run long
since its pick), the LAST/NEXT buddies (only with ``sched_nr_latency`` tasks or more),
the second test of ``check_preempt_tick`` and its re-computation of the slice at each tick (a
slice is fixed at the pick; with ``guest.tick`` it ends at the first tick past its end,
:mod:`pfsim.sched.tick`), the
fixed-point ``calc_delta_mine`` (the slice is an exact division: for two tasks the kernel's is
0.05 % shorter).

``eevdf``: Earliest Eligible Virtual Deadline First as Linux v6.6 has it (kernel/sched/fair.c of
6.6.9), for tasks of equal weight:

* ``V = avg_vruntime`` is the mean vruntime of the queued tasks and the running one, rounded
  down (``avg_vruntime``); a task is eligible when its vruntime is at most ``V``, compared
  without rounding (``entity_eligible``: ``sum(v_j) >= v_i * n``);
* every task asks for ``base_slice`` of CPU: ``deadline = vruntime + base_slice``; when its
  vruntime reaches the deadline it gets a new one and the CPU is rescheduled
  (``update_deadline``); ``base_slice`` is ``sysctl_sched_base_slice``: the normalized value
  times 1, ``1 + ilog2(min(ncpus, 8))`` or ``min(ncpus, 8)`` (``get_update_sysctl_factor`` with
  ``sched_tunable_scaling`` none, log (the default) or linear);
* the next task is the eligible one with the earliest deadline (``pick_eevdf``); the current
  one is kept while it is eligible and has not been given a new deadline since it was picked
  (RUN_TO_PARITY, with the deadline stashed in ``vlag`` by ``set_next_entity``), and wins ties;
  among queued tasks ties go to the smaller vruntime, then queue order;
* a task leaving the queue (sleep, exit, pulled to another CPU) keeps its lag
  ``vlag = V - vruntime`` clamped to ``± max(2 * base_slice, TICK_NSEC)``
  (``update_entity_lag``); it is placed back at ``V - vlag * (W + 1) / W`` (``place_entity``
  with PLACE_LAG, W the tasks already queued or running, the product divided with truncation as
  ``div_s64`` does), or at ``V`` on an empty queue, with ``deadline = vruntime + base_slice``;
  a new task has no lag: ``vruntime = V``;
* a woken task preempts the running one when it is what ``pick_eevdf`` would pick now, the
  running task's time accounted first (``check_preempt_wakeup``; ``check_preempt_wakeup_fair``
  from 6.7 on).

Left out of ``eevdf``: PLACE_DEADLINE_INITIAL (in 6.6 ``task_fork_fair`` gives a forked task
half a slice, but ``wake_up_new_task`` enqueues it without ENQUEUE_INITIAL and
``enqueue_entity`` places it again with a full one, so in 6.6 it has no lasting effect), the
NEXT buddy (off by default), HRTICK (with ``guest.tick`` a slice ends at the first tick at or
past the deadline, :mod:`pfsim.sched.tick`), nice weights, and what came after 6.6: DELAY_DEQUEUE and the ``se->slice`` requested
through ``sched_attr`` (6.12), the lag decay of sleeping tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfsim.sched.task import TaskState
from pfsim.sched.tick import tick_nsec

if TYPE_CHECKING:
    from pfsim.config.schema import SchedConfig
    from pfsim.sched.scheduler import RunQueue
    from pfsim.sched.task import Task

POLICY_RR, POLICY_CFS, POLICY_EEVDF = 0, 1, 2
"""Policy numbers of the compiled core (``SP_POLICY``)."""


class RoundRobin:
    """FIFO run queues and a fixed time slice."""

    name = "rr"
    number = POLICY_RR

    def __init__(self, timeslice_ns: int) -> None:
        self.timeslice_ns = timeslice_ns

    def pick(self, rq: RunQueue) -> Task | None:
        return rq.queue.popleft() if rq.queue else None

    def slice(self, rq: RunQueue) -> int:
        return self.timeslice_ns

    def account(self, rq: RunQueue, task: Task, ran_ns: int) -> None:
        """``task``, current on ``rq``, ran ``ran_ns`` (``update_curr``)."""

    def dequeue(self, rq: RunQueue, task: Task, sleep: bool) -> None:
        """``task`` leaves ``rq``: it sleeps or exits (``sleep``, it is the current task) or it
        is pulled to another CPU (it is still in the queue)."""

    def migrate(self, task: Task, source: RunQueue, rq: RunQueue) -> None:
        """``task`` moves from ``source`` to ``rq`` (before ``rq``'s current time is accounted)."""

    def place(self, rq: RunQueue, task: Task, wakeup: bool, new: bool) -> None:
        """``task`` is about to be queued on ``rq`` (woken, new, or pulled from another CPU)."""

    def set_next(self, rq: RunQueue, task: Task) -> None:
        """``task`` becomes the current task of ``rq`` (a switch, not a re-pick)."""

    def should_preempt(self, rq: RunQueue, woken: Task, now: int) -> bool:
        return False


def _update_min(rq: RunQueue, curr: Task | None, leaving: Task | None = None) -> None:
    """``update_min_vruntime``: ``max(min_vruntime, min(curr, leftmost))`` (``leaving``: a
    queued task taken as already gone)."""
    low = None
    for t in rq.queue:
        if t is leaving:
            continue
        if low is None or t.vruntime < low:
            low = t.vruntime
    if curr is not None and (low is None or curr.vruntime < low):
        low = curr.vruntime
    if low is not None and low > rq.min_vruntime:
        rq.min_vruntime = low


class Fair(RoundRobin):
    """CFS of Linux v2.6.32 for equal-weight tasks."""

    name = "cfs"
    number = POLICY_CFS

    def __init__(self, latency_ns: int, min_granularity_ns: int, wakeup_granularity_ns: int) -> None:
        super().__init__(latency_ns)
        self.latency = latency_ns
        self.min_granularity = min_granularity_ns
        self.wakeup_granularity = wakeup_granularity_ns
        # sched_nr_latency = DIV_ROUND_UP(latency, min_granularity); no floor without one
        self.nr_latency = -(-latency_ns // min_granularity_ns) if min_granularity_ns else 1 << 62

    def pick(self, rq: RunQueue) -> Task | None:
        if not rq.queue:
            return None
        best = min(range(len(rq.queue)), key=lambda i: rq.queue[i].vruntime)
        task = rq.queue[best]
        del rq.queue[best]
        return task

    def slice(self, rq: RunQueue) -> int:
        """``sched_slice`` for the picked task: ``__sched_period(nr) / nr``."""
        nr = len(rq.queue) + 1
        period = self.latency if nr <= self.nr_latency else self.min_granularity * nr
        return period // nr

    def account(self, rq: RunQueue, task: Task, ran_ns: int) -> None:
        task.vruntime += ran_ns
        _update_min(rq, task)  # 2.6.32 counts cfs_rq->curr, even while it is dequeued to sleep

    def dequeue(self, rq: RunQueue, task: Task, sleep: bool) -> None:
        if sleep:  # dequeue_entity: update_min_vruntime, cfs_rq->curr still the sleeper
            _update_min(rq, task)
        else:  # dequeue_entity(!sleep): min_vruntime without it, then the offset is kept
            _update_min(rq, rq.current, leaving=task)

    def migrate(self, task: Task, source: RunQueue, rq: RunQueue) -> None:
        task.vruntime += rq.min_vruntime - source.min_vruntime

    def place(self, rq: RunQueue, task: Task, wakeup: bool, new: bool) -> None:
        if new:
            task.vruntime = rq.min_vruntime
        elif wakeup:  # GENTLE_FAIR_SLEEPERS: half a latency of credit at most
            task.vruntime = max(task.vruntime, rq.min_vruntime - (self.latency >> 1))

    def should_preempt(self, rq: RunQueue, woken: Task, now: int) -> bool:
        current = rq.current
        if current is None:
            return False
        return current.vruntime - woken.vruntime > self.wakeup_granularity


def tunable_factor(scaling: str, ncpus: int) -> int:
    """``get_update_sysctl_factor`` (v6.6): the multiplier of the normalized tunables."""
    cpus = min(ncpus, 8)
    if scaling == "none":
        return 1
    if scaling == "linear":
        return cpus
    return 1 + cpus.bit_length() - 1  # 1 + ilog2(cpus)


def _div_trunc(a: int, b: int) -> int:
    """``div_s64``: division rounded toward zero."""
    q = abs(a) // b
    return -q if a < 0 else q


class Eevdf(RoundRobin):
    """EEVDF of Linux v6.6 for equal-weight tasks."""

    name = "eevdf"
    number = POLICY_EEVDF

    def __init__(self, base_slice_ns: int, tick_ns: int) -> None:
        super().__init__(base_slice_ns)
        self.base_slice = base_slice_ns
        self.lag_limit = max(2 * base_slice_ns, tick_ns)

    @staticmethod
    def _on_rq(rq: RunQueue) -> tuple[int, int, Task | None]:
        """Sum of vruntimes and number of the queued tasks and the current one if it is still
        runnable (``cfs_rq->avg_vruntime``/``avg_load`` plus ``curr``), and that current."""
        total = 0
        for t in rq.queue:
            total += t.vruntime
        n = len(rq.queue)
        cur = rq.current
        if cur is not None and cur.state == TaskState.RUNNING:
            total += cur.vruntime
            n += 1
        elif cur is not None and cur.state != TaskState.RUNNABLE:
            cur = None  # asleep or dead: not on the queue
        return total, n, cur

    def _best(self, rq: RunQueue) -> Task | None:
        """``pick_eevdf`` over the queue and a runnable current task."""
        total, n, cur = self._on_rq(rq)
        if n == 0:
            return None
        if cur is not None and total < cur.vruntime * n:
            cur = None  # not eligible
        if cur is not None and cur.vlag == cur.deadline:
            return cur  # RUN_TO_PARITY
        best = cur
        for t in rq.queue:
            if t is cur or total < t.vruntime * n:
                continue
            if best is None or t.deadline < best.deadline or (
                    t.deadline == best.deadline and best is not cur and t.vruntime < best.vruntime):
                best = t
        return best

    def pick(self, rq: RunQueue) -> Task | None:
        best = self._best(rq)
        if best is not None:
            rq.queue.remove(best)
        return best

    def slice(self, rq: RunQueue) -> int:
        """Until the current task's vruntime reaches its deadline (``update_deadline``)."""
        cur = rq.current
        assert cur is not None
        return cur.deadline - cur.vruntime

    def account(self, rq: RunQueue, task: Task, ran_ns: int) -> None:
        task.vruntime += ran_ns
        if task.vruntime >= task.deadline:  # update_deadline: a new request
            task.deadline = task.vruntime + self.base_slice
        _update_min(rq, task)

    def dequeue(self, rq: RunQueue, task: Task, sleep: bool) -> None:
        """``update_entity_lag`` while the task still counts, then ``update_min_vruntime``
        without it."""
        total, n, _ = self._on_rq(rq)
        if sleep:  # the current task: it still counts (se->on_rq is cleared after this)
            total += task.vruntime
            n += 1
        lag = total // n - task.vruntime
        task.vlag = max(-self.lag_limit, min(self.lag_limit, lag))
        if sleep:
            _update_min(rq, None)
        else:
            cur = rq.current
            _update_min(rq, cur if cur is not None and cur.state == TaskState.RUNNING else None,
                        leaving=task)

    def place(self, rq: RunQueue, task: Task, wakeup: bool, new: bool) -> None:
        total, n, _ = self._on_rq(rq)
        avg = total // n if n else rq.min_vruntime
        lag = 0 if new else task.vlag
        if n:  # PLACE_LAG: inflate the lag so that it survives the task's own weight in V
            lag = _div_trunc(lag * (n + 1), n)
        else:
            lag = 0
        task.vruntime = avg - lag
        task.deadline = task.vruntime + self.base_slice

    def set_next(self, rq: RunQueue, task: Task) -> None:
        task.vlag = task.deadline  # set_next_entity's stash, read by RUN_TO_PARITY

    def should_preempt(self, rq: RunQueue, woken: Task, now: int) -> bool:
        return rq.current is not None and self._best(rq) is woken


def make_policy(sched: SchedConfig, timeslice_ns: int, ncpus: int = 1, hz: int = 250) -> RoundRobin:
    """The policy a ``SchedConfig`` names (``timeslice_ns``: the round-robin slice; ``ncpus``:
    the CPUs of that scheduler, for EEVDF's tunable scaling; ``hz``: the kernel's CONFIG_HZ,
    ``guest.hz``)."""
    if sched.policy == "rr":
        return RoundRobin(timeslice_ns)
    if sched.policy == "eevdf":
        factor = tunable_factor(sched.tunable_scaling, ncpus)
        return Eevdf(sched.base_slice * factor, tick_nsec(hz))
    return Fair(sched.latency, sched.min_granularity, sched.wakeup_granularity)
