"""The guest kernel's virtual-memory manager (VMM): what the kernel, the executor and the
process life-cycle steps ask of the page tables.

Two VMMs implement it: the flat Linux-like one (:class:`pfsim.guest.flat_vmm.FlatVmm`, one
page table per process, :mod:`pfsim.guest.mm`) and the ALMOS-MKH cluster VMM
(:class:`pfsim.cluster.vmm.ClusterVmm`, page-table copies per cluster).  The composition root
(:mod:`pfsim.simulation`) chooses one and passes its class to
:class:`~pfsim.guest.kernel.GuestKernel`, so the guest package never imports the cluster
package that extends it.

Costs are simulated nanoseconds charged to the calling thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from pfsim.config.schema import Config, ProcessConfig
    from pfsim.guest.fault import Access, FaultResult
    from pfsim.guest.memory import PhysMem
    from pfsim.guest.process import Process
    from pfsim.guest.steps import TaskExec


class Vmm(ABC):
    """The VMM of one guest kernel, built by the kernel as ``vmm_class(kernel)`` once its
    memory, scheduler, executor and fault handler exist."""

    touches_in_time_order: ClassVar[bool] = False
    """A touch step due later than now waits for its own time, so that its fault is handled in
    time order with the other vCPUs' faults (faults take locks in simulated time)."""
    logs_faults: ClassVar[bool] = False
    """Its compiled loop writes each fault it resolves into the fault log (class, frame,
    times: :mod:`pfsim.machine.scan`), so a trace shows them one by one; else a traced run
    records one instant per run of the loop with its counts."""
    reclaims: ClassVar[bool] = True
    """With no free frame the kernel shrinks the page cache and OOM-kills (else the allocation
    just fails)."""

    @classmethod
    @abstractmethod
    def new_memory(cls, config: Config) -> PhysMem:
        """The guest's frames under this VMM (built before the kernel's other parts)."""

    # ------------------------------------------------------------------ processes

    @abstractmethod
    def attach_process(self, process: Process, proc: ProcessConfig) -> None:
        """A process was built from ``proc`` (threads made, not yet runnable)."""

    @abstractmethod
    def release_process(self, process: Process) -> None:
        """Every thread of ``process`` is dead: free its memory."""

    @abstractmethod
    def thread_exit(self, texec: TaskExec) -> None:
        """A thread reached the end of its steps."""

    @abstractmethod
    def fork(self, cpu: int, texec: TaskExec, child: Process, step: Any, t: int) -> int:
        """Give ``child`` (its address space already a copy of the parent's) its memory for the
        fork ``step``; the cost, or -1 when the fork fails for lack of memory."""

    @abstractmethod
    def munmap(self, cpu: int, texec: TaskExec, name: str) -> int:
        """Unmap the whole vseg ``name`` of ``texec``'s process; the cost beyond the syscall."""

    @abstractmethod
    def exec(self, cpu: int, texec: TaskExec) -> int:
        """Reset the address space for exec() (only code, data and the caller's stack stay,
        empty); the cost beyond the syscall and the exec itself."""

    # ------------------------------------------------------------------ the executor's calls

    @abstractmethod
    def scan(self, cpu: int, texec: TaskExec, t: int, end: int, limit: int, out: np.ndarray,
             log: np.ndarray) -> tuple[int, int]:
        """Run ``texec``'s accesses ``[texec.pos, end)`` on ``cpu`` from ``t`` in compiled code
        until one needs Python or the next would end after ``limit``; returns (time, index of
        the first access not done), with the OUT_* results in ``out`` and the log in ``log``
        (:mod:`pfsim.machine.scan`)."""

    @abstractmethod
    def usable(self, cpu: int, texec: TaskExec, slot: int, write: bool, fetch: bool,
               t: int) -> bool:
        """Would the MMU of ``cpu`` let this access to ``slot`` (>= 0) through at ``t``?"""

    @abstractmethod
    def touch_allowed(self, cpu: int, texec: TaskExec, access: Access, t: int) -> bool:
        """Would the MMU of ``cpu`` let the touch ``access`` through at ``t``?"""

    @abstractmethod
    def exception(self, cpu: int, texec: TaskExec, access: Access, t: int) -> FaultResult:
        """Handle the page fault ``access`` raised on ``cpu`` at ``t``."""

    def woken_retry(self, texec: TaskExec) -> int:
        """A task woken from a read it waited on retries its fault; when the page got mapped
        meanwhile (another thread's fault-around) the retry only counts: the CPU time it
        costs (0: nothing to do for this VMM)."""
        return 0

    @abstractmethod
    def fault_in_progress(self, cpu: int, now: int) -> int:
        """End time of a fault resolved in compiled code on ``cpu`` still under way at ``now``
        (0 if none): an interrupt waits for it."""

    @abstractmethod
    def core_halted(self, cpu: int, detail: dict[str, Any]) -> None:
        """``cpu`` halted for good (a fault's Action.HALT)."""

    @abstractmethod
    def check_invariants(self) -> None:
        """Raise InvariantViolation if the memory state is inconsistent (``sim.check_invariants``
        after each life-cycle step; tests after every event)."""

    # ------------------------------------------------------------------ results

    @abstractmethod
    def process_result(self, process: Process) -> dict[str, Any]:
        """Entries this VMM adds to ``process``'s result (none for the flat VMM)."""

    @abstractmethod
    def vm_result(self) -> dict[str, Any] | None:
        """The VM's ``clusters`` result section, or None when the VMM has none."""
