"""Tasks and the scheduler, shared by guest tasks on vCPUs and vCPU threads on host CPUs."""

from pfsim.sched.notifier import PreemptNotifier, PreemptOps, SwitchContext
from pfsim.sched.scheduler import Executor, RunQueue, Scheduler
from pfsim.sched.task import Task, TaskState

__all__ = ["Executor", "PreemptNotifier", "PreemptOps", "RunQueue", "Scheduler",
           "SwitchContext", "Task", "TaskState"]
