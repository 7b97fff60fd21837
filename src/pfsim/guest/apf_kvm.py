"""x86 KVM async page fault, guest side: the token sleep table, not-present and page-ready.

Protocol (Linux v5.10 and later; src: arch/x86/kernel/kvm.c ``__kvm_handle_async_pf``,
``kvm_async_pf_task_wait_schedule``, ``kvm_async_pf_queue_task``, ``kvm_async_pf_task_wake``,
``apf_task_wake_one``, ``apf_task_wake_all``, ``sysvec_kvm_asyncpf_interrupt``,
``kvm_guest_cpu_init``, ``kvm_guest_cpu_offline``)::

    table: 256 buckets, bucket = hash_32(token, 8); a node is real (a sleeping task) or a dummy
    #PF with flags = PAGE_NOT_PRESENT (user mode, IF=1; else the guest panics), cr2 = token:
        token found (a dummy: the wake came first) -> free it, the task does not sleep
        else queue a real node {token, cpu}, task D-state, schedule() until the node is unlinked
    page-ready interrupt (vector 0xf3) on cpu: wake(token), zero the token slot, write ACK
        wake(~0): every node with node.cpu == cpu is unlinked (real: woken; dummy: not freed)
        wake(t):  node found -> unlink, wake its task
                  not found -> allocate a dummy (lock dropped; on failure spin and retry),
                               re-search, then insert it {t, cpu} or wake the waiter that
                               appeared meanwhile and free the unused dummy
    CPU offline: MSR_KVM_ASYNC_PF_EN = 0, then wake(~0) on that CPU

The caller (guest executor) schedules: after a not-present that returns
:attr:`NotPresentOutcome.SLEEP` it calls ``Scheduler.schedule(cpu, preempted=False)``, and each
time the task runs again it calls :meth:`KvmApfGuest.wait_resume` until that returns True.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from pfsim.errors import InvariantViolation
from pfsim.machine.apf_kvm_abi import (
    BROADCAST_TOKEN,
    HYPERVISOR_CALLBACK_VECTOR,
    KVM_ASYNC_PF_DELIVERY_AS_INT,
    KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT,
    KVM_ASYNC_PF_ENABLED,
    KVM_PV_REASON_PAGE_NOT_PRESENT,
    U32,
    PvApfData,
    hash_32,
)
from pfsim.machine.checked import checked
from pfsim.sched import Task, TaskState

KVM_TASK_SLEEP_HASHBITS = 8
KVM_TASK_SLEEP_HASHSIZE = 1 << KVM_TASK_SLEEP_HASHBITS


class SleepNode:
    """``struct kvm_task_sleep_node``: a real node (``task`` set) or a dummy (``task`` None)."""

    __slots__ = ("token", "cpu", "task", "linked")

    def __init__(self, token: int, cpu: int, task: Task | None) -> None:
        self.token = token
        self.cpu = cpu
        self.task = task
        self.linked = False

    @property
    def is_dummy(self) -> bool:
        return self.task is None

    def __repr__(self) -> str:
        who = "dummy" if self.task is None else f"task {self.task.tid}"
        return f"SleepNode({self.token:#x}, cpu{self.cpu}, {who})"


class NotPresentOutcome(Enum):
    """Result of the #PF entry; each value says what the caller must do next."""

    NOT_ASYNC = "not_async"
    """Flags were 0: an ordinary #PF; run the normal fault handler on cr2."""
    SLEEP = "sleep"
    """The task is queued and UNINTERRUPTIBLE: call ``Scheduler.schedule(cpu, preempted=False)``
    and, whenever the task runs again, :meth:`KvmApfGuest.wait_resume`."""
    NO_SLEEP = "no_sleep"
    """The wake came first (dummy consumed): return to user; the access is retried."""
    PANIC_IRQS_DISABLED = "panic_irqs_disabled"
    """"Host injected async #PF in interrupt disabled region": the VM kernel panics."""
    PANIC_KERNEL_MODE = "panic_kernel_mode"
    """"Host injected async #PF in kernel mode": the VM kernel panics."""
    UNEXPECTED_FLAGS = "unexpected_flags"
    """WARN_ONCE, the #PF is consumed: return and retry the instruction."""


class WakeKind(Enum):
    """What ``kvm_async_pf_task_wake`` did."""

    WOKEN = "woken"
    """The token's node was unlinked; its task (if a real node) was woken."""
    DUMMY_INSERTED = "dummy_inserted"
    """No waiter yet: a dummy node now records the early wake."""
    RETRY = "retry"
    """The dummy allocation failed: the handler is still spinning (``cpu_relax``) on this CPU;
    the caller must call again (the same token) after letting other CPUs progress."""
    BROADCAST = "broadcast"
    """Token ~0: every node of this CPU was unlinked."""


@dataclass(frozen=True)
class WakeOutcome:
    """Result of :meth:`KvmApfGuest.page_ready`."""

    kind: WakeKind
    woken: list[Task] = field(default_factory=list)


@dataclass(frozen=True)
class ReadyInterrupt:
    """Result of :meth:`KvmApfGuest.page_ready_interrupt`.

    ``ack``: the slot was zeroed; the caller must write MSR_KVM_ASYNC_PF_ACK = 1
    (``KvmApfHost.msr_write_ack(cpu, 1)``) and handle the completions that returns.
    ``wake`` None: async PF is disabled on this CPU, the interrupt was ignored (no ACK).
    ``wake.kind`` RETRY: the handler has not finished: call again later, no ACK yet.
    """

    ack: bool
    wake: WakeOutcome | None


@dataclass(frozen=True)
class OfflineResult:
    """Result of :meth:`KvmApfGuest.cpu_offline`.

    ``msr_disable``: the caller must write MSR_KVM_ASYNC_PF_EN = 0 on that vCPU
    (``KvmApfHost.msr_write_en(cpu, 0, None)``; in Linux that write precedes the wake-ups).
    """

    msr_disable: bool
    woken: list[Task]


class KvmApfGuest:
    """The guest's async-PF state: per-CPU shared areas and the sleep table.

    Args:
        ncpus: number of guest CPUs.
        wake_up: ``wake_up_process`` (pass :meth:`pfsim.sched.Scheduler.wake_up`).
        alloc_dummy: ``kzalloc(GFP_ATOMIC)`` of a dummy node for ``token``; called with the
            bucket lock dropped, so it may run other guest events (another CPU's not-present);
            returning False is an allocation failure.
        debug: check every invariant after every public call.
    """

    def __init__(self, ncpus: int, wake_up: Callable[[Task], bool],
                 alloc_dummy: Callable[[int], bool] | None = None, debug: bool = False) -> None:
        self.wake_up = wake_up
        self.alloc_dummy = alloc_dummy
        self.debug = debug
        self.areas = [PvApfData() for _ in range(ncpus)]
        self.buckets: list[list[SleepNode]] = [[] for _ in range(KVM_TASK_SLEEP_HASHSIZE)]
        self._waiters: dict[int, SleepNode] = {}  # tid -> its node, while in the wait loop
        self.not_present_count = 0
        self.sleeps = 0
        self.page_ready_count = 0
        self.broadcasts = 0
        self.irq_hv_callback_count = 0
        self.dummies_allocated = 0
        self.dummies_freed = 0
        self.dummies_leaked = 0
        self.dummy_alloc_failures = 0
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ queries

    @staticmethod
    def bucket_of(token: int) -> int:
        return hash_32(token & U32, KVM_TASK_SLEEP_HASHBITS)

    def nodes(self) -> list[SleepNode]:
        """Every linked node, bucket by bucket, head first."""
        return [n for bucket in self.buckets for n in bucket]

    def find(self, token: int) -> SleepNode | None:
        """``_find_apf_task``."""
        for node in self.buckets[self.bucket_of(token)]:
            if node.token == token:
                return node
        return None

    def is_waiting(self, task: Task) -> bool:
        return task.tid in self._waiters

    # ------------------------------------------------------------------ enable / disable

    @checked
    def cpu_init(self, cpu: int, host_has_vmexit: bool = True) -> tuple[int, int]:
        """``kvm_guest_cpu_init``: enable async PF on ``cpu``.

        Returns:
            (MSR_KVM_ASYNC_PF_INT value, MSR_KVM_ASYNC_PF_EN value): the caller writes them in
            that order (``KvmApfHost.msr_write_int`` then ``msr_write_en`` with
            ``self.areas[cpu]``).
        """
        en = KVM_ASYNC_PF_ENABLED | KVM_ASYNC_PF_DELIVERY_AS_INT
        if host_has_vmexit:
            en |= KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT
        self.areas[cpu].enabled = 1
        return HYPERVISOR_CALLBACK_VECTOR, en

    @checked
    def cpu_offline(self, cpu: int, shutdown: bool = False) -> OfflineResult:
        """``kvm_guest_cpu_offline``: disable async PF on ``cpu``; unless shutting down, wake
        every sleeper queued on ``cpu`` (their tokens will never complete)."""
        area = self.areas[cpu]
        msr = bool(area.enabled)
        area.enabled = 0
        woken = [] if shutdown else self._wake_all(cpu)
        return OfflineResult(msr, woken)

    # ------------------------------------------------------------------ not present

    @checked
    def handle_async_pf(self, cpu: int, task: Task, cr2: int, user_mode: bool,
                        irqs_enabled: bool) -> NotPresentOutcome:
        """``exc_page_fault`` -> ``__kvm_handle_async_pf`` on ``cpu`` interrupting ``task``.

        Reads and zeroes this CPU's ``flags``; cr2 holds the token.
        """
        area = self.areas[cpu]
        flags = area.flags if area.enabled else 0
        if area.enabled:
            area.flags = 0
        if not flags:
            return NotPresentOutcome.NOT_ASYNC
        if flags & KVM_PV_REASON_PAGE_NOT_PRESENT:
            return self._not_present(cpu, task, cr2 & U32, user_mode, irqs_enabled)
        if not irqs_enabled:
            return NotPresentOutcome.PANIC_IRQS_DISABLED
        self.warnings.append(f"Unexpected async PF flags: {flags:#x}")
        return NotPresentOutcome.UNEXPECTED_FLAGS

    @checked
    def not_present(self, cpu: int, task: Task, token: int, user_mode: bool,
                    irqs_enabled: bool) -> NotPresentOutcome:
        """The PAGE_NOT_PRESENT branch: panics, then ``kvm_async_pf_task_wait_schedule``."""
        return self._not_present(cpu, task, token, user_mode, irqs_enabled)

    def _not_present(self, cpu: int, task: Task, token: int, user_mode: bool,
                     irqs_enabled: bool) -> NotPresentOutcome:
        if not irqs_enabled:
            return NotPresentOutcome.PANIC_IRQS_DISABLED
        if not user_mode:
            return NotPresentOutcome.PANIC_KERNEL_MODE
        if task.tid in self._waiters:
            raise InvariantViolation(f"task {task.tid} takes an async #PF while already waiting")
        self.not_present_count += 1
        bucket = self.buckets[self.bucket_of(token)]
        node = self.find(token)
        if node is not None:
            if not node.is_dummy:
                raise InvariantViolation(f"token {token:#x} already has a sleeper: {node!r}")
            self._unlink(bucket, node)  # the wake was delivered ahead of the #PF
            self.dummies_freed += 1
            return NotPresentOutcome.NO_SLEEP
        node = SleepNode(token, cpu, task)
        bucket.insert(0, node)  # hlist_add_head
        node.linked = True
        self._waiters[task.tid] = node
        task.state = TaskState.UNINTERRUPTIBLE  # prepare_to_swait_exclusive
        self.sleeps += 1
        return NotPresentOutcome.SLEEP

    @checked
    def wait_resume(self, task: Task) -> bool:
        """One more turn of the wait loop, run when the waiting ``task`` is running again.

        Returns:
            True: the node was unlinked, the wait is over; the task returns to user and retries
            the access.  False: still queued (a spurious wake-up): the task is UNINTERRUPTIBLE
            again and the caller must call ``schedule()`` again.
        """
        node = self._waiters.get(task.tid)
        if node is None:
            raise InvariantViolation(f"wait_resume: task {task.tid} is not waiting")
        if task.state != TaskState.RUNNING:
            raise InvariantViolation(f"wait_resume: task {task.tid} is {task.state.name}")
        if node.linked:
            task.state = TaskState.UNINTERRUPTIBLE
            return False
        del self._waiters[task.tid]  # finish_swait
        return True

    # ------------------------------------------------------------------ page ready

    @checked
    def page_ready_interrupt(self, cpu: int) -> ReadyInterrupt:
        """``sysvec_kvm_asyncpf_interrupt`` on ``cpu``: wake the slot's token, free the slot."""
        self.irq_hv_callback_count += 1
        area = self.areas[cpu]
        if not area.enabled:
            return ReadyInterrupt(False, None)
        wake = self._task_wake(cpu, area.token)
        if wake.kind is WakeKind.RETRY:
            return ReadyInterrupt(False, wake)
        area.token = 0
        return ReadyInterrupt(True, wake)

    @checked
    def page_ready(self, cpu: int, token: int) -> WakeOutcome:
        """``kvm_async_pf_task_wake(token)`` run on ``cpu``."""
        return self._task_wake(cpu, token)

    def _task_wake(self, cpu: int, token: int) -> WakeOutcome:
        self.page_ready_count += 1
        if token == BROADCAST_TOKEN:
            return WakeOutcome(WakeKind.BROADCAST, self._wake_all(cpu))
        bucket = self.buckets[self.bucket_of(token)]
        have_dummy = False
        while True:
            node = self.find(token)
            if node is not None:
                if have_dummy:
                    self.dummies_freed += 1  # allocated, not used
                return WakeOutcome(WakeKind.WOKEN, self._wake_one(bucket, node))
            if have_dummy:
                dummy = SleepNode(token, cpu, None)
                bucket.insert(0, dummy)
                dummy.linked = True
                return WakeOutcome(WakeKind.DUMMY_INSERTED)
            # the lock is dropped around the allocation: other CPUs may queue the waiter
            if self.alloc_dummy is not None and not self.alloc_dummy(token):
                self.dummy_alloc_failures += 1
                return WakeOutcome(WakeKind.RETRY)
            self.dummies_allocated += 1
            have_dummy = True  # re-search before inserting, to avoid a duplicate

    def _wake_one(self, bucket: list[SleepNode], node: SleepNode) -> list[Task]:
        """``apf_task_wake_one``: unlink (what the waiter polls), then wake the sleeper.

        A dummy found here (a second wake for the same token) is unlinked and, as in Linux,
        never freed.
        """
        self._unlink(bucket, node)
        if node.task is None:
            self.dummies_leaked += 1
            return []
        self.wake_up(node.task)
        return [node.task]

    def _wake_all(self, cpu: int) -> list[Task]:
        """``apf_task_wake_all``: unlink every node of ``cpu``; dummies are not freed."""
        self.broadcasts += 1
        woken: list[Task] = []
        for bucket in self.buckets:
            for node in list(bucket):
                if node.cpu != cpu:
                    continue
                woken.extend(self._wake_one(bucket, node))
        return woken

    @staticmethod
    def _unlink(bucket: list[SleepNode], node: SleepNode) -> None:
        bucket.remove(node)
        node.linked = False

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """INV-X1..X3 (docs/hypervisor.md "Protocol invariants") and dummy accounting; X4 is the
        host's INV-H5.

        X1: a token is in the table at most once, in its own bucket.  X2: a waiting task's
        node stays linked until a waker unlinks it, and the task leaves the wait only through
        :meth:`wait_resume` after that.  X3: a waiter whose node was unlinked is not asleep.
        """
        seen: dict[int, SleepNode] = {}
        linked_dummies = 0
        for index, bucket in enumerate(self.buckets):
            for node in bucket:
                if not node.linked:
                    raise InvariantViolation(f"{node!r} in bucket {index} marked unlinked")
                if self.bucket_of(node.token) != index:
                    raise InvariantViolation(f"{node!r} in bucket {index}, belongs elsewhere")
                if node.token in seen:
                    raise InvariantViolation(
                        f"INV-X1: token {node.token:#x} twice: {seen[node.token]!r}, {node!r}")
                seen[node.token] = node
                if node.task is None:
                    linked_dummies += 1
                elif self._waiters.get(node.task.tid) is not node:
                    raise InvariantViolation(f"INV-X2: {node!r} has no waiting task")
        for tid, node in self._waiters.items():
            assert node.task is not None
            if node.task.freed:
                raise InvariantViolation(f"task {tid} freed while waiting for {node!r}")
            if not node.linked and node.task.is_sleeping:
                raise InvariantViolation(f"INV-X3: {node!r} unlinked but task {tid} still sleeps")
        accounted = self.dummies_freed + self.dummies_leaked + linked_dummies
        if self.dummies_allocated != accounted:
            raise InvariantViolation(
                f"dummy accounting: allocated {self.dummies_allocated} != freed"
                f" {self.dummies_freed} + leaked {self.dummies_leaked} + linked {linked_dummies}")
