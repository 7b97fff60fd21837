"""Process life-cycle steps: fork, exit, wait, munmap and exec.

:class:`ProcessOps` runs these steps for the executor.  The flat kernel's versions are here
(Linux semantics: fork copies every present PTE and write-protects private writable pages in
parent and child, each copied frame gains a reference, so a later write copies while the
page is shared and reuses it once exclusive, linux-semantics.md §5.4 and scenario 21).  With
clusters the page-table work is done by :mod:`pfsim.cluster.lifecycle` instead (ALMOS-MKH
§5-§6); process creation, waiting and exit bookkeeping are shared.

Each step runs at the current simulated time; the calling thread is charged its CPU cost.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.engine import Priority
from pfsim.guest.memory import ZERO_GFN
from pfsim.guest.mm import PTE_NOVMA, PTE_PRESENT, PTE_WRITE, AddressSpace, Vma
from pfsim.guest.process import Process
from pfsim.sched import Task, TaskState

if TYPE_CHECKING:
    from pfsim.guest.executor import TaskExec
    from pfsim.guest.kernel import GuestKernel


def clone_address_space(mm: AddressSpace) -> AddressSpace:
    """A new address space with copies of ``mm``'s VMAs and page-table arrays."""
    child = AddressSpace()
    child.vmas = [copy.copy(vma) for vma in mm.vmas]
    child.state = mm.state.copy()
    child.gfn = mm.gfn.copy()
    child.vflags = mm.vflags.copy()
    child.rss = mm.rss
    child._starts = mm._starts.copy()
    child._ends = mm._ends.copy()
    child._bases = mm._bases.copy()
    return child


def _slots(vma: Vma) -> slice:
    return slice(vma.slot_base, vma.slot_base + vma.nslots)


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
            from pfsim.cluster.invariants import check_all

            check_all(self.kernel)
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
        cluster = self.kernel.cluster
        busy = cluster.fault_in_progress(cpu, self.sim.now) if cluster is not None else 0
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
        if kernel.cluster is not None:
            from pfsim.cluster.lifecycle import almos_fork

            cost = almos_fork(kernel.cluster, cpu, texec, child, step.cluster, t)
            if cost < 0:  # no memory for the child's page tables: fork() fails
                parent.children.remove(child)
                kernel.cluster.fork_failures += 1
                self._done(texec)
                return t + kernel.config.guest.costs.fork
        else:
            cost = self._flat_fork(texec, child)
        kernel.processes.append(child)
        self._done(texec)
        self._resync_others(cpu, parent)
        self.sim.at(t + cost, kernel.scheduler.add_task, task)
        return t + cost

    def _flat_fork(self, texec: TaskExec, child: Process) -> int:
        """copy_page_range: share every present page; write-protect private writable ones."""
        kernel = self.kernel
        parent_mm, mm = texec.process.mm, child.mm
        present = (mm.state & PTE_PRESENT) != 0
        protected = 0
        for vma in mm.vmas:
            if vma.shared:
                continue
            sl = _slots(vma)
            writable = present[sl] & ((mm.state[sl] & PTE_WRITE) != 0)
            protected += int(np.count_nonzero(writable))
            mm.state[sl][writable] &= ~np.uint8(PTE_WRITE)
            parent_mm.state[sl][writable] &= ~np.uint8(PTE_WRITE)
        frames = mm.gfn[present]
        frames = frames[frames != ZERO_GFN]
        np.add.at(kernel.mem.refcount, frames, 1)
        mm.rss = int(frames.size)
        costs = kernel.config.guest.costs
        cost = costs.fork + costs.fork_page * int(np.count_nonzero(present))
        if protected:
            cost += kernel.shootdown_cost(texec)
        return cost

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
        if self.kernel.cluster is not None:
            self.kernel.cluster.thread_exit(texec)

    # ------------------------------------------------------------------ munmap and exec

    def munmap(self, cpu: int, texec: TaskExec, name: str, t: int) -> int:
        """munmap() of a whole vseg (every copy with clusters)."""
        kernel = self.kernel
        cost = kernel.config.guest.syscall
        if kernel.cluster is not None:
            from pfsim.cluster.lifecycle import almos_munmap

            cost += almos_munmap(kernel.cluster, cpu, texec, name)
        else:
            vma = next(v for v in texec.process.mm.vmas if v.name == name)
            self._unmap(texec.process.mm, vma, keep=False)
            cost += kernel.shootdown_cost(texec)
        self._done(texec)
        self._resync_others(cpu, texec.process)
        return t + cost

    def _unmap(self, mm: AddressSpace, vma: Vma, keep: bool) -> None:
        """Drop every page of ``vma``; without ``keep`` the VMA itself goes (nothing valid
        remains: later accesses are SEGV_MAPERR)."""
        sl = _slots(vma)
        frames = mm.gfn[sl]
        for gfn in frames[frames >= 0].tolist():
            if gfn != ZERO_GFN:
                self.kernel.mem.put(gfn)
                mm.rss -= 1
        mm.gfn[sl] = -1
        if keep:
            mm.state[sl] = np.where(mm.state[sl] & PTE_NOVMA, PTE_NOVMA, 0)
        else:
            vma.start = vma.end
            mm.state[sl] = PTE_NOVMA

    def exec(self, cpu: int, texec: TaskExec, t: int) -> int:
        """exec(): other threads die; only code, data and this thread's stack stay, empty."""
        kernel = self.kernel
        process = texec.process
        for task in process.threads:
            if task is not texec.task and task.state != TaskState.DEAD:
                kernel.executor.kill_task(task)
        cost = kernel.config.guest.syscall + kernel.config.guest.costs.fork
        if kernel.cluster is not None:
            from pfsim.cluster.lifecycle import almos_exec

            cost += almos_exec(kernel.cluster, cpu, texec)
        else:
            for vma in process.mm.vmas:
                keep = vma.type in ("code", "data") or vma is texec.stack
                self._unmap(process.mm, vma, keep)
        self._done(texec)
        return t + cost
