"""Processes and their per-task fault and work counters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pfsim.guest.mm import AddressSpace
from pfsim.sched import Task, TaskState


@dataclass
class Counters:
    """Counters kept per task and summed per process (names are result.json names)."""

    min_flt: int = 0
    maj_flt: int = 0
    segv: int = 0
    efault: int = 0
    work: int = 0
    accesses: int = 0
    compute_units: int = 0
    cow_copies: int = 0
    cow_reuses: int = 0
    false_pgfault_nr: int = 0
    local_pgfault_nr: int = 0
    global_pgfault_nr: int = 0
    pgfault: int = 0
    """PGFAULT events: every fault that reached handle_mm_fault, errors included
    (mm/memory.c ``mm_account_fault``)."""
    # ALMOS-MKH (CONFIG_INSTRUMENTATION_PGFAULTS, thread.h thread_info_t): time spent in
    # vmm_handle_page_fault (ns)
    false_pgfault_cost: int = 0
    local_pgfault_cost: int = 0
    global_pgfault_cost: int = 0
    remote_accesses: int = 0
    """User accesses to a page held by another cluster's memory bank."""
    rpcs: int = 0
    """RPCs this thread sent (fork, set_cow, and in rpc mode vseg lookups, allocations, updates)."""
    pte_lock_waits: int = 0
    """PTE lock acquisitions that found the lock held and spun (pte2_wait_events)."""
    pte_lock_wait_ns: int = 0
    pt2_lock_waits: int = 0
    """PT2 creations found in progress by another thread (pte1_wait_events)."""
    rwlock_waits: int = 0
    """Vseg-list (remote rwlock) acquisitions that had to wait."""
    rwlock_wait_ns: int = 0
    user_errors: int = 0
    """Exceptions that ended in EXCP_USER_ERROR (the process is terminated)."""
    kernel_panics: int = 0
    """Exceptions that ended in EXCP_KERNEL_PANIC (the faulting core halts)."""

    def add(self, other: Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Process:
    """A process: one address space shared by its threads."""

    pid: int
    name: str
    mm: AddressSpace
    threads: list[Task] = field(default_factory=list)
    alive: bool = True
    started_ns: int | None = None
    exited_ns: int | None = None
    exit_reason: str | None = None  # None (normal), "segv", "oom"
    signal: dict[str, Any] | None = None
    parent: Process | None = None
    children: list[Process] = field(default_factory=list)
    reaped: int = 0
    """Children whose exit a wait step consumed."""
    cluster: int = 0
    """ALMOS-MKH owner and reference cluster (0 in the flat kernel)."""
    vmm: Any = None
    """ALMOS-MKH page-table copies (:class:`pfsim.cluster.gpt.ProcessGpt`), None when flat."""
    first_live: int = 0
    """Every thread before this index is DEAD (death is final; threads are only appended)."""

    def all_dead(self) -> bool:
        """Whether every thread is DEAD, in O(1) amortized over the process's life."""
        threads, i = self.threads, self.first_live
        while i < len(threads) and threads[i].state == TaskState.DEAD:
            i += 1
        self.first_live = i
        return i == len(threads)

    def counters(self) -> Counters:
        total = Counters()
        for task in self.threads:
            total.add(task.data.counters)
        return total
