"""Processes and their per-task fault and work counters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pfsim.guest.mm import AddressSpace
from pfsim.sched import Task


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
    """PGFAULT events: every fault that reached handle_mm_fault, errors included (§4.5)."""

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

    def counters(self) -> Counters:
        total = Counters()
        for task in self.threads:
            total.add(task.data.counters)
        return total
