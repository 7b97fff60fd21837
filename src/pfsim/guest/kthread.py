"""Guest kernel threads: kswapd0 and the balloon's kworker, scheduled like any task.

A :class:`KernelThread` is a task of the guest scheduler with no user address space and no
process (``kthread_run``; Linux 5.15 kernel/kthread.c): it is not counted in any process's
counters and faults on nothing.  Its body is a loop of pieces of work, each applied at once
when the thread has a vCPU, followed by the CPU time that work costs (the cost the model
computes for it: ``reclaim_page`` per page a kswapd pass isolated, per page a balloon chunk
moved).  That CPU time is run like a compute step: it ends with the slice, is cut short by
preemption and by the host taking the vCPU away, and goes on where it stopped when the thread
runs again.  Only when it is all run does the loop go on (the next pass, the next chunk, or
sleep), so while kswapd or the kworker runs, the task it displaced does not.

:mod:`pfsim.guest.executor` runs the thread on its vCPU (``VcpuExecutor._run_kthread``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pfsim.engine import Priority
from pfsim.sched import Task, TaskState

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel

SLEEP = -1
"""What a body returns when the thread sleeps (until :meth:`KernelThread.wake`, or the timer
set by :meth:`KernelThread.sleep_for`)."""

KTHREAD_TIDS = {"kswapd0": 999, "kworker/0:1": 998}
"""Thread ids of the guest's kernel threads, each its own thread group as in Linux: below
every user tid (pid × 1000 + i) and above the user pids of any but a huge run (a trace names
processes by pid)."""


class KernelThread:
    """One guest kernel thread.

    Args:
        kernel: the guest kernel.
        name: the thread's comm (``kswapd0``, ``kworker/0:1``).
        body: called when the thread has a vCPU and the CPU time of its previous piece of
            work is run, at that time: applies the next piece and returns its CPU time in ns,
            or :data:`SLEEP`.
        allowed_cpu: the vCPU it is bound to (a per-CPU kworker), None for any.
    """

    kthread = True
    apf_wait = False
    apf_since = -1
    killed = False

    def __init__(self, kernel: GuestKernel, name: str, body: Callable[[], int],
                 allowed_cpu: int | None = None) -> None:
        self.kernel = kernel
        self.name = name
        self.body = body
        self.task = Task(KTHREAD_TIDS[name], name, owner=None, allowed_cpu=allowed_cpu)
        self.task.state = TaskState.INTERRUPTIBLE  # created, then asleep until woken
        self.task.data = self
        self.owed_ns = 0
        """CPU time of the current piece of work not yet run."""
        self.cpu_ns = 0
        """CPU time its work has run on vCPUs (excluding time its vCPU was taken away)."""
        self.wakeups = 0
        self.sleep_state = TaskState.INTERRUPTIBLE
        self.timed_out = False
        """The last wake-up was its timeout (``schedule_timeout`` returned 0)."""
        self._timer_seq = 0

    def wake(self) -> bool:
        """``wake_up_process`` (``wake_up_interruptible`` on its wait queue, ``queue_work``):
        the thread becomes runnable; False if it was not asleep."""
        if self.kernel.panic is not None:
            return False
        woke = self.kernel.scheduler.wake_up(self.task)
        if woke:
            self.wakeups += 1
            self.timed_out = False
            self._timer_seq += 1  # a timeout still pending is void
        return woke

    def sleep_for(self, ns: int, state: TaskState = TaskState.UNINTERRUPTIBLE) -> int:
        """Sleep at most ``ns``: ``msleep`` (TASK_UNINTERRUPTIBLE: only the timeout wakes it)
        or ``schedule_timeout`` in TASK_INTERRUPTIBLE (:meth:`wake` ends it early).  The body
        returns this."""
        self.sleep_state = state
        self._timer_seq += 1
        self.kernel.sim.at(self.kernel.sim.now + ns, self._timer, self._timer_seq,
                           priority=Priority.URGENT)
        return SLEEP

    def _timer(self, seq: int) -> None:
        if seq != self._timer_seq or not self.task.is_sleeping or self.kernel.panic is not None:
            return
        if self.kernel.scheduler.wake_up(self.task):
            self.wakeups += 1
            self.timed_out = True

    def result(self) -> dict[str, Any]:
        task = self.task
        return {"tid": task.tid, "cpu": task.cpu, "state": task.state.name.lower(),
                "runtime_ns": task.runtime_ns, "cpu_ns": self.cpu_ns,
                "wakeups": self.wakeups, "switches_in": task.switches_in}
