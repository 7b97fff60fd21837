"""s390 pfault, guest side: the global wait list and the per-task tri-state ``pfault_wait``.

Protocol (src: arch/s390/mm/pfault.c ``pfault_interrupt``, ``pfault_cpu_dead``,
``__pfault_init``, ``pfault_fini``; Linux v6.7 and later, arch/s390/mm/fault.c before)::

    ext interrupt 0x2603 with (subcode & 0xff00) == 0x0600; token low word = pid of the task
    INIT (0x0600), on the CPU running T:  0 -> 1   +1 ref, on list, T D-state, need_resched
                                          1 -> 1   T D-state, need_resched (no 2nd entry/ref)
                                         -1 -> 0   nothing: the page is already back
                                         T is not current: WARN once, nothing
    DONE (0x0680), on any CPU:            1 -> 0   off list, wake T, -1 ref
                                       0/-1 -> -1  if T is running (DONE beat INIT)
                                       0/-1        ignored if T is not running (CANCEL leftover)
    CPU dead: every task on the list -> 0, off list, woken, -1 ref

All of it happens under ``pfault_lock``; the pid lookup takes a task reference that is dropped
before the handler returns.  The handler never calls schedule(): after an INIT that blocks, the
caller runs the return-to-user path, which calls schedule() because need_resched is set; a DONE
that lands before that schedule() has already made T running again, so the real scheduler
picks T again (no lost wake-up).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Protocol

from pfsim.errors import InvariantViolation
from pfsim.machine.apf_s390_abi import (
    DIAG258_ZARCH,
    EXT_IRQ_CP_SERVICE,
    PF_COMPLETE,
    PSW_MASK_PSTATE,
    PfaultRefbk,
)
from pfsim.machine.checked import checked
from pfsim.sched import Task, TaskState

SUBCODE_MASK = 0x0600  # __SUBCODE_MASK (64-bit)
LPP_MAGIC = 1 << 31
LPP_PID_MASK = 0xFFFFFFFF
LPP_ADDRESS = 0x0340
"""Model value for ``__LC_LPP`` (the lowcore doubleword the token is read from); the host only
checks that it is 8-aligned."""


def lpp_value(pid: int) -> int:
    """The token doubleword the host reads while ``pid`` runs: PID in the low word.

    The guest relies only on "low 32 bits = pid" (``pfault_interrupt`` takes
    ``param64 & LPP_PID_MASK``); the exact lowcore layout (arch/s390/kernel/smp.c
    ``pcpu_attach_task``) was not checked, so the magic is kept in the high word, where the
    guest's ``param64 & 0xffffffff`` does not see it.
    """
    return (LPP_MAGIC << 32) | (pid & LPP_PID_MASK)


def pfault_init_refbk(token_address: int = LPP_ADDRESS) -> PfaultRefbk:
    """``__pfault_init``'s DIAG 0x258 TOKEN block: only problem-state faults are offered."""
    return PfaultRefbk(fcode=0, gaddr=token_address, selmk=PSW_MASK_PSTATE,
                       cmpmk=PSW_MASK_PSTATE, reserved=DIAG258_ZARCH)


def pfault_fini_refbk() -> PfaultRefbk:
    """``pfault_fini``'s DIAG 0x258 CANCEL block."""
    return PfaultRefbk(fcode=1)


class GuestCpuOps(Protocol):
    """What the pfault handler needs from the guest kernel around it."""

    def current(self, cpu: int) -> Task | None:
        """The task running on ``cpu`` (``current`` inside the interrupt)."""

    def set_need_resched(self, cpu: int) -> None:
        """``set_tsk_need_resched`` + ``set_preempt_need_resched`` on ``cpu``'s current task."""

    def wake_up(self, task: Task) -> bool:
        """``wake_up_process`` (pass :meth:`pfsim.sched.Scheduler.wake_up`)."""


class PfaultOutcome(Enum):
    """What ``pfault_interrupt`` did; each value says what the caller must do next."""

    NOT_PFAULT = "not_pfault"
    """Not a pfault interrupt (other code or subcode): leave it to the other handlers."""
    DROPPED_UNKNOWN_PID = "dropped_unknown_pid"
    """No task has that pid (exited): nothing happened."""
    WARN_NOT_CURRENT = "warn_not_current"
    """INIT for a task that is not current on this CPU: warned (once), nothing else."""
    BLOCK = "block"
    """INIT put current (now UNINTERRUPTIBLE, need_resched set) on the wait list: the caller
    finishes the interrupt and runs the return-to-user path, i.e.
    ``Scheduler.schedule(cpu, preempted=False)``."""
    REBLOCK = "reblock"
    """INIT for a task already on the list: same as BLOCK (no new entry, no new reference)."""
    EARLY_CONSUMED = "early_consumed"
    """INIT after an early DONE: nothing to wait for; return to user, the task re-executes the
    faulting instruction."""
    WOKEN = "woken"
    """DONE took the task off the list and woke it (already done through ``wake_up``)."""
    EARLY_RECORDED = "early_recorded"
    """DONE for a running task not on the list: ``pfault_wait = -1``; nothing else."""
    LEFTOVER_IGNORED = "leftover_ignored"
    """DONE for a task that is not running and not on the list (CANCEL leftover): ignored."""

    @property
    def must_schedule(self) -> bool:
        """The caller must call schedule() on the interrupted CPU before returning to user."""
        return self in (PfaultOutcome.BLOCK, PfaultOutcome.REBLOCK)


_RUNNING = (TaskState.RUNNING, TaskState.RUNNABLE)  # task_is_running: TASK_RUNNING


class PfaultGuest:
    """The guest's pfault state: ``pfault_list`` and ``thread.pfault_wait`` of every task.

    Args:
        ops: the guest kernel's CPU operations (current task, need_resched, wake-up).
        find_task: ``find_task_by_pid_ns(pid, &init_pid_ns)``: the task or None.
        debug: check every invariant after every public call.
    """

    def __init__(self, ops: GuestCpuOps, find_task: Callable[[int], Task | None],
                 debug: bool = False) -> None:
        self.ops = ops
        self.find_task = find_task
        self.debug = debug
        self._list: list[Task] = []  # pfault_list, head first (list_add inserts at the head)
        self._wait: dict[int, int] = {}  # tid -> pfault_wait, absent = 0
        self._list_refs: dict[int, int] = {}  # tid -> references held by the list
        self._lookup_refs = 0  # references held by a running handler
        self._locked = False  # pfault_lock
        self._warned = False  # WARN_ON_ONCE state
        self.irqext_pfl = 0
        self.init_count = 0
        self.done_count = 0
        self.early_completions = 0
        self.early_consumed = 0
        self.ignored_done = 0
        self.dropped_unknown_pid = 0
        self.not_current = 0
        self.blocks = 0
        self.wakeups = 0
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ queries

    def pfault_wait(self, tid: int) -> int:
        """``thread.pfault_wait`` of task ``tid``: 0, 1 or -1."""
        return self._wait.get(tid, 0)

    @property
    def pfault_list(self) -> tuple[Task, ...]:
        """The waiting tasks, head first."""
        return tuple(self._list)

    def list_refs(self, tid: int) -> int:
        """Task references held by the wait list for ``tid`` (0 or 1)."""
        return self._list_refs.get(tid, 0)

    # ------------------------------------------------------------------ the handler

    @checked
    def pfault_interrupt(self, cpu: int, ext_code: int, subcode: int,
                         param64: int) -> PfaultOutcome:
        """``pfault_interrupt`` on ``cpu`` (registered for external interrupt code 0x2603).

        Args:
            cpu: the CPU taking the interrupt.
            ext_code: external interrupt code.
            subcode: the cpu-address field (0x0600 INIT, 0x0680 DONE).
            param64: ext_params2, the token (pid in the low word).

        Returns:
            what happened; see :class:`PfaultOutcome` for the caller's next step.
        """
        if ext_code != EXT_IRQ_CP_SERVICE or (subcode & 0xFF00) != SUBCODE_MASK:
            return PfaultOutcome.NOT_PFAULT
        self.irqext_pfl += 1
        task = self.find_task(param64 & LPP_PID_MASK)
        if task is None:
            self.dropped_unknown_pid += 1
            return PfaultOutcome.DROPPED_UNKNOWN_PID
        task.get()  # lookup reference
        self._lookup_refs += 1
        self._lock()
        try:
            if subcode & PF_COMPLETE:
                self.done_count += 1
                outcome = self._completion(task)
            else:
                self.init_count += 1
                outcome = self._initial(cpu, task)
        finally:
            self._unlock()
            self._lookup_refs -= 1
            task.put()
        return outcome

    def _completion(self, task: Task) -> PfaultOutcome:
        tid = task.tid
        if self._wait.get(tid, 0) == 1:
            # the initial interrupt was first: the task sleeps (or is about to) on the list
            self._wait[tid] = 0
            self._list.remove(task)
            self.ops.wake_up(task)
            self._drop_list_ref(task)
            self.wakeups += 1
            return PfaultOutcome.WOKEN
        if task.state in _RUNNING:
            self._wait[tid] = -1  # the completion beat the initial interrupt
            self.early_completions += 1
            return PfaultOutcome.EARLY_RECORDED
        self.ignored_done += 1  # leftover of a PFAULT CANCEL
        return PfaultOutcome.LEFTOVER_IGNORED

    def _initial(self, cpu: int, task: Task) -> PfaultOutcome:
        if task is not self.ops.current(cpu):
            self.not_current += 1
            if not self._warned:
                self._warned = True
                self.warnings.append(f"WARN_ON_ONCE(tsk != current): token of task {task.tid}"
                                     f" delivered on CPU {cpu}")
            return PfaultOutcome.WARN_NOT_CURRENT
        tid = task.tid
        wait = self._wait.get(tid, 0)
        if wait == -1:
            self._wait[tid] = 0
            self.early_consumed += 1
            return PfaultOutcome.EARLY_CONSUMED
        outcome = PfaultOutcome.REBLOCK
        if wait == 0:
            # an extra reference: another CPU may make the task running before schedule()
            task.get()
            self._list_refs[tid] = self._list_refs.get(tid, 0) + 1
            self._wait[tid] = 1
            self._list.insert(0, task)
            outcome = PfaultOutcome.BLOCK
        # "rely on the return to userspace schedule() to block"
        task.state = TaskState.UNINTERRUPTIBLE
        self.ops.set_need_resched(cpu)
        self.blocks += 1
        return outcome

    # ------------------------------------------------------------------ hotplug, exit

    @checked
    def cpu_dead(self, cpu: int) -> list[Task]:
        """``pfault_cpu_dead``: wake *every* waiting task, whatever CPU it faulted on.

        Returns:
            the woken tasks in list order; they re-execute their faulting instruction (a fresh
            host fault if the page is still out), and a later DONE finds them running (EARLY).
        """
        self._lock()
        try:
            woken = list(self._list)
            for task in woken:
                self._wait[task.tid] = 0
                self._list.remove(task)
                self.ops.wake_up(task)
                self._drop_list_ref(task)
                self.wakeups += 1
        finally:
            self._unlock()
        return woken

    @checked
    def release_task(self, task: Task) -> None:
        """Forget a task's ``pfault_wait`` when its ``task_struct`` goes away."""
        if self._wait.get(task.tid, 0) == 1:
            raise InvariantViolation(f"task {task.tid} released while on pfault_list")
        self._wait.pop(task.tid, None)

    def _drop_list_ref(self, task: Task) -> None:
        self._list_refs[task.tid] -= 1
        if not self._list_refs[task.tid]:
            del self._list_refs[task.tid]
        task.put()

    def _lock(self) -> None:
        if self._locked:
            raise InvariantViolation("INV-S3: pfault_lock taken recursively")
        self._locked = True

    def _unlock(self) -> None:
        self._locked = False

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """INV-S1..S5 (docs/hypervisor.md, "Protocol invariants"); raises InvariantViolation.

        S4 (no lost wake-up) is a property of event sequences: here it shows as "a task on the
        list that sleeps sleeps in D-state and holds its reference"; the tests add "after a
        DONE for every INIT, the list is empty".
        """
        if self._locked:
            raise InvariantViolation("INV-S3: pfault_lock held outside the handler")
        if self._lookup_refs:
            raise InvariantViolation(f"INV-S1: {self._lookup_refs} lookup references not dropped")
        tids = [t.tid for t in self._list]
        if len(tids) != len(set(tids)):
            raise InvariantViolation(f"INV-S2: a task is on pfault_list twice: {tids}")
        for tid, wait in self._wait.items():
            if wait not in (-1, 0, 1):
                raise InvariantViolation(f"task {tid}: pfault_wait = {wait}")
            if (wait == 1) != (tid in tids):
                raise InvariantViolation(
                    f"INV-S2: task {tid} pfault_wait={wait}, on list={tid in tids}")
        for task in self._list:
            where = f"task {task.tid} on pfault_list"
            if self._wait.get(task.tid) != 1:
                raise InvariantViolation(f"INV-S2: {where} with pfault_wait != 1")
            if self._list_refs.get(task.tid) != 1:
                raise InvariantViolation(f"INV-S1: {where} without exactly one list reference")
            if task.freed or task.usage < 2:
                raise InvariantViolation(f"INV-S1: {where} has usage {task.usage}")
            if task.state == TaskState.INTERRUPTIBLE:
                raise InvariantViolation(f"INV-S5: {where} sleeps interruptibly")
        stray = set(self._list_refs) - set(tids)
        if stray:
            raise InvariantViolation(f"INV-S1: list references held for tasks off it: {stray}")
