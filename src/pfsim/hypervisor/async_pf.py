"""Generic KVM async-page-fault work items: the per-vCPU ``queue`` / ``done`` lists and lifetimes.

Protocol (Linux v6.6-v6.15; src: virt/kvm/async_pf.c ``kvm_setup_async_pf``, ``async_pf_execute``,
``kvm_check_async_pf_completion``, ``kvm_async_pf_wakeup_all``,
``kvm_clear_async_pf_completion_queue``):

    kvm_setup_async_pf:   queued >= 64, error hva or no memory -> refuse (caller goes synchronous)
                          else link on queue, queued++  (the arch layer then injects "not present")
    async_pf_execute:     worker faults the page in, then appends the item to done
                          (ASYNC_PF_SYNC arches, s390, notify the guest *before* that)
    check_completion:     vCPU thread pops done, unlinks from queue, queued--, frees the item
                          (the free waits for the work function to have returned)
    wakeup_all:           a pseudo item straight on done (counted in queued, never on queue),
                          only when done is empty
    clear (reset, MSR disable, teardown): every item leaves queue; work that has not started
                          is cancelled and freed (ASYNC_PF_SYNC: waited for instead), running work
                          is waited for (it lands on done), done is drained, queued = 0

The host's I/O is not modelled here: the caller reports the worker's start
(:meth:`AsyncPfQueues.work_started`) and return (:meth:`AsyncPfQueues.work_returned`).  Waiting
is event-driven: :meth:`AsyncPfQueues.clear` returns the items the clearing vCPU thread must wait
for, and the clear finishes inside the ``work_returned`` of the last of them.

Every free is recorded in :attr:`AsyncPfQueues.frees` so tests can check that each item is freed
exactly once and never before its work function returned (INV-H3, docs/hypervisor.md).  The
``debug`` hook of the four protocol halves is :func:`pfsim.machine.checked.checked`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from pfsim.errors import InvariantViolation

ASYNC_PF_PER_VCPU = 64
"""Per-vCPU limit on queued items (x86 and s390 both use 64)."""

class WorkState(Enum):
    """Where a work item's work function is."""

    PENDING = "pending"  # queued on the workqueue, work function not started
    RUNNING = "running"  # work function running (blocked in the host fault)
    RETURNED = "returned"  # work function returned; the item is on done or was drained
    CANCELLED = "cancelled"  # cancel_work_sync removed it before it started


class SetupFailure(Enum):
    """Why ``kvm_setup_async_pf`` refused a new item (the fault is then handled synchronously)."""

    QUEUE_FULL = "queue_full"  # queued >= ASYNC_PF_PER_VCPU
    ERROR_HVA = "error_hva"  # the gfn has no valid host virtual address
    NO_MEMORY = "no_memory"  # the GFP_NOWAIT allocation failed


@dataclass(eq=False)
class AsyncPfWork:
    """``struct kvm_async_pf`` plus the arch fields both hosts use.

    ``token`` is the x86 ``arch.token`` or the s390 ``arch.pfault_token`` (the 8 bytes read from
    the guest).  ``direct_map`` and ``cr3`` are the x86 MMU mode at setup, checked by the
    prefault in ``kvm_arch_async_page_ready``.
    """

    serial: int
    vcpu_id: int
    gfn: int
    cr2_or_gpa: int
    token: int
    wakeup_all: bool = False
    notpresent_injected: bool = False
    direct_map: bool = True
    cr3: int = 0
    state: WorkState = WorkState.PENDING
    on_queue: bool = False
    on_done: bool = False
    freed: bool = False

    def __repr__(self) -> str:
        kind = "wakeup_all" if self.wakeup_all else f"gfn={self.gfn:#x}"
        return (f"AsyncPfWork(#{self.serial} vcpu{self.vcpu_id} {kind} token={self.token:#x}"
                f" {self.state.value})")


class Returned(NamedTuple):
    """Result of :meth:`AsyncPfQueues.work_returned`."""

    first: bool
    """``done`` was empty before this item (x86 then requests KVM_REQ_APF_READY)."""
    clear_finished: bool
    """This was the last item a clearing vCPU thread waited for: the clear is complete."""


class VcpuAsyncPf:
    """``vcpu->async_pf``: the lists of one vCPU."""

    __slots__ = ("vcpu_id", "queue", "done", "queued", "clearing", "clear_wait")

    def __init__(self, vcpu_id: int) -> None:
        self.vcpu_id = vcpu_id
        self.queue: list[AsyncPfWork] = []
        self.done: deque[AsyncPfWork] = deque()
        self.queued = 0
        self.clearing = False
        self.clear_wait: list[AsyncPfWork] = []


class AsyncPfQueues:
    """Work items of every vCPU of one VM.

    Args:
        nvcpus: number of vCPUs.
        sync: ``CONFIG_KVM_ASYNC_PF_SYNC`` (s390): a clear waits for not-started work instead of
            cancelling it.
        alloc: called for each allocation; returning False models an allocation failure.
    """

    def __init__(self, nvcpus: int, sync: bool, alloc: Callable[[], bool] | None = None) -> None:
        self.vcpus = [VcpuAsyncPf(i) for i in range(nvcpus)]
        self.sync = sync
        self.alloc = alloc
        self.frees: dict[int, int] = {}
        """serial -> number of times freed (must end at exactly 1); kept while
        ``record_frees`` (tests, debug runs), since it grows with every item."""
        self.record_frees = True
        self.freed_total = 0
        self.live: dict[int, AsyncPfWork] = {}
        self.allocated = 0
        self._serial = 0

    # ------------------------------------------------------------------ creation

    def _new(self, vcpu_id: int, gfn: int, cr2_or_gpa: int, token: int, wakeup_all: bool,
             direct_map: bool, cr3: int) -> AsyncPfWork | None:
        if self.alloc is not None and not self.alloc():
            return None
        self._serial += 1
        self.allocated += 1
        work = AsyncPfWork(self._serial, vcpu_id, gfn, cr2_or_gpa, token, wakeup_all=wakeup_all,
                           direct_map=direct_map, cr3=cr3)
        self.live[work.serial] = work
        return work

    def setup(self, vcpu_id: int, gfn: int, cr2_or_gpa: int, token: int, *, hva_error: bool = False,
              direct_map: bool = True, cr3: int = 0) -> AsyncPfWork | SetupFailure:
        """``kvm_setup_async_pf`` up to (not including) the arch "not present" call.

        Returns:
            the new item, linked on ``queue`` and counted (the caller must inject "not present"
            and later report :meth:`work_started` / :meth:`work_returned`), or why it was refused
            (the caller must handle the fault synchronously).
        """
        vcpu = self._vcpu_thread(vcpu_id)
        if vcpu.queued >= ASYNC_PF_PER_VCPU:
            return SetupFailure.QUEUE_FULL
        if hva_error:
            return SetupFailure.ERROR_HVA
        work = self._new(vcpu_id, gfn, cr2_or_gpa, token, False, direct_map, cr3)
        if work is None:
            return SetupFailure.NO_MEMORY
        vcpu.queue.append(work)
        work.on_queue = True
        vcpu.queued += 1
        return work

    def wakeup_all(self, vcpu_id: int, token: int) -> AsyncPfWork | None:
        """``kvm_async_pf_wakeup_all``: a pseudo item on ``done`` if ``done`` is empty.

        Returns:
            the item (``done`` was empty, so it is always the first), or None when ``done`` was
            not empty or the allocation failed.
        """
        vcpu = self._vcpu_thread(vcpu_id)
        if vcpu.done:
            return None
        work = self._new(vcpu_id, -1, 0, token, True, True, 0)
        if work is None:
            return None
        work.state = WorkState.RETURNED  # no work function: nothing to wait for
        vcpu.done.append(work)
        work.on_done = True
        vcpu.queued += 1
        return work

    # ------------------------------------------------------------------ worker side

    def work_started(self, work: AsyncPfWork) -> None:
        """The workqueue began running ``async_pf_execute`` for ``work``."""
        self._alive(work)
        if work.state is not WorkState.PENDING:
            raise InvariantViolation(f"work_started on {work!r}: not pending")
        work.state = WorkState.RUNNING

    def work_returned(self, work: AsyncPfWork) -> Returned:
        """``async_pf_execute`` finished: append ``work`` to its vCPU's ``done``.

        The item may be freed by the vCPU thread from now on.
        """
        self._alive(work)
        if work.state is not WorkState.RUNNING:
            raise InvariantViolation(f"work_returned on {work!r}: not running")
        vcpu = self.vcpus[work.vcpu_id]
        work.state = WorkState.RETURNED
        first = not vcpu.done
        vcpu.done.append(work)
        work.on_done = True
        finished = False
        if vcpu.clearing and work in vcpu.clear_wait:
            vcpu.clear_wait.remove(work)
            if not vcpu.clear_wait:
                self._finish_clear(vcpu)
                finished = True
        return Returned(first, finished)

    # ------------------------------------------------------------------ vCPU thread side

    def pop_done(self, vcpu_id: int) -> AsyncPfWork | None:
        """Take the first item off ``done`` (None when empty)."""
        vcpu = self._vcpu_thread(vcpu_id)
        if not vcpu.done:
            return None
        work = vcpu.done.popleft()
        work.on_done = False
        return work

    def retire(self, work: AsyncPfWork) -> None:
        """Unlink a popped item from ``queue``, ``queued--``, flush and free it."""
        vcpu = self.vcpus[work.vcpu_id]
        if work.on_done:
            raise InvariantViolation(f"retire of {work!r} still on done")
        if work.on_queue:
            vcpu.queue.remove(work)
            work.on_queue = False
        vcpu.queued -= 1
        self._free(work)

    def clear(self, vcpu_id: int) -> list[AsyncPfWork]:
        """``kvm_clear_async_pf_completion_queue``.

        Returns:
            the items whose work function the calling vCPU thread must wait for; it stays blocked
            until the caller has reported :meth:`work_returned` for each (the last one finishes
            the clear: ``done`` drained, ``queued = 0``).  An empty list means the clear is
            already complete.
        """
        vcpu = self._vcpu_thread(vcpu_id)
        wait: list[AsyncPfWork] = []
        while vcpu.queue:
            work = vcpu.queue.pop(0)
            work.on_queue = False
            if work.state is WorkState.PENDING and not self.sync:
                work.state = WorkState.CANCELLED  # cancel_work_sync won: never runs
                self._free(work)
            elif work.state in (WorkState.PENDING, WorkState.RUNNING):
                wait.append(work)  # flush_work / cancel_work_sync waits for it
            # RETURNED items are on done and are freed by the drain below
        self._drain_done(vcpu)
        if wait:
            vcpu.clearing = True
            vcpu.clear_wait = wait
        else:
            vcpu.queued = 0
        return list(wait)

    def _finish_clear(self, vcpu: VcpuAsyncPf) -> None:
        self._drain_done(vcpu)
        vcpu.queued = 0
        vcpu.clearing = False

    def _drain_done(self, vcpu: VcpuAsyncPf) -> None:
        while vcpu.done:
            work = vcpu.done.popleft()
            work.on_done = False
            self._free(work)

    def _free(self, work: AsyncPfWork) -> None:
        if work.freed:
            raise InvariantViolation(f"double free of {work!r}")
        if work.state not in (WorkState.RETURNED, WorkState.CANCELLED):
            raise InvariantViolation(f"{work!r} freed before its work function returned")
        work.freed = True
        self.freed_total += 1
        if self.record_frees:
            self.frees[work.serial] = self.frees.get(work.serial, 0) + 1
        del self.live[work.serial]

    def _alive(self, work: AsyncPfWork) -> None:
        if work.freed:
            raise InvariantViolation(f"use after free of {work!r}")

    def _vcpu_thread(self, vcpu_id: int) -> VcpuAsyncPf:
        vcpu = self.vcpus[vcpu_id]
        if vcpu.clearing:
            raise InvariantViolation(f"vCPU {vcpu_id} thread acts while blocked in a queue clear")
        return vcpu

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """INV-H1 (queued accounting) and INV-H3 (ownership, exactly-once free)."""
        reachable: set[int] = set()
        for vcpu in self.vcpus:
            where = f"vCPU {vcpu.vcpu_id}"
            for work in vcpu.queue:
                if (work.freed or not work.on_queue or work.wakeup_all
                        or work.vcpu_id != vcpu.vcpu_id):
                    raise InvariantViolation(f"{where}: bad item on queue: {work!r}")
                if work.state is WorkState.CANCELLED:
                    raise InvariantViolation(f"{where}: cancelled item still queued: {work!r}")
            for work in vcpu.done:
                if work.freed or not work.on_done or work.state is not WorkState.RETURNED:
                    raise InvariantViolation(f"{where}: bad item on done: {work!r}")
                if not work.wakeup_all and not work.on_queue and not vcpu.clearing:
                    raise InvariantViolation(f"{where}: done item not on queue: {work!r}")
            for work in vcpu.clear_wait:
                if work.on_queue or work.state not in (WorkState.PENDING, WorkState.RUNNING):
                    raise InvariantViolation(f"{where}: bad item waited for by clear: {work!r}")
            ids = [w.serial for w in (*vcpu.queue, *vcpu.done, *vcpu.clear_wait)]
            on_queue_and_done = {w.serial for w in vcpu.queue} & {w.serial for w in vcpu.done}
            if len(ids) - len(on_queue_and_done) != len(set(ids)):
                raise InvariantViolation(f"{where}: an item is linked twice")
            reachable.update(ids)
            if vcpu.clearing:
                if vcpu.queue or not vcpu.clear_wait:
                    raise InvariantViolation(f"{where}: inconsistent clear state")
                continue
            wakeups = sum(1 for w in vcpu.done if w.wakeup_all)
            if vcpu.queued != len(vcpu.queue) + wakeups:
                raise InvariantViolation(
                    f"INV-H1 {where}: queued={vcpu.queued} != |queue|={len(vcpu.queue)}"
                    f" + wakeup_all items {wakeups}")
            if vcpu.queued > ASYNC_PF_PER_VCPU + 1:
                raise InvariantViolation(f"INV-H1 {where}: queued={vcpu.queued} > 65")
        leaked = set(self.live) - reachable
        if leaked:
            raise InvariantViolation(f"INV-H3: items neither linked nor freed: {sorted(leaked)}")
        for serial, count in self.frees.items():
            if count != 1:
                raise InvariantViolation(f"INV-H3: item #{serial} freed {count} times")
            if serial in self.live:
                raise InvariantViolation(f"INV-H3: item #{serial} freed but still live")
        if self.sync and any(w.state is WorkState.CANCELLED for w in self.live.values()):
            raise InvariantViolation("ASYNC_PF_SYNC never cancels work")
