"""What the guest needs from the host it runs on (when ``hypervisor.enabled``).

The guest and the hypervisor are sibling packages that never import each other; the guest's
executor and kernel talk to the host through these structural interfaces (the host,
``pfsim.hypervisor.host.Host``, satisfies them), and the composition root attaches the host
(:meth:`pfsim.guest.executor.VcpuExecutor.attach_host`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pfsim.machine.vmexit import Decision
from pfsim.sched import Task


class HostArrays(Protocol):
    """The host's memory arrays for this VM (layout: :mod:`pfsim.machine.hostmem_layout`),
    which the compiled access loop updates in place."""

    gfn_bits: np.ndarray
    gfn_links: np.ndarray
    frames: np.ndarray
    frame_free_at: np.ndarray
    small: np.ndarray
    ept: np.ndarray
    """Per gfn: 1 when mapped in the EPT (the guest may access it)."""


class AsyncPfHooks(Protocol):
    def task_resumes(self, task: Task) -> bool:
        """A task that slept for an async PF runs again: True when its wait is over."""


class HostSide(Protocol):
    """The host as its guest sees it."""

    memory: HostArrays
    apf: AsyncPfHooks

    def vcpu_idle(self, c: int) -> None:
        """The guest has nothing to run on vCPU ``c`` (HLT)."""

    def vcpu_kick(self, c: int) -> bool:
        """An interrupt for vCPU ``c``; True when its thread was asleep (it is woken)."""

    def entry_allowed(self, c: int) -> bool:
        """vCPU ``c`` is about to enter the guest; False when it must halt instead."""

    def halt_at_entry(self, c: int) -> None:
        """The entry found an async-PF halt request: the vCPU thread blocks."""

    def ept_violation(self, c: int, gfn: int, write: bool, user: bool) -> tuple[Decision, int]:
        """A guest access on vCPU ``c`` found ``gfn`` unmapped in the EPT."""

    def charge_stall(self, c: int, cost: int) -> None:
        """Host work done on vCPU ``c``'s thread for the guest (counted stalled)."""

    def ipi_halted(self, c: int) -> None:
        """An interrupt for vCPU ``c`` while its thread is out of guest mode (a vCPU halted
        in the host wakes for it)."""

    def first_touches(self, c: int, count: int, stall: int) -> None:
        """The compiled loop backed ``count`` never-touched gfns, stalling vCPU ``c``."""

    def dma_write(self, gfn: int) -> tuple[int, bool]:
        """The guest's virtual disk is about to read data into ``gfn``: when the page can take
        it (the host swaps a swapped-out page in first), and whether the host had swapped it."""

    def backfill(self, gfn: int) -> None:
        """The guest's virtual disk wrote into ``gfn``: back it."""

    def balloon_inflate(self, gfns: np.ndarray) -> None:
        """The guest's balloon took ``gfns``: the host may free what backs them."""

    def dma_read(self, gfn: int) -> tuple[int, bool]:
        """The guest's virtual disk reads ``gfn`` (a write of the guest's swap or file): when
        the page's contents are readable, and whether the host had swapped it out."""
