"""Per-CPU run queues, time slices, wake-ups, idle and context switches with preempt notifiers.

The scheduler decides *who* runs *where* and *from when*; what a running task does is the
business of an :class:`Executor` (the guest kernel for tasks on vCPUs, the hypervisor for vCPU
threads on host CPUs).  The executor calls :meth:`Scheduler.schedule` at a task's boundaries
(it blocked, exited or its slice ended) and the scheduler calls :meth:`Executor.start` when a
task begins running on a CPU.

Which task runs next and for how long is a policy (:mod:`pfsim.sched.policy`: round robin or
CFS).  A woken task goes to its previous CPU unless another allowed CPU is idle; an idle CPU
pulls the most recently queued task from the busiest queue.  A ``schedule`` that picks the
same task again fires nothing and costs nothing.  Wake-up preemption (CFS) asks the executor
to stop the running task through ``on_preempt``.

The guest scheduler may have a periodic tick (``tick_ns``, :mod:`pfsim.sched.tick`): a slice
then ends at the first tick at (or, cfs, past) its end, computed, not simulated.  With a
``steal_clock`` (paravirtual steal time) the steal a CPU reports is taken out of the run time
charged to its current task and pushes its slice end back by as much.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from pfsim.engine import Priority, Simulator
from pfsim.errors import InvariantViolation
from pfsim.machine.trace_records import K_GUEST_SWITCH, K_HOST_SWITCH, OFF, TraceRecorder
from pfsim.sched.notifier import PreemptNotifier, SwitchContext
from pfsim.sched.policy import RoundRobin
from pfsim.sched.task import Task, TaskState
from pfsim.sched.tick import tick_after


class Executor(Protocol):
    """What runs tasks: told when a task starts running on a CPU."""

    def start(self, cpu: int, task: Task, now: int) -> None:
        """``task`` runs on ``cpu`` from ``now`` until it calls ``Scheduler.schedule``."""


class RunQueue:
    """One CPU: its current task, its queue and its accounting."""

    __slots__ = ("index", "current", "queue", "slice_end", "preempt_count", "irqs_disabled",
                 "locked", "idle_since", "idle_ns", "context_switches", "kick_pending",
                 "online", "min_vruntime", "exec_start", "steal_seen", "slice_steal")

    def __init__(self, index: int) -> None:
        self.index = index
        self.current: Task | None = None
        self.queue: deque[Task] = deque()
        self.slice_end = 0
        self.preempt_count = 0
        self.irqs_disabled = False
        self.locked = False
        self.idle_since: int | None = 0
        self.idle_ns = 0
        self.context_switches = 0
        self.kick_pending = False
        self.online = True
        self.min_vruntime = 0
        self.exec_start = 0
        self.steal_seen = 0
        """``rq->prev_steal_time_rq``: the CPU's steal already taken out of charged time."""
        self.slice_steal = 0
        """The CPU's steal clock when the current slice began (steal since pushes its end)."""

    def load(self) -> int:
        return len(self.queue) + (1 if self.current is not None else 0)


class Scheduler:
    """Schedules :class:`Task` objects on ``ncpus`` CPUs.

    Args:
        sim: the event loop.
        ncpus: number of CPUs.
        timeslice_ns: round-robin slice.
        switch_ns: CPU time of a real context switch.
        idle_balance: idle CPUs pull runnable tasks from busy ones.
        name: label ("guest", "host").
    """

    def __init__(self, sim: Simulator, ncpus: int, timeslice_ns: int, switch_ns: int,
                 idle_balance: bool = True, name: str = "sched",
                 policy: RoundRobin | None = None) -> None:
        self.sim = sim
        self.cpus = [RunQueue(i) for i in range(ncpus)]
        self.timeslice_ns = timeslice_ns
        self.policy = policy if policy is not None else RoundRobin(timeslice_ns)
        self.switch_ns = switch_ns
        self.idle_balance = idle_balance
        self.name = name
        self.executor: Executor | None = None
        self.notifier_key = 0  # preempt_notifier_inc/dec static key
        self.on_idle: Callable[[int], None] | None = None
        """Called when a CPU has nothing to run (a guest vCPU executes HLT)."""
        self.on_preempt: Callable[[int], None] | None = None
        """Called when a woken task should preempt the one running on a CPU (CFS)."""
        self.on_kick: Callable[[int], bool] | None = None
        """Called when an idle CPU gets work (a reschedule IPI); True means the CPU is asleep
        in its host and will dispatch when it runs again."""
        self.warnings: list[str] = []
        self._firing = False
        self.recorder: TraceRecorder = OFF
        """Where context switches are recorded when the run is traced."""
        self.tick_ns = 0
        """Length of the periodic tick (TICK_NSEC); 0: no tick, a slice ends exactly."""
        self.tick_strict = False
        """The tick ends a slice only once it is exceeded (cfs ``check_preempt_tick``:
        ``delta_exec > ideal_runtime``), not once it is used up (eevdf ``update_deadline``)."""
        self.steal_clock: Callable[[int], int] | None = None
        """Paravirtual steal time: the steal CPU ``i`` has reported so far (its vCPU's wait for
        a host CPU, recorded at each entry); None: no steal accounting."""

    # ------------------------------------------------------------------ notifiers

    def preempt_notifier_inc(self) -> None:
        """Enable notifier firing (KVM does it when a VM is created)."""
        self.notifier_key += 1

    def preempt_notifier_dec(self) -> None:
        """Drop one enable (KVM does it when a VM is destroyed)."""
        if self.notifier_key <= 0:
            raise InvariantViolation("preempt_notifier_dec below zero")
        self.notifier_key -= 1

    def preempt_notifier_register(self, task: Task, notifier: PreemptNotifier) -> None:
        """Add ``notifier`` at the head of ``task``'s list (callbacks run in LIFO order).

        With the static key off Linux warns and adds it anyway; the warning is recorded.
        """
        if self.notifier_key == 0:
            self.warnings.append("registering preempt_notifier while notifiers disabled")
        if notifier.owner_task is not None:
            raise InvariantViolation("preempt notifier already registered on a task")
        notifier.owner_task = task
        task.preempt_notifiers.insert(0, notifier)

    def preempt_notifier_unregister(self, notifier: PreemptNotifier) -> None:
        """Remove ``notifier``; forbidden from inside a callback (undefined in Linux)."""
        if self._firing:
            raise InvariantViolation("preempt_notifier_unregister called from a notifier callback")
        task = notifier.owner_task
        if task is None:
            raise InvariantViolation("unregistering a preempt notifier that is not registered")
        task.preempt_notifiers.remove(notifier)
        notifier.owner_task = None

    # ------------------------------------------------------------------ tasks

    def add_task(self, task: Task, now: int | None = None) -> None:
        """Make a new task runnable (``wake_up_new_task``) on the least loaded allowed CPU."""
        task.state = TaskState.RUNNABLE
        cpu = self._select_cpu(task, new=True)
        task.cpu = cpu
        rq = self.cpus[cpu]
        self._update_curr(rq, self.sim.now)
        self.policy.place(rq, task, wakeup=False, new=True)
        self._enqueue(cpu, task)

    def wake_up(self, task: Task) -> bool:
        """``wake_up_process``: a sleeping task becomes runnable; returns whether it woke.

        A task that set itself sleeping but has not yet switched away (still on its CPU) is
        simply set running again: the wake-up is not lost.
        """
        if task.state not in (TaskState.INTERRUPTIBLE, TaskState.UNINTERRUPTIBLE):
            return False
        if task.on_cpu:
            task.state = TaskState.RUNNING
            return True
        task.state = TaskState.RUNNABLE
        source = self.cpus[task.cpu] if task.cpu is not None else None
        cpu = self._select_cpu(task, new=False)
        task.cpu = cpu
        rq = self.cpus[cpu]
        if source is not None and source is not rq:
            self.policy.migrate(task, source, rq)
        self._update_curr(rq, self.sim.now)  # enqueue_entity: update_curr before place_entity
        self.policy.place(rq, task, wakeup=True, new=False)
        self._enqueue(cpu, task)
        if rq.current is not None and self.on_preempt is not None \
                and self.policy.should_preempt(rq, task, self.sim.now):
            self.on_preempt(cpu)
        return True

    def dequeue(self, task: Task) -> None:
        """Take a runnable task off its run queue (it was killed)."""
        for rq in self.cpus:
            if task in rq.queue:
                rq.queue.remove(task)
                return
        raise InvariantViolation(f"task {task.tid} is not on any run queue")

    def slice_end(self, cpu: int) -> int:
        """Time at which the current task's slice on ``cpu`` expires: the exact end pushed
        back by the steal since the slice began, then on the tick if there is one."""
        end = self._exact_end(self.cpus[cpu])
        if self.tick_ns:
            return tick_after(end, self.tick_ns, self.tick_strict)
        return end

    def slice_used(self, cpu: int, now: int) -> bool:
        """Whether a tick at ``now`` finds the current slice of ``cpu`` used up (a timer
        interrupt taken late, after the vCPU was out of the guest)."""
        end = self._exact_end(self.cpus[cpu])
        return now > end if self.tick_strict else now >= end

    def _exact_end(self, rq: RunQueue) -> int:
        if self.steal_clock is None:
            return rq.slice_end
        return rq.slice_end + self.steal_clock(rq.index) - rq.slice_steal

    def _new_slice(self, rq: RunQueue, start: int) -> None:
        """The current task's slice begins at ``start``; the steal reported before it is not
        charged to it (consumed by the clock updates of the switch)."""
        rq.slice_end = start + self.policy.slice(rq)
        if self.steal_clock is not None:
            rq.steal_seen = rq.slice_steal = self.steal_clock(rq.index)

    def current(self, cpu: int) -> Task | None:
        return self.cpus[cpu].current

    def _allowed(self, task: Task, cpu: int) -> bool:
        return self.cpus[cpu].online and (task.allowed_cpu is None or task.allowed_cpu == cpu)

    def _select_cpu(self, task: Task, new: bool) -> int:
        if task.allowed_cpu is not None:
            return task.allowed_cpu
        candidates = [rq for rq in self.cpus if rq.online]
        if not candidates:
            raise InvariantViolation(f"{self.name}: no online CPU for task {task.tid}")
        if not new and task.cpu is not None and self.cpus[task.cpu].online:
            prev = self.cpus[task.cpu]
            if prev.current is None and not prev.queue:
                return prev.index
            if self.idle_balance:
                for rq in candidates:
                    if rq.current is None and not rq.queue:
                        return rq.index
            return prev.index
        return min(candidates, key=lambda rq: (rq.load(), rq.index)).index

    def _enqueue(self, cpu: int, task: Task) -> None:
        rq = self.cpus[cpu]
        rq.queue.append(task)
        if rq.current is None:
            self._kick(rq)

    def update_curr(self, cpu: int) -> None:
        """Charge ``cpu``'s current task up to now (a tick that extends its slice)."""
        self._update_curr(self.cpus[cpu], self.sim.now)

    def _update_curr(self, rq: RunQueue, now: int) -> None:
        """``update_curr``: charge the current task's time since ``exec_start`` (runtime and
        the policy's vruntime); a start still in the future (a switch in progress) charges
        nothing.  With steal time the steal reported since the last charge comes off first,
        at most the time being charged, the rest kept for later (``update_rq_clock_task``,
        v6.6)."""
        cur = rq.current
        if cur is None or now <= rq.exec_start:
            return
        ran = now - rq.exec_start
        rq.exec_start = now
        if self.steal_clock is not None:
            steal = min(self.steal_clock(rq.index) - rq.steal_seen, ran)
            if steal > 0:
                rq.steal_seen += steal
                ran -= steal
                if ran == 0:  # update_curr: delta_exec <= 0 charges nothing
                    return
        cur.runtime_ns += ran
        self.policy.account(rq, cur, ran)

    def _kick(self, rq: RunQueue) -> None:
        if self.on_kick is not None and self.on_kick(rq.index):
            return
        if not rq.kick_pending:
            rq.kick_pending = True
            self.sim.at(self.sim.now, self._idle_dispatch, rq.index, priority=Priority.NORMAL)

    def _idle_dispatch(self, cpu: int) -> None:
        rq = self.cpus[cpu]
        rq.kick_pending = False
        if rq.current is None:
            self.schedule(cpu)

    # ------------------------------------------------------------------ schedule()

    def schedule(self, cpu: int, now: int | None = None, preempted: bool = True) -> None:
        """``__schedule`` on ``cpu``: put the current task back or let it go, pick the next.

        The current task's state says why: a sleeping or dead task leaves the CPU; a RUNNING
        task was preempted (slice end, yield: ``preempted=True``) and goes to the tail of the
        queue, or it tried to block and was woken before it got here (``preempted=False``) and
        is picked again at once.
        """
        now = self.sim.now if now is None else now
        rq = self.cpus[cpu]
        prev = rq.current
        if prev is not None:
            self._update_curr(rq, now)
            rq.exec_start = now
            if prev.state != TaskState.RUNNING:  # it sleeps or dies: dequeue_entity
                self.policy.dequeue(rq, prev, sleep=True)
            if prev.state == TaskState.RUNNING:
                prev.state = TaskState.RUNNABLE
                if preempted:
                    rq.queue.append(prev)
                else:
                    rq.queue.appendleft(prev)
        nxt = self.policy.pick(rq)
        if nxt is None and self.idle_balance and rq.online:
            nxt = self._pull(rq)
        if nxt is not None and nxt is prev:
            nxt.state = TaskState.RUNNING
            self._new_slice(rq, now)
            self._start(rq, nxt, now)
            return
        self._context_switch(rq, prev, nxt, now)

    def _pull(self, rq: RunQueue) -> Task | None:
        busiest = None
        for other in self.cpus:
            if other is rq or not other.queue:
                continue
            if busiest is None or len(other.queue) > len(busiest.queue):
                busiest = other
        if busiest is None:
            return None
        for i in range(len(busiest.queue) - 1, -1, -1):
            task = busiest.queue[i]
            if self._allowed(task, rq.index):
                self._update_curr(busiest, self.sim.now)
                self.policy.dequeue(busiest, task, sleep=False)
                del busiest.queue[i]
                task.cpu = rq.index
                self.policy.migrate(task, busiest, rq)
                self.policy.place(rq, task, wakeup=False, new=False)
                return task
        return None

    def _context_switch(self, rq: RunQueue, prev: Task | None, nxt: Task | None, now: int) -> None:
        rq.preempt_count += 1  # preempt_disable() in __schedule
        rq.irqs_disabled = True
        rq.locked = True
        if prev is not None:
            prev.on_cpu = False
            prev_runnable = prev.state == TaskState.RUNNABLE
            if prev.preempt_notifiers and self.notifier_key:
                ctx = SwitchContext(rq.index, now, rq.preempt_count, True, True, prev_runnable)
                self._fire_out(prev, nxt, ctx)
        else:
            if rq.idle_since is not None:
                rq.idle_ns += now - rq.idle_since
                rq.idle_since = None
        rq.context_switches += 1
        rq.current = nxt
        if self.recorder.on:
            self.recorder.add(now, K_HOST_SWITCH if self.name == "host" else K_GUEST_SWITCH,
                              rq.index, -1 if nxt is None else nxt.tid,
                              -1 if prev is None else prev.tid,
                              aux=0 if prev is None else int(prev.state))
        # finish_task_switch: rq lock released, interrupts on, preemption still off
        rq.locked = False
        rq.irqs_disabled = False
        if nxt is not None:
            self.policy.set_next(rq, nxt)
            nxt.state = TaskState.RUNNING
            nxt.on_cpu = True
            nxt.cpu = rq.index
            nxt.switches_in += 1
            if nxt.preempt_notifiers and self.notifier_key:
                ctx = SwitchContext(rq.index, now, rq.preempt_count, False, False)
                self._fire_in(nxt, rq.index, ctx)
        rq.preempt_count -= 1
        if prev is not None and prev.state == TaskState.DEAD:
            prev.put()  # the final switch away drops the "alive" reference
        if nxt is None:
            rq.idle_since = now
            if self.on_idle is not None:
                self.on_idle(rq.index)
            return
        start = now + self.switch_ns
        rq.exec_start = start
        self._new_slice(rq, start)
        self._start(rq, nxt, start)

    def _start(self, rq: RunQueue, task: Task, start: int) -> None:
        if self.executor is None:
            raise InvariantViolation(f"{self.name}: no executor attached")
        self.executor.start(rq.index, task, start)

    def _fire_out(self, prev: Task, nxt: Task | None, ctx: SwitchContext) -> None:
        if ctx.preempt_count <= 0:
            raise InvariantViolation("sched_out notifier fired with preemption enabled")
        self._firing = True
        try:
            for notifier in list(prev.preempt_notifiers):
                notifier.ops.sched_out(notifier, nxt, ctx)
        finally:
            self._firing = False

    def _fire_in(self, task: Task, cpu: int, ctx: SwitchContext) -> None:
        if ctx.preempt_count <= 0:
            raise InvariantViolation("sched_in notifier fired with preemption enabled")
        self._firing = True
        try:
            for notifier in list(task.preempt_notifiers):
                notifier.ops.sched_in(notifier, cpu, ctx)
        finally:
            self._firing = False

    # ------------------------------------------------------------------ accounting

    def idle_ns(self, cpu: int, now: int) -> int:
        """Idle time of ``cpu`` up to ``now``."""
        rq = self.cpus[cpu]
        extra = now - rq.idle_since if rq.idle_since is not None else 0
        return rq.idle_ns + extra
