"""Scheduling policies: which queued task runs next, for how long, and who preempts whom.

``rr``: round robin: FIFO queues, a fixed slice, no wake-up preemption.

``cfs``: the Completely Fair Scheduler's rules for tasks of equal weight (kernel/sched/fair.c):

* every task has a ``vruntime`` that grows with the CPU time it uses; the queued task with the
  smallest runs next (``pick_next_entity``), ties in queue order;
* slice = ``sched_latency / nr_running``, at least ``min_granularity`` (``sched_slice``);
* a woken task is placed at ``max(vruntime, min_vruntime - sched_latency / 2)``
  (``place_entity`` with GENTLE_FAIR_SLEEPERS), a new one at ``min_vruntime``; a task moving to
  another CPU keeps its lag against the queue's ``min_vruntime``;
* a woken task preempts the running one when the running one's vruntime exceeds its own by
  more than ``wakeup_granularity`` (``check_preempt_wakeup`` / ``wakeup_preempt_entity``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfsim.config.schema import SchedConfig
    from pfsim.sched.scheduler import RunQueue
    from pfsim.sched.task import Task


class RoundRobin:
    """FIFO run queues and a fixed time slice."""

    name = "rr"

    def __init__(self, timeslice_ns: int) -> None:
        self.timeslice_ns = timeslice_ns

    def pick(self, rq: RunQueue) -> Task | None:
        return rq.queue.popleft() if rq.queue else None

    def slice(self, rq: RunQueue) -> int:
        return self.timeslice_ns

    def account(self, rq: RunQueue, task: Task, ran_ns: int) -> None:
        """``task`` ran ``ran_ns`` on ``rq``."""

    def place(self, rq: RunQueue, task: Task, wakeup: bool, source: RunQueue | None) -> None:
        """``task`` is about to be queued on ``rq`` (woken, new, or moved from ``source``)."""

    def should_preempt(self, rq: RunQueue, woken: Task, now: int) -> bool:
        return False


class Fair(RoundRobin):
    """CFS for equal-weight tasks."""

    name = "cfs"

    def __init__(self, latency_ns: int, min_granularity_ns: int, wakeup_granularity_ns: int) -> None:
        super().__init__(latency_ns)
        self.latency = latency_ns
        self.min_granularity = min_granularity_ns
        self.wakeup_granularity = wakeup_granularity_ns

    def pick(self, rq: RunQueue) -> Task | None:
        if not rq.queue:
            return None
        best = min(range(len(rq.queue)), key=lambda i: rq.queue[i].vruntime)
        task = rq.queue[best]
        del rq.queue[best]
        return task

    def slice(self, rq: RunQueue) -> int:
        running = len(rq.queue) + 1
        return max(self.min_granularity, self.latency // running)

    def account(self, rq: RunQueue, task: Task, ran_ns: int) -> None:
        task.vruntime += ran_ns
        self._update_min(rq, task)

    def _update_min(self, rq: RunQueue, running: Task | None) -> None:
        candidates = [t.vruntime for t in rq.queue]
        if running is not None:
            candidates.append(running.vruntime)
        if candidates:
            rq.min_vruntime = max(rq.min_vruntime, min(candidates))

    def place(self, rq: RunQueue, task: Task, wakeup: bool, source: RunQueue | None) -> None:
        if task.vruntime_base is None:  # a new task starts at the queue's minimum
            task.vruntime = rq.min_vruntime
        else:  # keep its lag against the queue it left
            task.vruntime += rq.min_vruntime - task.vruntime_base
        task.vruntime_base = None
        if wakeup:
            task.vruntime = max(task.vruntime, rq.min_vruntime - self.latency // 2)

    def should_preempt(self, rq: RunQueue, woken: Task, now: int) -> bool:
        current = rq.current
        if current is None:
            return False
        current_v = current.vruntime + max(0, now - rq.exec_start)
        return current_v - woken.vruntime > self.wakeup_granularity


def make_policy(sched: SchedConfig, timeslice_ns: int) -> RoundRobin:
    """The policy a ``SchedConfig`` names (``timeslice_ns``: the round-robin slice)."""
    if sched.policy == "rr":
        return RoundRobin(timeslice_ns)
    return Fair(sched.latency, sched.min_granularity, sched.wakeup_granularity)
