"""What the host needs from the guest it runs: the guest's scheduler and its vCPU executor.

The guest and the hypervisor are sibling packages that never import each other; the host
talks to the guest kernel through these structural interfaces (the guest kernel,
``GuestKernel``, and its ``VcpuExecutor`` satisfy them), and the composition root hands it the
kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pfsim.sched import Scheduler


class GuestVcpus(Protocol):
    """The guest side of the vCPUs: the host stops, resumes and interrupts guest code."""

    paused: list[bool]
    """Per vCPU: no guest code runs (its thread is off its host CPU)."""

    def resume_vcpu(self, cpu: int, now: int) -> None:
        """The vCPU's thread got a host CPU: the guest goes on."""

    def pause_vcpu(self, cpu: int) -> None:
        """The vCPU's thread leaves its host CPU: the guest stops here."""

    def interrupts_enabled(self, cpu: int) -> bool:
        """Guest IF at the faulting instruction."""

    def hold(self, cpu: int) -> None:
        """The vCPU stays in the host until :meth:`deliver_injected`."""

    def deliver_injected(self, cpu: int, handler: Callable[[], None]) -> None:
        """Re-enter the guest with an injected exception or interrupt whose handler is
        ``handler``."""

    def interrupt(self, cpu: int, handler: Callable[[], None], entry: bool = False) -> None:
        """Deliver an interrupt to the guest on ``cpu`` now (``entry``: with an exit and a
        re-entry)."""


class GuestSide(Protocol):
    """The guest kernel as its host sees it."""

    scheduler: Scheduler
    """The guest's scheduler (which task runs on each vCPU, its time slices)."""
    executor: GuestVcpus
