"""Schedulable entities with Linux-like states and reference counts.

A :class:`Task` is a guest task (thread of a process) or, on the host, a vCPU thread.  Its
``usage`` count mirrors ``task_struct::usage``: one reference for being alive, plus one for
each holder (a pfault wait list, a lookup in an interrupt handler...).  The structure is
freed when the count reaches zero; touching it afterwards is an invariant violation.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from pfsim.errors import InvariantViolation

if TYPE_CHECKING:
    from pfsim.sched.notifier import PreemptNotifier


class TaskState(IntEnum):
    """Linux task states (``TASK_RUNNING`` is split into running and runnable)."""

    RUNNING = 0  # on a CPU now
    RUNNABLE = 1  # on a run queue, waiting for a CPU
    INTERRUPTIBLE = 2  # sleeping; signals and timers wake it (S)
    UNINTERRUPTIBLE = 3  # sleeping; only the event it waits for wakes it (D)
    DEAD = 4  # exited; its last switch away has happened or is about to


class Task:
    """One schedulable entity.

    Args:
        tid: unique id (the pid seen by pfault tokens for guest tasks).
        name: label for reports.
        owner: the process (guest) or VM (host) the task belongs to; opaque here.
        allowed_cpu: pin to this CPU index, or None for any CPU.
    """

    __slots__ = ("tid", "name", "owner", "state", "usage", "freed", "cpu", "allowed_cpu",
                 "on_cpu", "preempt_notifiers", "runtime_ns", "switches_in", "data",
                 "wake_pending", "vruntime", "deadline", "vlag")

    def __init__(self, tid: int, name: str, owner: Any = None, allowed_cpu: int | None = None) -> None:
        self.tid = tid
        self.name = name
        self.owner = owner
        self.state = TaskState.RUNNABLE
        self.usage = 1
        self.freed = False
        self.cpu: int | None = None
        self.allowed_cpu = allowed_cpu
        self.on_cpu = False
        self.preempt_notifiers: list[PreemptNotifier] = []
        self.runtime_ns = 0
        self.switches_in = 0
        self.wake_pending = False
        self.vruntime = 0
        self.deadline = 0
        """EEVDF virtual deadline."""
        self.vlag = 0
        """EEVDF lag kept across a sleep or a move (the deadline at pick while it runs)."""
        self.data: Any = None  # the executor's per-task state (what the task is doing)

    def get(self) -> None:
        """Take a reference (``get_task_struct``)."""
        if self.freed:
            raise InvariantViolation(f"get_task_struct on freed task {self.tid}")
        self.usage += 1

    def put(self) -> None:
        """Drop a reference (``put_task_struct``); the task is freed at zero."""
        if self.freed or self.usage <= 0:
            raise InvariantViolation(f"put_task_struct underflow on task {self.tid}")
        self.usage -= 1
        if self.usage == 0:
            if self.state != TaskState.DEAD:
                raise InvariantViolation(f"task {self.tid} freed while not dead")
            self.freed = True

    @property
    def is_sleeping(self) -> bool:
        return self.state in (TaskState.INTERRUPTIBLE, TaskState.UNINTERRUPTIBLE)

    def __repr__(self) -> str:
        return f"Task({self.tid}, {self.name!r}, {self.state.name})"
