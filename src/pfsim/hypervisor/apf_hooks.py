"""The hooks through which the host runs an async-PF mode (``hypervisor.async_pf``).

:class:`ApfMode` is both the interface and the modes ``off`` and ``halt`` (nothing
asynchronous: the host stalls or halts the vCPU itself).  The ``kvm`` and ``s390`` modes, which
wire a protocol's host half (:mod:`pfsim.hypervisor.apf_kvm`, :mod:`pfsim.hypervisor.apf_s390`)
to its guest half, are built above both sides (:mod:`pfsim.apf_modes`) and handed to
:class:`~pfsim.hypervisor.host.Host` by the composition root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfsim.machine.trace_records import OFF, TraceRecorder
from pfsim.sched import Task

if TYPE_CHECKING:
    from pfsim.hypervisor.host import Host


class ApfMode:
    """Hooks the host calls; the default does nothing asynchronous (modes off and halt)."""

    name = "off"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.recorder: TraceRecorder = OFF
        """Where "page not present" and "page ready" are recorded when the run is traced."""

    def setup(self) -> None:
        """Per-vCPU handshake at boot."""

    def major_fault(self, c: int, gfn: int, user: bool) -> bool:
        """A fault on vCPU ``c`` must wait for ``gfn``'s swap-in: True when handled
        asynchronously (else the host stalls or halts the vCPU)."""
        return False

    def on_entry(self, c: int, interrupt_pending: bool = False) -> bool:
        """The vCPU (re-)enters the guest (``interrupt_pending``: an interrupt woke it); False
        if it must halt instead."""
        return True

    def task_resumes(self, task: Task) -> bool:
        """A task that slept for an async PF runs again: True when its wait is over."""
        return True

    def counters(self) -> dict[str, int]:
        return {"not_present": 0, "page_ready": 0, "early_completions": 0}
