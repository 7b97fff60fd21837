"""Process life-cycle steps: fork, exit, wait, munmap and exec.

:class:`ProcessOps` runs these steps for the executor: process creation, waiting and exit
bookkeeping are here; the page-table work of fork, munmap and exec is the kernel's VMM's
(:mod:`pfsim.guest.vmm`: Linux semantics in :mod:`pfsim.guest.flat_vmm`, ALMOS-MKH fork and COW in
the cluster VMM).

Each step runs at the current simulated time; the calling thread is charged its CPU cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pfsim.engine import Priority
from pfsim.guest.mm import AddressSpace
from pfsim.guest.process import Process
from pfsim.sched import Task, TaskState

if TYPE_CHECKING:
    from pfsim.guest.executor import TaskExec
    from pfsim.guest.kernel import GuestKernel


def clone_address_space(mm: AddressSpace) -> AddressSpace:
    """A new address space with copies of ``mm``'s VMAs and page-table arrays."""
    return mm.clone()


def _nothing() -> None:
    """Interrupt handler of a TLB-shootdown IPI: the target re-reads its page table."""


class ProcessOps:
    """Life-cycle steps of one guest kernel's processes.

    Args:
        kernel: the guest kernel.
    """

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.sim = kernel.sim
        self.wait_for: dict[Task, int] = {}
        """Threads blocked in a wait step -> children they wait for in all."""

    # ------------------------------------------------------------------ dispatch

    def run_step(self, cpu: int, texec: TaskExec, step: Any, t: int) -> int:
        """Run a life-cycle step of ``texec`` on ``cpu`` from ``t``: the time the thread goes
        on, or -1 when an event was armed instead (it blocks, or the step waits for ``t``)."""
        executor = self.kernel.executor
        if t > self.sim.now:  # do the step at its own time: others may act until then
            executor._arm(cpu, t, executor._rerun)
            return -1
        op = step.op
        if op == "fork":
            after = self.fork(cpu, texec, step, t)
        elif op == "exit":
            after = self.exit(texec, t)
        elif op == "wait":
            after = self.wait(cpu, texec, step, t)
        elif op == "munmap":
            after = self.munmap(cpu, texec, step.vseg, t)
        else:
            after = self.exec(cpu, texec, t)
        if self.kernel.config.sim.check_invariants:
            self.kernel.vmm.check_invariants()
        return after

    def _done(self, texec: TaskExec) -> None:
        texec.step = None

    def _resync_others(self, cpu: int, process: Process) -> None:
        """Other threads of ``process`` in the middle of an access segment re-read their page
        tables (a write protection or an unmapping must not be outrun by a segment computed
        before it): a TLB-shootdown-like interrupt, delivered once this event is over."""
        for other in range(len(self.kernel.executor.segment)):
            if other != cpu and self._running_accesses(other, process):
                self.sim.at(self.sim.now, self._shootdown, other, process, priority=Priority.URGENT)

    def _running_accesses(self, cpu: int, process: Process) -> bool:
        seg = self.kernel.executor.segment[cpu]
        return seg is not None and seg.kind == "access" and seg.texec.process is process

    def _shootdown(self, cpu: int, process: Process) -> None:
        if not self._running_accesses(cpu, process):
            return
        busy = self.kernel.vmm.fault_in_progress(cpu, self.sim.now)
        if busy:  # the IPI is taken when the fault handler returns
            self.sim.at(busy, self._shootdown, cpu, process, priority=Priority.URGENT)
            return
        self.kernel.executor.interrupt(cpu, _nothing)

    # ------------------------------------------------------------------ fork

    def fork(self, cpu: int, texec: TaskExec, step: Any, t: int) -> int:
        """fork(): a child process with a copy-on-write copy of the address space."""
        kernel = self.kernel
        parent = texec.process
        name = step.name or f"{parent.name}.{len(parent.children)}"
        taken = {p.name for p in kernel.processes}
        if name in taken:
            suffix = 2
            while f"{name}#{suffix}" in taken:
                suffix += 1
            name = f"{name}#{suffix}"
        pid = kernel._next_pid
        kernel._next_pid += 1
        child = Process(pid=pid, name=name, mm=clone_address_space(parent.mm), started_ns=t,
                        parent=parent)
        parent.children.append(child)
        task = Task(pid * 1000, f"{name}/0", owner=child, allowed_cpu=step.cpu)
        stack = None
        if texec.stack is not None:
            stack = next(v for v in child.mm.vmas if v.name == texec.stack.name)
        from pfsim.guest.executor import TaskExec

        task.data = TaskExec(kernel, task, child, step.steps, stack, 0, (0, 1))
        child.threads.append(task)
        cost = kernel.vmm.fork(cpu, texec, child, step, t)
        if cost < 0:  # no memory for the child's page tables: fork() fails
            parent.children.remove(child)
            self._done(texec)
            return t + kernel.config.guest.costs.fork
        kernel.processes.append(child)
        self._done(texec)
        self._resync_others(cpu, parent)
        self.sim.at(t + cost, kernel.scheduler.add_task, task)
        return t + cost

    # ------------------------------------------------------------------ exit and wait

    def exit(self, texec: TaskExec, t: int) -> int:
        """exit(): kill the process's other threads; this one ends after the call."""
        for task in texec.process.threads:
            if task is not texec.task and task.state != TaskState.DEAD:
                self.kernel.executor.kill_task(task)
        texec.step = None
        texec.step_index = len(texec.steps)
        return t + self.kernel.config.guest.syscall

    def wait(self, cpu: int, texec: TaskExec, step: Any, t: int) -> int:
        """wait(): reap ``count`` exited children (default: all not reaped yet when the call
        starts), blocking until they have exited.  Children reaped meanwhile by a sibling
        thread lower the count (with none left to wait for, wait() returns: ECHILD)."""
        process = texec.process
        task = texec.task
        unreaped = len(process.children) - process.reaped
        want = self.wait_for.get(task)
        if want is None:
            want = step.count if step.count is not None else unreaped
        want = min(want, unreaped)
        exited = sum(1 for child in process.children if not child.alive)
        if exited - process.reaped >= want:
            self.wait_for.pop(task, None)
            process.reaped += want
            if want:
                self._wake_waiters(process)  # siblings re-count what is left
            self._done(texec)
            return t + self.kernel.config.guest.syscall
        self.wait_for[task] = want
        task.state = TaskState.INTERRUPTIBLE
        executor = self.kernel.executor
        executor._arm(cpu, t, executor._block)
        return -1

    def process_exited(self, process: Process) -> None:
        """A process is gone: its parent's waiting threads re-check their wait."""
        if process.parent is not None:
            self._wake_waiters(process.parent)

    def _wake_waiters(self, process: Process) -> None:
        for task in process.threads:
            if task in self.wait_for and task.is_sleeping:
                self.kernel.scheduler.wake_up(task)

    def thread_exit(self, texec: TaskExec) -> None:
        """A thread reached the end of its steps."""
        self.wait_for.pop(texec.task, None)
        self.kernel.vmm.thread_exit(texec)

    # ------------------------------------------------------------------ munmap and exec

    def munmap(self, cpu: int, texec: TaskExec, name: str, t: int) -> int:
        """munmap() of a whole vseg (every copy with clusters)."""
        cost = self.kernel.config.guest.syscall + self.kernel.vmm.munmap(cpu, texec, name)
        self._done(texec)
        self._resync_others(cpu, texec.process)
        return t + cost

    def exec(self, cpu: int, texec: TaskExec, t: int) -> int:
        """exec(): other threads die; only code, data and this thread's stack stay, empty."""
        kernel = self.kernel
        process = texec.process
        for task in process.threads:
            if task is not texec.task and task.state != TaskState.DEAD:
                kernel.executor.kill_task(task)
        cost = kernel.config.guest.syscall + kernel.config.guest.costs.fork
        cost += kernel.vmm.exec(cpu, texec)
        self._done(texec)
        return t + cost
