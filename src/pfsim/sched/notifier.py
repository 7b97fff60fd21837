"""Preempt notifiers (include/linux/preempt.h): callbacks on a task's context switches.

``sched_out(notifier, next)`` fires in ``prepare_task_switch`` with the run-queue lock held
and interrupts off; ``sched_in(notifier, cpu)`` fires in ``finish_task_switch`` with the lock
dropped and interrupts on.  Preemption is disabled during both (the scheduler asserts it and
passes the :class:`SwitchContext` so callbacks and tests can check it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pfsim.sched.task import Task


@dataclass
class SwitchContext:
    """CPU context seen by a notifier callback."""

    cpu: int
    now: int
    preempt_count: int
    irqs_disabled: bool
    rq_locked: bool
    prev_runnable: bool = False
    """sched_out only: the outgoing task is still runnable (preempted, not blocking)."""


class PreemptOps(Protocol):
    """The two callbacks of ``struct preempt_ops``."""

    def sched_in(self, notifier: PreemptNotifier, cpu: int, ctx: SwitchContext) -> None: ...

    def sched_out(self, notifier: PreemptNotifier, next_task: Task | None,
                  ctx: SwitchContext) -> None: ...


class PreemptNotifier:
    """``struct preempt_notifier``: a link on one task's list plus its ops."""

    __slots__ = ("ops", "owner_task")

    def __init__(self, ops: PreemptOps) -> None:
        self.ops = ops
        self.owner_task: Task | None = None
