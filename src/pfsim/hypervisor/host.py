"""The host: CPUs that run the VM's vCPU threads, second-level faults, swap, async-PF modes.

vCPU threads are :class:`~pfsim.sched.Task` objects on a host :class:`~pfsim.sched.Scheduler`
(the same class as the guest's), with KVM's preempt notifier registered (vcpu load/put).  The
guest runs on vCPU ``c`` only while ``c``'s thread is on a host CPU: the host tells the guest
executor to resume and pause it.

A guest access to a gfn the EPT does not map exits to :meth:`Host.ept_violation`:

* first touch or a swap-cache page: a minor host fault, the vCPU spends its cost in the host;
* a page on swap: a major fault.  The swap-in starts at once (with cluster readahead); then,
  by ``hypervisor.async_pf``:

  - ``off``:  the vCPU thread sleeps in the host until the read completes (stalled);
  - ``halt``: the vCPU thread halts (kvm_vcpu_block) until the page is in *or* an interrupt is
    pending for the guest (its next tick; with ``guest.tick = "off"`` its timer at the slice
    end when another task is runnable there): the guest takes it (and switches tasks if the
    slice is over), and the faulting task, when it runs again, halts again on the same gfn.

  A synchronous swap device (zram) completes the read inside the faulting thread: no async PF.

Per vCPU the host accounts where time goes: ``busy`` (guest code), ``idle`` (guest halted
with nothing to run), ``stalled`` (in the host for a fault, waiting for swap, or APF-halted)
and ``steal`` (runnable but no host CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import numpy as np

from pfsim.config.schema import Config
from pfsim.engine import Priority, RandomStreams, Simulator
from pfsim.hypervisor.apf_hooks import ApfMode
from pfsim.hypervisor.guest_side import GuestSide
from pfsim.hypervisor.hostmem import HostMemory
from pfsim.hypervisor.swap import SwapDevice, swap_params
from pfsim.hypervisor.vcpu_notifier import KvmPreemptOps, KvmVcpu
from pfsim.machine.frames import ZERO_GFN
from pfsim.machine.hostmem_layout import INIO, NEVER, RESIDENT, S_FIRST_TOUCH, SWAPCACHE, SWAPPED
from pfsim.machine import trace_records as T
from pfsim.machine.vmexit import Decision
from pfsim.sched import PreemptNotifier, Scheduler, Task, TaskState
from pfsim.sched.policy import make_policy
from pfsim.sched.tick import next_tick
from pfsim.units import PAGE_SIZE


def _nothing() -> None:
    """The guest handler of a kick: the exit and re-entry are all it does."""


class VcpuMode(IntEnum):
    """Where a vCPU's time goes."""

    RUNNING = 0  # thread on a host CPU: guest code, or host work charged as stall
    IDLE = 1  # guest halted with nothing to run
    STALLED = 2  # thread blocked for a host fault (sync I/O or APF halt)
    PREEMPTED = 3  # thread runnable, waiting for a host CPU (steal)


_HOST_FAULT_CLASS = {RESIDENT: T.HF_RESIDENT, SWAPCACHE: T.HF_SWAPCACHE, NEVER: T.HF_FIRST_TOUCH,
                     SWAPPED: T.HF_MAJOR}


class Host:
    """The host of one VM.

    Args:
        config: the scenario (``hypervisor`` section enabled).
        sim, streams: engine and random streams.
        kernel: the guest kernel whose vCPUs the host runs.
        apf_mode: builds the async-PF mode of ``hypervisor.async_pf`` for this host
            (:data:`pfsim.apf_modes.MODES`; :class:`~pfsim.hypervisor.apf_hooks.ApfMode` for
            ``off`` and ``halt``).
    """

    def __init__(self, config: Config, sim: Simulator, streams: RandomStreams,
                 kernel: GuestSide, apf_mode: Callable[[Host], ApfMode]) -> None:
        hyp = config.hypervisor
        self.config = config
        self.sim = sim
        self.kernel = kernel
        self.costs = hyp.costs
        self.mode = hyp.async_pf
        guest_frames = config.guest.memory // PAGE_SIZE
        limit = (hyp.memory_limit or config.guest.memory) // PAGE_SIZE
        self.memory = HostMemory(guest_frames, limit, hyp.reclaim, hyp.reclaim_batch,
                                 streams.generator("host/reclaim"))
        self.memory.small[S_FIRST_TOUCH] = hyp.costs.ept_violation + hyp.costs.host_fault
        self.memory.pin(ZERO_GFN)
        self.swap_params = swap_params(hyp.swap)
        self.swap = SwapDevice(self.swap_params, streams.generator("host/swap"))
        host_sched = config.guest.sched.model_copy(update={"latency": hyp.timeslice})
        self.sched = Scheduler(sim, hyp.host_cpus, hyp.timeslice, hyp.context_switch,
                               idle_balance=True, name="host",
                               policy=make_policy(host_sched, hyp.timeslice, hyp.host_cpus,
                                                  config.guest.hz))
        self.sched.executor = self
        self.sched.on_preempt = self._preempt_host_cpu
        nv = config.guest.vcpus
        self.threads = [Task(100_000 + c, f"vcpu{c}", owner="vm0") for c in range(nv)]
        self.kvm = [KvmVcpu(c) for c in range(nv)]
        self.sched.preempt_notifier_inc()  # kvm_create_vm
        for c, thread in enumerate(self.threads):
            thread.data = c
            notifier = PreemptNotifier(KvmPreemptOps(self.kvm[c]))
            self.sched.preempt_notifier_register(thread, notifier)  # vcpu_load in KVM_RUN
            self.kvm[c].wants_to_run = True
        self.noise = [Task(200_000 + i, f"host{i}", owner="host") for i in range(hyp.host_tasks)]
        self.on_cpu = [-1] * nv
        self.vmode = [VcpuMode.PREEMPTED] * nv
        self.since = [0] * nv
        self.time_in = [[0, 0, 0, 0] for _ in range(nv)]
        self.charged_stall = [0] * nv
        self.hepoch = [0] * hyp.host_cpus
        self.halt_epoch = [0] * nv
        self.waiting_gfn = [-1] * nv  # gfn a stalled / APF-halted vCPU waits for
        self.io_waiters: dict[int, list[Callable[[], None]]] = {}
        self.sync_fallbacks = 0
        self.halts = 0
        self.guest_io_swap_ins = 0
        """Host swap-ins the guest's own I/O caused: its virtual disk reading pages the host
        had swapped out to write them to the guest's swap or files, or pinning them to read
        into them (double paging)."""
        self.false_reads = 0
        """Of those, swap-ins of pages the guest's disk reads then overwrite (:meth:`dma_write`)."""
        self.irq_pending = [False] * nv
        self.recorder: T.TraceRecorder = T.OFF
        """Where host faults are recorded when the run is traced."""
        self.apf: ApfMode = apf_mode(self)
        self.apf.setup()
        for task in [*self.threads, *self.noise]:
            self.sched.add_task(task)

    # ------------------------------------------------------------------ accounting

    def _set_mode(self, c: int, mode: VcpuMode) -> None:
        now = self.sim.now
        self.time_in[c][self.vmode[c]] += now - self.since[c]
        self.vmode[c] = mode
        self.since[c] = now

    def first_touches(self, c: int, count: int, stall: int) -> None:
        """The compiled loop backed ``count`` never-touched gfns, stalling vCPU ``c``."""
        self.memory.ept_violations += count
        self.memory.host_minor += count
        self.charged_stall[c] += stall

    def charge_stall(self, c: int, cost: int) -> None:
        """Host work done on the vCPU thread for the guest (counted stalled, not busy)."""
        self.charged_stall[c] += cost

    def spend_at_entry(self, c: int, cost: int) -> None:
        """Host work on the way into the guest (delivering an interrupt): the guest goes on
        ``cost`` ns later, and that time is stalled."""
        self.charge_stall(c, cost)
        self.kernel.executor.owe(c, cost)

    def steal_clock(self, c: int) -> int:
        """The steal vCPU ``c`` has reported to the guest: its thread's waits for a host CPU up
        to its last entry (``record_steal_time`` at ``vcpu_enter_guest`` from
        ``run_delay``; a wait still going on is reported when it ends)."""
        return self.time_in[c][VcpuMode.PREEMPTED]

    def vcpu_times(self, c: int, end: int) -> dict[str, int]:
        times = list(self.time_in[c])
        times[self.vmode[c]] += end - self.since[c]
        stall_charge = min(self.charged_stall[c], times[VcpuMode.RUNNING])
        return {"busy_ns": times[VcpuMode.RUNNING] - stall_charge,
                "idle_ns": times[VcpuMode.IDLE],
                "stalled_ns": times[VcpuMode.STALLED] + stall_charge,
                "steal_ns": times[VcpuMode.PREEMPTED]}

    # ------------------------------------------------------------------ executor protocol

    def start(self, hcpu: int, thread: Task, now: int) -> None:
        """A host thread got host CPU ``hcpu``."""
        self.hepoch[hcpu] += 1
        epoch = self.hepoch[hcpu]
        if thread.owner == "host":
            self.sim.at(max(now, self.sched.slice_end(hcpu)), self._tick, hcpu, epoch)
            return
        c = thread.data
        self.on_cpu[c] = hcpu
        self._set_mode(c, VcpuMode.RUNNING)
        self.sim.at(max(now, self.sched.slice_end(hcpu)), self._tick, hcpu, epoch)
        self.kernel.executor.resume_vcpu(c, now)

    def _tick(self, hcpu: int, epoch: int) -> None:
        """Host slice end: preempt if another thread waits for this CPU, else extend."""
        if epoch != self.hepoch[hcpu]:
            return
        rq = self.sched.cpus[hcpu]
        thread = rq.current
        if thread is None:
            return
        if not rq.queue:
            self.sched.update_curr(hcpu)
            rq.slice_end = self.sim.now + self.sched.policy.slice(rq)
            self.sim.at(rq.slice_end, self._tick, hcpu, epoch)
            return
        if thread.owner != "host":
            c = thread.data
            self.kernel.executor.pause_vcpu(c)
            self.on_cpu[c] = -1
            self._set_mode(c, VcpuMode.PREEMPTED)
        self.hepoch[hcpu] += 1
        self.sched.schedule(hcpu, preempted=True)

    def _preempt_host_cpu(self, hcpu: int) -> None:
        """CFS wake-up preemption on host CPU ``hcpu``: act at once, through an event."""
        self.sim.at(self.sim.now, self._tick_now, hcpu, self.hepoch[hcpu], priority=Priority.URGENT)

    def _tick_now(self, hcpu: int, epoch: int) -> None:
        rq = self.sched.cpus[hcpu]
        if rq.queue:
            self._tick(hcpu, epoch)

    def _block(self, c: int, mode: VcpuMode, state: TaskState) -> None:
        """The vCPU thread sleeps in the host (the guest side has already stopped)."""
        hcpu = self.on_cpu[c]
        self.kernel.executor.pause_vcpu(c)
        thread = self.threads[c]
        thread.state = state
        self.on_cpu[c] = -1
        self._set_mode(c, mode)
        if hcpu >= 0:
            self.hepoch[hcpu] += 1
            self.sched.schedule(hcpu, preempted=False)

    def _wake(self, c: int) -> None:
        thread = self.threads[c]
        if thread.is_sleeping and self.sched.wake_up(thread) and self.on_cpu[c] < 0:
            self._set_mode(c, VcpuMode.PREEMPTED)

    # ------------------------------------------------------------------ guest idle / IPIs

    def vcpu_idle(self, c: int) -> None:
        """The guest has nothing to run on ``c``: it executes HLT; the thread blocks."""
        self.halt_epoch[c] += 1
        self.sim.at(self.sim.now, self._halt_idle, c, self.halt_epoch[c], priority=Priority.LATE)

    def _halt_idle(self, c: int, epoch: int) -> None:
        if epoch != self.halt_epoch[c] or self.on_cpu[c] < 0:
            return
        if self.kernel.scheduler.current(c) is not None or self.kernel.scheduler.cpus[c].queue:
            return
        if self.config.guest.tick == "periodic":  # no NO_HZ: the idle vCPU keeps its tick
            tick = self.kernel.scheduler.tick_ns
            self.sim.at(next_tick(self.sim.now, tick), self._idle_tick, c, self.halt_epoch[c],
                        priority=Priority.URGENT)
        self._block(c, VcpuMode.IDLE, TaskState.INTERRUPTIBLE)  # last: it may switch threads

    def _idle_tick(self, c: int, epoch: int) -> None:
        """A periodic tick for an idle vCPU: its thread wakes (the timer interrupt is injected),
        the guest finds nothing to run and halts again, arming the next one."""
        if epoch == self.halt_epoch[c] and self.vmode[c] == VcpuMode.IDLE:
            self._wake(c)

    def vcpu_kick(self, c: int) -> bool:
        """An interrupt for ``c`` (reschedule IPI, timer, page ready).  Returns True when the
        vCPU thread is asleep: it is woken and the guest handles the interrupt on resume."""
        if self.on_cpu[c] >= 0:
            self.halt_epoch[c] += 1  # a pending HLT is cancelled
            return False
        if self.vmode[c] == VcpuMode.STALLED and self.threads[c].state == TaskState.UNINTERRUPTIBLE:
            return True  # blocked in a synchronous host fault: delivered after it
        if self.vmode[c] == VcpuMode.STALLED:
            self.waiting_gfn[c] = -1  # apf.halted cleared by the interrupt
        self._wake(c)
        return True

    # ------------------------------------------------------------------ EPT violations

    def ept_violation(self, c: int, gfn: int, write: bool, user: bool) -> tuple[Decision, int]:
        """A guest access on vCPU ``c`` found ``gfn`` unmapped in the EPT.

        Returns:
            (CONTINUE, cost): resolved; the vCPU spent ``cost`` ns in the host;
            (BLOCKED, 0): the vCPU thread sleeps; the guest is resumed by the host later.
        """
        memory = self.memory
        memory.ept_violations += 1
        now = self.sim.now
        costs = self.costs
        where = int(memory.where[gfn])
        if self.recorder.on:
            current = self.kernel.scheduler.current(c)
            self.recorder.add(now, T.K_HOST_FAULT, c, -1 if current is None else current.tid, gfn,
                              aux=_HOST_FAULT_CLASS.get(where, T.HF_INIO))
        if where == RESIDENT:  # another vCPU mapped it meanwhile
            return Decision.CONTINUE, costs.ept_violation
        if where == SWAPCACHE:
            memory.map_cached(gfn)
            memory.host_minor += 1
            return Decision.CONTINUE, costs.ept_violation + costs.swapcache_hit
        if where == NEVER:
            frame, evicted = memory.take_frame(now)
            self._write_back(evicted, now)
            memory.map_new(gfn, frame)
            memory.host_minor += 1
            ready = max(now + costs.ept_violation + costs.host_fault, int(memory.frame_free_at[frame]))
            return Decision.CONTINUE, ready - now
        # SWAPPED or INIO: a major fault
        if where == SWAPPED:
            memory.host_major += 1
            done = self._swap_in(gfn, now)
            if self.swap_params.synchronous:  # zram: the read happens in this thread
                return Decision.CONTINUE, max(done, now) - now + costs.ept_violation
        return self._wait_for_page(c, gfn, user)

    def _wait_for_page(self, c: int, gfn: int, user: bool) -> tuple[Decision, int]:
        """The vCPU cannot go on until ``gfn`` is in: async PF, halt or stall, by mode."""
        if self.apf.major_fault(c, gfn, user):
            return Decision.BLOCKED, 0
        self.waiting_gfn[c] = gfn
        self.when_page_in(gfn, lambda: self._page_arrived(c, gfn))
        self._exit_cost(c)
        if self.mode == "halt" and self.kernel.executor.interrupts_enabled(c):
            self.halts += 1
            self._arm_guest_timer(c)
            self._block(c, VcpuMode.STALLED, TaskState.INTERRUPTIBLE)
        else:
            self.sync_fallbacks += self.mode == "halt"
            self._block(c, VcpuMode.STALLED, TaskState.UNINTERRUPTIBLE)
        return Decision.BLOCKED, 0

    # ------------------------------------------------------------------ async-PF plumbing

    def when_page_in(self, gfn: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the swap-in of ``gfn`` (already started) completes."""
        self.io_waiters.setdefault(gfn, []).append(callback)

    def guest_interrupt(self, c: int, cost: int, handler: Callable[[], None]) -> None:
        """After ``cost`` ns of host work, vCPU ``c`` re-enters the guest and takes an interrupt
        (or exception) whose guest handler is ``handler``."""
        self.charge_stall(c, cost)
        self.kernel.executor.hold(c)
        self.sim.at(self.sim.now + cost, self.kernel.executor.deliver_injected, c, handler,
                    priority=Priority.URGENT)

    def apf_halt(self, c: int) -> None:
        """KVM_REQ_APF_HALT: the vCPU halts at its next entry (until a completion or an
        interrupt makes it runnable)."""
        self.halts += 1
        if not self.apf.on_entry(c):
            self._exit_cost(c)
            self._arm_guest_timer(c)
            self._block(c, VcpuMode.STALLED, TaskState.INTERRUPTIBLE)

    def _exit_cost(self, c: int) -> None:
        """The VM exit, EPT walk and re-entry around a wait for a page (vcpu_enter_guest ->
        kvm_mmu_page_fault, then vcpu_block): host time the vCPU spends when it resumes."""
        self.charge_stall(c, self.costs.ept_violation)
        self.kernel.executor.owe(c, self.costs.ept_violation)

    def entry_allowed(self, c: int) -> bool:
        """The vCPU thread is about to enter the guest: process the async-PF requests (deliver
        completions); False when it must APF-halt instead (the caller then finishes its own
        work and calls :meth:`halt_at_entry` last)."""
        pending, self.irq_pending[c] = self.irq_pending[c], False
        return self.apf.on_entry(c, interrupt_pending=pending)

    def halt_at_entry(self, c: int) -> None:
        """The entry found KVM_REQ_APF_HALT: the vCPU thread blocks until a completion or an
        interrupt (its guest timer when another task is runnable there) makes it runnable.

        NOTE: every call that can switch host threads (here ``_block``) is the last thing its
        callers do, up to the event handler: the compiled core relies on it to run the next
        thread's start after the handler instead of recursing.
        """
        self.halts += 1
        self._arm_guest_timer(c)
        self._block(c, VcpuMode.STALLED, TaskState.INTERRUPTIBLE)

    def kick_for_completion(self, c: int) -> None:
        """A completion is queued for vCPU ``c`` (kvm_vcpu_kick): a running vCPU gets an IPI
        and exits and re-enters once the completion handler is done (an URGENT event now); a
        halted one wakes; a blocked or preempted one sees it at entry."""
        if self.on_cpu[c] >= 0:
            self.sim.at(self.sim.now, self._kick_ipi, c, priority=Priority.URGENT)
        elif self.threads[c].state == TaskState.INTERRUPTIBLE:
            self._wake(c)

    def _kick_ipi(self, c: int) -> None:
        if self.on_cpu[c] >= 0:
            self.kernel.executor.interrupt(c, _nothing, entry=True)
        elif self.threads[c].state == TaskState.INTERRUPTIBLE:
            self._wake(c)

    def kick_floating(self) -> None:
        """A floating interrupt is pending: once the completion handler is done (an URGENT
        event now), the first vCPU running guest code takes it; if none runs, the first halted
        one is woken."""
        self.sim.at(self.sim.now, self._floating_ipi, priority=Priority.URGENT)

    def _floating_ipi(self) -> None:
        for c in range(len(self.threads)):
            if self.on_cpu[c] >= 0 and not self.kernel.executor.paused[c]:
                self.kernel.executor.interrupt(c, _nothing, entry=True)
                return
        for c in range(len(self.threads)):
            if self.threads[c].state == TaskState.INTERRUPTIBLE:
                self.irq_pending[c] = True
                self._wake(c)
                return

    def _arm_guest_timer(self, c: int) -> None:
        """While APF-halted, the guest's next tick fires (the vCPU is not idle: its tick runs
        under NO_HZ_IDLE too); the interrupt wakes the vCPU (``kvm_vcpu_has_events``, then
        ``vcpu_block`` clears apf.halted).  Without a tick (``guest.tick = "off"``) its timer
        fires at the slice end if it has another task to run there."""
        guest = self.kernel.scheduler
        if guest.tick_ns:
            when = next_tick(self.sim.now, guest.tick_ns)
        elif guest.cpus[c].queue:
            when = max(self.sim.now, guest.slice_end(c))
        else:
            return
        self.sim.at(when, self._guest_timer, c, self.halt_epoch[c], priority=Priority.URGENT)

    def _guest_timer(self, c: int, epoch: int) -> None:
        if epoch == self.halt_epoch[c]:
            self.ipi_halted(c)

    def ipi_halted(self, c: int) -> None:
        """An interrupt (the guest timer, a reschedule IPI) for vCPU ``c`` while its thread
        is out of guest mode: a vCPU halted in the host (APF halt, halt mode) becomes runnable
        (kvm_vcpu_kick; kvm_arch_vcpu_runnable: an injectable interrupt ends apf.halted); a
        thread stalled in a synchronous fault or waiting for a host CPU takes it at entry."""
        if self.vmode[c] == VcpuMode.STALLED and self.threads[c].state == TaskState.INTERRUPTIBLE:
            self.waiting_gfn[c] = -1
            self.irq_pending[c] = True
            self._wake(c)

    def _page_arrived(self, c: int, gfn: int) -> None:
        if self.waiting_gfn[c] == gfn and self.threads[c].is_sleeping:
            self.waiting_gfn[c] = -1
            self._wake(c)

    # ------------------------------------------------------------------ swap I/O

    def _write_back(self, evicted: list[tuple[int, int]], now: int) -> None:
        """Dirty victims go to swap; their frames are reusable when the write completes."""
        memory = self.memory
        dirty = [(gfn, frame) for gfn, frame in evicted if memory.needs_writeback(gfn)]
        if not dirty:
            return
        # the victims get consecutive swap slots: one clustered write request
        done = self.swap.submit(now, len(dirty), write=True)
        for gfn, frame in dirty:
            memory.frame_free_at[frame] = done
            memory.wrote_back(gfn)

    def _swap_in(self, gfn: int, now: int) -> int:
        """Read ``gfn`` (and its readahead cluster) from swap; returns the completion time."""
        memory = self.memory
        frame, evicted = memory.take_frame(now)
        self._write_back(evicted, now)
        start = max(now, int(memory.frame_free_at[frame]))
        memory.start_swapin(gfn, frame)
        batch = [gfn]
        for other in memory.readahead_candidates(gfn, self.swap_params.page_cluster):
            if not memory.has_free_frame():
                break
            extra, _ = memory.take_frame(now)
            start = max(start, int(memory.frame_free_at[extra]))
            memory.start_swapin(other, extra)
            batch.append(other)
        memory.readahead_pages += len(batch) - 1
        done = self.swap.submit(start, len(batch), write=False)
        self.sim.at(done, self._swap_in_done, batch, priority=Priority.URGENT)
        return done

    def _swap_in_done(self, batch: list[int]) -> None:
        memory = self.memory
        for i, gfn in enumerate(batch):
            waiters = self.io_waiters.pop(gfn, [])
            memory.finish_swapin(gfn, mapped=i == 0 or bool(waiters))
            for wake in waiters:
                wake()

    def dma_write(self, gfn: int) -> tuple[int, bool]:
        """The guest's virtual disk is about to read data into ``gfn`` (a read of the guest's
        swap or of a file).  With O_DIRECT (QEMU's ``cache=none``) the host takes the page
        before the device transfer: block/bio.c ``bio_iov_iter_get_pages`` →
        ``iov_iter_get_pages``, which calls ``get_user_pages_fast`` for writing when user
        memory is the destination, faulting the page in: a page the host swapped out is
        swapped in first, only to be overwritten (a "false read" of double paging: no vCPU waits, the
        guest's read starts when the page is in); a never-touched gfn is backed.  Returns
        (time the page can take the data, the host had swapped it)."""
        memory = self.memory
        now = self.sim.now
        where = int(memory.where[gfn])
        if where == NEVER:
            frame, evicted = memory.take_frame(now)
            self._write_back(evicted, now)
            memory.map_new(gfn, frame)
            return max(now, int(memory.frame_free_at[frame])), False
        if where == SWAPPED:
            self.false_reads += 1
        return self._dma_page(gfn, where, now)

    def backfill(self, gfn: int) -> None:
        """The guest's virtual disk wrote into ``gfn`` (its read completed): the page is dirty
        and its swap copy, if any, stale.  :meth:`dma_write` made it resident when the read
        was submitted; pfsim does not keep the page pinned during the transfer, so host
        reclaim may have evicted it meanwhile: it is then backed again without a read."""
        memory = self.memory
        where = int(memory.where[gfn])
        if where == NEVER:
            frame, evicted = memory.take_frame(self.sim.now)
            self._write_back(evicted, self.sim.now)
            memory.map_new(gfn, frame)
        elif where == SWAPCACHE:
            memory.map_cached(gfn)
        elif where == SWAPPED:
            frame, evicted = memory.take_frame(self.sim.now)
            self._write_back(evicted, self.sim.now)
            memory.free_slot(gfn)
            memory.map_new(gfn, frame)
        memory.dirty[gfn] = 1

    def balloon_inflate(self, gfns: np.ndarray) -> None:
        """virtio-balloon inflate queue: QEMU discards the pages (MADV_DONTNEED): their host
        frames and swap slots are freed with no I/O; a later touch is a first touch."""
        self.memory.discard(gfns)

    def dma_read(self, gfn: int) -> tuple[int, bool]:
        """The guest's virtual disk (the host I/O thread) reads ``gfn`` to write it out: a
        page the host swapped must be swapped in first (no vCPU waits; the guest's write
        starts when the page is in).  Returns (time the page is readable, it was swapped)."""
        now = self.sim.now
        where = int(self.memory.where[gfn])
        if where == NEVER:  # never touched: the host reads the zero page
            return now, False
        return self._dma_page(gfn, where, now)

    def _dma_page(self, gfn: int, where: int, now: int) -> tuple[int, bool]:
        """A touched page the host's I/O thread reads or writes for the guest's disk: mapped
        from the swap cache, swapped in first when swapped out (a host swap-in for guest I/O),
        one device latency when being read in already (its end is not kept).  Returns (when
        the page is usable, the host had it swapped out)."""
        memory = self.memory
        if where == SWAPCACHE:
            memory.map_cached(gfn)
            return now, True
        if where == SWAPPED:
            memory.host_major += 1
            self.guest_io_swap_ins += 1
            return self._swap_in(gfn, now), True
        if where == INIO:
            return now + self.swap_params.latency_ns, True
        return now, False

    # ------------------------------------------------------------------ results

    def apf_counters(self) -> dict[str, int]:
        return {**self.apf.counters(), "sync_fallbacks": self.sync_fallbacks,
                "apf_halts": self.halts}

    def result(self) -> dict[str, Any]:
        m = self.memory
        return {"evictions": m.evictions, "swap_ins": m.swap_ins, "swap_outs": m.swap_outs,
                "ept_violations": m.ept_violations, "host_minor_faults": m.host_minor,
                "host_major_faults": m.host_major, "readahead_pages": m.readahead_pages,
                "swap_ins_guest_io": self.guest_io_swap_ins, "false_reads": self.false_reads,
                "balloon_freed_frames": m.balloon_freed_frames,
                "balloon_freed_slots": m.balloon_freed_slots,
                "resident_frames": m.resident, "memory_limit_frames": m.limit,
                "swap_reads": self.swap.reads, "swap_writes": self.swap.writes,
                "swap_slots_used": m.swap_slots_used,
                "apf_halts": self.halts, "swap_device": self.config.hypervisor.swap.device,
                "reclaim": self.config.hypervisor.reclaim, "async_pf": self.mode,
                "inio_pages": int((m.where[:m.gfns_used] == INIO).sum()),
                "swapped_pages": int((m.where[:m.gfns_used] == SWAPPED).sum())}
