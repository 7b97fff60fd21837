"""Runs guest tasks on vCPUs: steps, access segments, faults, blocking and exit.

A running task advances in *segments*: the compiled scan (:mod:`pfsim.machine.scan`, run by
the kernel's VMM, :mod:`pfsim.guest.vmm`) runs its
access stream from the current position until the first access the MMU refuses, the end of
the time slice, the end of the step or the end of the generated chunk.  One event marks the
segment's end; only then does Python see the task again (to handle the fault, preempt it...).
An interrupt in the middle of a segment (a kill, later a host stall) truncates it at the
current time: the accesses completed so far are those whose time has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.config.schema import AccessStep, ComputeStep, SleepStep, SyscallStep, TouchStep
from pfsim.engine import Priority
from pfsim.errors import InvariantViolation
from pfsim.guest.fault import Access, Action
from pfsim.guest.host_side import HostSide
from pfsim.guest.kthread import SLEEP, KernelThread
from pfsim.guest.process import Process
from pfsim.guest.steps import CHUNK, FOREVER, TaskExec  # noqa: F401  (re-exported)
from pfsim.machine.scan import (
    COST_ANON_PAGE,
    COST_COW_REUSE,
    COST_ENTRY,
    COST_ZERO_PAGE,
    LOG_ROWS,
    OUT_EPT,
    OUT_GFN,
    OUT_NLOG,
    OUT_REASON,
    OUT_SIZE,
    STOP_EPT,
    STOP_LIMIT,
    done_by,
)
from pfsim.machine.trace_records import (
    K_GUEST_FAULT,
    K_SCAN_FAULTS,
    OFF,
    TraceRecorder,
    record_fault_log,
)
from pfsim.machine.latency import MAJOR, MINOR
from pfsim.machine.latency import record as record_latency
from pfsim.machine.vmexit import Decision
from pfsim.sched import Task, TaskState
from pfsim.units import PAGE_SHIFT

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel

FAULT_LOG = 4096
"""Faults the compiled loop may resolve in one segment before returning to Python."""
_PROCESS_OPS = ("fork", "exit", "wait", "munmap", "exec")
"""Steps run by :class:`pfsim.guest.fork.ProcessOps`."""


def _nothing() -> None:
    """An interrupt whose handler only leads to schedule() (a reschedule IPI)."""


def _chain(handlers: list[Any]) -> Any:
    def run_all() -> None:
        for handler in handlers:
            handler()
    return run_all


@dataclass
class Segment:
    """The stretch a vCPU is running: ``count`` items of ``unit_ns`` each from ``t0``
    (accesses: plus the faults the compiled loop resolved, logged per vCPU; compute: up to
    ``count`` units, the first of which had ``spent0`` ns done already)."""

    texec: TaskExec
    t0: int
    pos0: int
    count: int
    unit_ns: int
    kind: str  # "access", "compute" or "kernel" (a kernel thread's CPU time, 1 ns units)
    fault: bool  # the item after the last one faults
    nlog: int = 0
    ept_gfn: int = -1  # the fault is an EPT violation on this gfn
    spent0: int = 0  # ns of the first unit (compute) or access's think run before t0


class VcpuExecutor:
    """The guest side of every vCPU: implements the scheduler's Executor protocol."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.sim = kernel.sim
        n = kernel.config.guest.vcpus
        self.epoch = [0] * n
        self.segment: list[Segment | None] = [None] * n
        self.halted = False
        self.out = np.zeros(OUT_SIZE, dtype=np.int64)
        self.recorder: TraceRecorder = OFF
        """Where guest faults are recorded when the run is traced."""
        self.log = [np.zeros((LOG_ROWS, FAULT_LOG), dtype=np.int64) for _ in range(n)]
        costs = kernel.config.guest.costs
        self.costs = np.zeros(4, dtype=np.int64)
        self.costs[COST_ENTRY] = costs.entry
        self.costs[COST_ZERO_PAGE] = costs.zero_page
        self.costs[COST_ANON_PAGE] = costs.anon_page
        self.costs[COST_COW_REUSE] = costs.cow_reuse
        self.zero_page = kernel.config.guest.mm.zero_page
        self.fast = kernel.config.guest.fast_faults
        self.host: HostSide | None = None
        """The host running the vCPUs (None without a hypervisor)."""
        self.paused = [False] * n
        self.owed = [0] * n  # fault-handling time still to spend when a paused vCPU resumes
        self.need_resched = [False] * n
        self.vcpu_halted = [False] * n
        """vCPUs stopped for good by an ALMOS-MKH KERNEL_PANIC (the rest of the VM goes on)."""
        self.pending_irqs: list[list[Any]] = [[] for _ in range(n)]
        self.held = [False] * n  # in the host until an injected event is delivered
        self.off_at = [-1] * n
        """When the vCPU last stopped running guest code (paused or held), -1 while it runs:
        a tick that came meanwhile is taken when it goes on (:meth:`_late_tick`)."""
        self.host_arrays = (np.zeros((4, 1), dtype=np.uint8), np.zeros((3, 1), dtype=np.int32),
                            np.zeros((3, 1), dtype=np.int32), np.zeros(1, dtype=np.int64),
                            np.zeros(8, dtype=np.int64))
        """The host's packed memory arrays the compiled loop updates (placeholders without a
        host)."""

    def attach_host(self, host: HostSide) -> None:
        """Run under ``host``: vCPUs run only while their threads have a host CPU."""
        self.host = host
        memory = host.memory
        self.host_arrays = (memory.gfn_bits, memory.gfn_links, memory.frames,
                            memory.frame_free_at, memory.small)
        self.paused = [True] * len(self.paused)
        sched = self.kernel.scheduler
        sched.on_idle = host.vcpu_idle
        sched.on_kick = host.vcpu_kick
        if self.kernel.config.guest.steal_time:  # kvm_steal_clock
            sched.steal_clock = host.steal_clock

    # ------------------------------------------------------------------ protocol

    def start(self, cpu: int, task: Task, now: int) -> None:
        """The scheduler put ``task`` on ``cpu``; it runs from ``now`` (or when the vCPU's
        thread next gets a host CPU)."""
        self.need_resched[cpu] = False  # __schedule: clear_tsk_need_resched
        if self.halted or self.vcpu_halted[cpu]:
            return
        if self.paused[cpu]:
            self.owed[cpu] = max(self.owed[cpu], now - self.sim.now)
            return
        owed, self.owed[cpu] = self.owed[cpu], 0  # host time left from the entry
        self._run(cpu, task.data, now + owed)

    # ------------------------------------------------------------------ host control

    def pause_vcpu(self, cpu: int) -> None:
        """The vCPU's thread leaves its host CPU: stop the guest here."""
        seg = self.segment[cpu]
        if seg is not None and seg.t0 > self.sim.now:
            self.owed[cpu] += seg.t0 - self.sim.now
        self.truncate(cpu)
        self.paused[cpu] = True
        if self.off_at[cpu] < 0:
            self.off_at[cpu] = self.sim.now

    def owe(self, cpu: int, ns: int) -> None:
        """The vCPU spends ``ns`` in the host before the guest goes on (when it resumes)."""
        self.owed[cpu] += ns

    def resume_vcpu(self, cpu: int, now: int) -> None:
        """The vCPU's thread runs again: the guest goes on where it stopped (after the
        interrupts that were pending for it)."""
        self.paused[cpu] = False
        if self.halted:
            return
        self.epoch[cpu] += 1
        if not self.host.entry_allowed(cpu):
            self.host.halt_at_entry(cpu)
            return
        pending, self.pending_irqs[cpu] = self.pending_irqs[cpu], []
        for handler in pending:
            handler()
        self._late_tick(cpu)
        sched = self.kernel.scheduler
        task = sched.current(cpu)
        owed, self.owed[cpu] = self.owed[cpu], 0
        if task is not None:
            self._run(cpu, task.data, now + owed)
        elif sched.cpus[cpu].queue:
            self.owed[cpu] = owed  # the task it picks starts after it (start)
            sched.schedule(cpu)
        else:
            self.host.vcpu_idle(cpu)

    def _late_tick(self, cpu: int) -> None:
        """The vCPU goes on running guest code: a tick that fell while it was out (preempted,
        stalled, halted or held in the host) is pending and taken now, after the interrupts
        and exceptions injected with it; it ends the current slice if that is used up by now
        (``scheduler_tick`` on the late timer interrupt; with steal time the steal reported
        at this entry is already off the slice)."""
        if self.paused[cpu]:  # a handler sent it back to the host: taken when it returns
            return
        off, self.off_at[cpu] = self.off_at[cpu], -1
        sched = self.kernel.scheduler
        tick = sched.tick_ns
        if tick and 0 <= off < self.sim.now // tick * tick \
                and sched.current(cpu) is not None and sched.slice_used(cpu, self.sim.now):
            self.need_resched[cpu] = True

    def preempt(self, cpu: int) -> None:
        """A woken task should run instead of ``cpu``'s current one (CFS wake-up preemption):
        need_resched now, acted on by a reschedule interrupt at once."""
        self.need_resched[cpu] = True
        self.sim.at(self.sim.now, self._resched_ipi, cpu, priority=Priority.URGENT)

    def _resched_ipi(self, cpu: int) -> None:
        if not self.need_resched[cpu] or self.kernel.scheduler.current(cpu) is None:
            return
        if self.halted or self.vcpu_halted[cpu] or self.held[cpu]:
            return  # acted on when the vCPU runs guest code again
        if self.paused[cpu]:  # the IPI reaches a vCPU the host holds: a halted one wakes
            if self.host is not None:
                self.host.ipi_halted(cpu)
            return
        self.pause_vcpu(cpu)  # stop the running stretch here
        self.paused[cpu] = False
        self.off_at[cpu] = -1
        self.need_resched[cpu] = False
        self.kernel.scheduler.schedule(cpu, preempted=True)

    def hold(self, cpu: int) -> None:
        """The vCPU stays in the host until :meth:`deliver_injected` (no guest code runs)."""
        self.held[cpu] = True
        if self.off_at[cpu] < 0:
            self.off_at[cpu] = self.sim.now

    def deliver_injected(self, cpu: int, handler: Any) -> None:
        """The vCPU re-enters the guest with an injected exception or interrupt: its handler
        runs first, then the interrupts that arrived meanwhile."""
        self.held[cpu] = False
        pending, self.pending_irqs[cpu] = self.pending_irqs[cpu], []
        if self.paused[cpu]:
            self.pending_irqs[cpu] = [handler, *pending]
            return
        self.interrupt(cpu, _chain([handler, *pending]), entry=True)

    def interrupt(self, cpu: int, handler: Any, entry: bool = False) -> None:
        """Deliver an interrupt to vCPU ``cpu`` now: stop its segment, run the guest
        ``handler``, go on (``entry``: the vCPU exits and re-enters, processing host requests)."""
        if self.halted or self.vcpu_halted[cpu]:
            return
        if self.paused[cpu] or self.held[cpu]:
            self.pending_irqs[cpu].append(handler)
            return
        off = self.off_at[cpu]  # set when it comes out of a hold
        self.pause_vcpu(cpu)
        self.paused[cpu] = False
        self.off_at[cpu] = off
        if entry and self.host is not None and not self.host.entry_allowed(cpu):
            self.pending_irqs[cpu].append(handler)
            self.host.halt_at_entry(cpu)
            return
        handler()
        self._late_tick(cpu)
        sched = self.kernel.scheduler
        task = sched.current(cpu)
        owed, self.owed[cpu] = self.owed[cpu], 0
        if task is not None:
            self._run(cpu, task.data, self.sim.now + owed)
        elif sched.cpus[cpu].queue:
            self.owed[cpu] = owed  # the task it picks starts after it (start)
            sched.schedule(cpu)

    def interrupts_enabled(self, cpu: int) -> bool:
        """Guest IF at the faulting instruction: user code and the fault paths run with
        interrupts on in this model."""
        return True

    # ------------------------------------------------------------------ the loop

    def _arm(self, cpu: int, time_ns: int, callback: Any, *args: Any) -> None:
        self.epoch[cpu] += 1
        self.sim.at(time_ns, callback, cpu, self.epoch[cpu], *args)

    def _run(self, cpu: int, texec: TaskExec, t: int) -> None:
        """Advance ``texec`` on ``cpu`` from time ``t`` until something needs an event."""
        sched = self.kernel.scheduler
        if self.held[cpu]:  # the host is about to inject an event: it resumes the guest
            return
        if self.need_resched[cpu]:  # set by an interrupt handler: schedule() on the way out
            sleeping = texec.task.is_sleeping
            if t == self.sim.now and self.owed[cpu] == 0:
                self.need_resched[cpu] = False
                self.epoch[cpu] += 1
                self.kernel.scheduler.schedule(cpu, preempted=not sleeping)
            else:
                self._arm(cpu, t, self._block if sleeping else self._slice_expired)
            return
        if texec.kthread:  # kswapd0, the balloon's kworker
            self._run_kthread(cpu, texec, t)
            return
        if texec.apf_wait:  # kvm_async_pf_task_wait_schedule's loop
            if texec.task.is_sleeping:  # interrupted on its way to schedule(): go on to it
                self._arm(cpu, t, self._block)
                return
            if not self.host.apf.task_resumes(texec.task):
                self._arm(cpu, t, self._block)
                return
            texec.apf_wait = False
        if texec.tried_slot >= 0:  # back from a read: the fault's retry
            t += self.kernel.vmm.woken_retry(texec)
        # the slice end (tick, steal) is fixed until the schedule() that ends this stretch
        slice_end = sched.slice_end(cpu)
        while True:
            if texec.step is None and not texec.next_step(t):
                self._arm(cpu, t, self._exit)
                return
            if t >= slice_end:
                self._arm(cpu, t, self._slice_expired)
                return
            step = texec.step
            if t >= texec.deadline or texec.remaining <= 0:
                texec.step = None
                continue
            limit = min(slice_end, texec.deadline)
            if isinstance(step, (AccessStep, SyscallStep)):
                if texec.pos >= len(texec.slots):
                    if not texec.refill():
                        texec.step = None
                        continue
                if texec.call_pending:
                    texec.call_pending = False
                    t += self.kernel.config.guest.syscall
                    continue
                mm = texec.process.mm
                if texec.generation != mm.generation:  # leaves freed since the translation
                    texec.slots = mm.slots_of(texec.vpns)
                    texec.generation = mm.generation
                end = len(texec.slots)
                if isinstance(step, AccessStep):
                    end = min(end, texec.pos + texec.remaining)
                t_end, stop = self._scan(cpu, texec, t, end, limit)
                count = stop - texec.pos
                reason = int(self.out[OUT_REASON])
                fault = reason != STOP_LIMIT
                ept_gfn = int(self.out[OUT_GFN]) if reason == STOP_EPT else -1
                if count == 0 and fault and t == self.sim.now:
                    t = self._fault(cpu, texec, t) if ept_gfn < 0 else self._host_fault(
                        cpu, texec, ept_gfn, t)
                    if t < 0:
                        return
                    continue
                if count == 0 and not fault:
                    if stop >= end:  # chunk or step consumed
                        continue
                    if t_end > t:  # the loop resolved a fault that ends past the limit (clusters)
                        t = t_end
                        continue
                    # the next access's think does not fit before the limit: run what fits
                    # and carry it (texec.spent), so a think longer than a slice completes
                    self.segment[cpu] = Segment(texec, t, texec.pos, 0, texec.think, "access",
                                                False, spent0=texec.spent)
                    self._arm(cpu, limit, self._segment_end)
                    return
                self.segment[cpu] = Segment(texec, t, texec.pos, count, texec.think, "access",
                                            fault, int(self.out[OUT_NLOG]), ept_gfn,
                                            spent0=texec.spent)
                self._arm(cpu, t_end, self._segment_end)
                return
            if isinstance(step, ComputeStep):
                # run until the last unit completes or the limit, whichever is first; a unit
                # cut by the limit is carried (texec.spent), so units longer than a slice end
                if (limit - t + texec.spent) // step.unit >= texec.remaining:
                    end = t + texec.remaining * step.unit - texec.spent
                else:
                    end = limit
                self.segment[cpu] = Segment(texec, t, 0, texec.remaining, step.unit, "compute",
                                            False, spent0=texec.spent)
                self._arm(cpu, end, self._segment_end)
                return
            if isinstance(step, TouchStep):
                if self.kernel.vmm.touches_in_time_order and t > self.sim.now:
                    self._arm(cpu, t, self._rerun)
                    return
                t = self._touch(cpu, texec, step, t)
                if t < 0:
                    return
                continue
            if isinstance(step, SleepStep):
                texec.step = None
                texec.task.state = TaskState.INTERRUPTIBLE
                self.sim.at(t + step.duration, self._timer_wake, texec.task, priority=Priority.URGENT)
                self._arm(cpu, t, self._block)
                return
            if step.op in _PROCESS_OPS:
                t = self.kernel.procs.run_step(cpu, texec, step, t)
                if t < 0:
                    return
                continue
            raise AssertionError(f"unhandled step {step!r}")

    def _run_kthread(self, cpu: int, kt: KernelThread, t: int) -> None:
        """Run kernel thread ``kt`` on ``cpu`` from ``t``: the rest of its current work's CPU
        time, then (at that time) its next piece of work, until it sleeps or its slice ends."""
        slice_end = self.kernel.scheduler.slice_end(cpu)
        while kt.owed_ns == 0:
            if t > self.sim.now:  # its work changes shared state: applied at its own time
                self._arm(cpu, t, self._rerun)
                return
            cost = kt.body()
            if cost == SLEEP:  # kswapd_try_to_sleep, msleep, or the work item is done
                kt.task.state = kt.sleep_state
                kt.sleep_state = TaskState.INTERRUPTIBLE
                self._arm(cpu, t, self._block)
                return
            kt.owed_ns = cost
        if t >= slice_end:
            self._arm(cpu, t, self._slice_expired)
            return
        self.segment[cpu] = Segment(kt, t, 0, kt.owed_ns, 1, "kernel", False)  # type: ignore[arg-type]
        self._arm(cpu, min(slice_end, t + kt.owed_ns), self._segment_end)

    def _scan(self, cpu: int, texec: TaskExec, t: int, end: int, limit: int) -> tuple[int, int]:
        """Run the VMM's compiled loop; it applies its fault counts at once."""
        if not self.recorder.on:
            return self.kernel.vmm.scan(cpu, texec, t, end, limit, self.out, self.log[cpu])
        before = texec.counters.min_flt
        t_end, stop = self.kernel.vmm.scan(cpu, texec, t, end, limit, self.out, self.log[cpu])
        if self.kernel.vmm.logs_faults:  # one row per fault, in compiled code
            record_fault_log(self.recorder.rec, self.recorder.meta, self.log[cpu],
                             int(self.out[OUT_NLOG]), cpu, texec.task.tid)
            return t_end, stop
        faults = texec.counters.min_flt - before  # the clusters' loop: their counts
        if faults or self.out[OUT_EPT]:
            self.recorder.add(t, K_SCAN_FAULTS, cpu, texec.task.tid, 0, faults, t_end,
                              int(self.out[OUT_EPT]))
        return t_end, stop

    # ------------------------------------------------------------------ events

    def _segment_end(self, cpu: int, epoch: int) -> None:
        if epoch != self.epoch[cpu]:
            return
        seg = self.segment[cpu]
        assert seg is not None
        self.segment[cpu] = None
        texec = seg.texec
        if seg.kind == "kernel":
            self._commit(seg, min(seg.count, max(0, self.sim.now - seg.t0)))
            self._run(cpu, texec, self.sim.now)
            return
        if seg.kind == "access":
            # a carry segment (count 0) ran part of one access; any other ended on a whole one
            texec.spent = seg.spent0 + self.sim.now - seg.t0 if seg.count == 0 else 0
            self._commit(seg, seg.count)
        else:
            self._commit(seg, self._units_by(seg, self.sim.now))
        t = self.sim.now
        if seg.fault:
            if seg.ept_gfn >= 0:
                t = self._host_fault(cpu, texec, seg.ept_gfn, t)
            else:
                t = self._fault(cpu, texec, t)
            if t < 0:
                return
        self._run(cpu, texec, t)

    def _commit(self, seg: Segment, done: int) -> None:
        texec = seg.texec
        if seg.kind == "kernel":  # ns of a kernel thread's work
            kt: KernelThread = texec  # type: ignore[assignment]
            kt.owed_ns -= done
            kt.cpu_ns += done
            return
        counters = texec.counters
        if seg.kind == "access":
            texec.pos = seg.pos0 + done
            counters.accesses += done
            counters.work += done
            if isinstance(texec.step, AccessStep):
                texec.remaining -= done
            elif texec.pos >= len(texec.slots):  # a syscall's copy finished
                texec.remaining -= 1
        else:
            counters.compute_units += done
            counters.work += done
            texec.remaining -= done

    @staticmethod
    def _units_by(seg: Segment, now: int) -> int:
        """Compute units of ``seg`` complete at ``now``; the part of the next one already run
        becomes ``texec.spent``."""
        total = seg.spent0 + max(0, now - seg.t0)
        done = min(seg.count, total // seg.unit_ns)
        seg.texec.spent = total - done * seg.unit_ns if done < seg.count else 0
        return done

    def _rerun(self, cpu: int, epoch: int) -> None:
        if epoch == self.epoch[cpu]:
            task = self.kernel.scheduler.current(cpu)
            if task is not None:
                self._run(cpu, task.data, self.sim.now)

    def _slice_expired(self, cpu: int, epoch: int) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.scheduler.schedule(cpu, preempted=True)

    def _block(self, cpu: int, epoch: int) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.scheduler.schedule(cpu, preempted=False)

    def _exit(self, cpu: int, epoch: int) -> None:
        if epoch != self.epoch[cpu]:
            return
        task = self.kernel.scheduler.current(cpu)
        assert task is not None
        task.state = TaskState.DEAD
        process = task.data.process
        self.kernel.procs.thread_exit(task.data)
        if process.all_dead():
            self.kernel.exit_process(process)
        self.kernel.scheduler.schedule(cpu)

    def _timer_wake(self, task: Task) -> None:
        if task.state == TaskState.INTERRUPTIBLE and not self.halted:
            self.kernel.scheduler.wake_up(task)

    def _kill_now(self, cpu: int, epoch: int, process: Process, reason: str, detail: dict[str, Any]) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.kill_process(process, reason, detail)

    def _panic_now(self, cpu: int, epoch: int, detail: dict[str, Any]) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.kernel_panic(detail)

    def _halt_now(self, cpu: int, epoch: int, detail: dict[str, Any]) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.halt_core(cpu, detail)

    # ------------------------------------------------------------------ faults

    def _fault(self, cpu: int, texec: TaskExec, t: int) -> int:
        """Handle the fault of the access at ``texec.pos``; the time to go on, or -1 if an
        event was armed instead (the task sleeps, dies, or the VM panics)."""
        slot = int(texec.slots[texec.pos])
        vpn = int(texec.vpns[texec.pos])
        write = bool(texec.writes[texec.pos])
        access = Access(addr=vpn << PAGE_SHIFT, write=write, fetch=texec.fetch, user=texec.user)
        # still refused now? another thread may have mapped it meanwhile
        if slot >= 0 and self.kernel.vmm.usable(cpu, texec, slot, write, texec.fetch, t):
            return t
        return self._handle(cpu, texec, access, t)

    def _host_fault(self, cpu: int, texec: TaskExec, gfn: int, t: int,
                    user: bool | None = None) -> int:
        """An EPT violation on ``gfn``: the time to go on, or -1 when the vCPU blocked."""
        write = bool(texec.writes[texec.pos]) if user is None else True
        decision, cost = self.host.ept_violation(cpu, gfn, write, texec.user if user is None else user)
        if decision is Decision.CONTINUE:
            self.host.charge_stall(cpu, cost)
            return t + cost
        return -1

    def _handle(self, cpu: int, texec: TaskExec, access: Access, t: int) -> int:
        faults = self.kernel.faults
        faults.touched.clear()
        counters = texec.counters
        minor, major = counters.min_flt, counters.maj_flt
        faults.stall_ns = 0
        result = self.kernel.vmm.exception(cpu, texec, access, t)
        after = t + result.cost_ns + faults.stall_ns
        if self.recorder.on:
            self.recorder.add(t, K_GUEST_FAULT, cpu, texec.task.tid,
                              faults.touched[0] if faults.touched else -1, 0, after)
        action = result.action
        if action is Action.RETRY:
            if self.host is not None:  # the kernel zeroed or copied frames: they need backing
                ept = self.host.memory.ept
                for gfn in faults.touched:
                    if not ept[gfn]:
                        after = self._host_fault(cpu, texec, gfn, after, user=False)
                        if after < 0:
                            return -1
            if texec.io_since >= 0:  # the retry of a fault that waited for I/O: from its first
                # attempt; major or minor as counted (a wait on a read another fault started
                # is a minor fault in Linux)
                kind = MAJOR if counters.maj_flt > texec.io_majors else MINOR
                record_latency(self.kernel.latency, kind, after - texec.io_since)
                texec.io_since = -1
            elif counters.maj_flt > major:
                record_latency(self.kernel.latency, MAJOR, after - t)
            elif counters.min_flt > minor:
                record_latency(self.kernel.latency, MINOR, after - t)
            return after
        if action is Action.WAIT_IO:
            assert result.request is not None
            if texec.io_since < 0:
                texec.io_since = t
                texec.io_majors = major
            result.request.waiters.append(texec.task)
            texec.task.state = TaskState.UNINTERRUPTIBLE
            self._arm(cpu, after, self._block)
            return -1
        if action is Action.EFAULT:
            if isinstance(texec.step, SyscallStep):  # the call returns -EFAULT; next call
                texec.remaining -= 1
                texec.pos = len(texec.slots)
            else:  # a kernel touch abandons its access
                texec.remaining = 0
            return after
        if action is Action.SIGSEGV:
            assert result.detail is not None
            self._arm(cpu, after, self._kill_now, texec.process, "segv", result.detail)
            return -1
        if action is Action.OOPS:
            assert result.detail is not None
            self._arm(cpu, after, self._panic_now, result.detail)
            return -1
        if action is Action.HALT:
            assert result.detail is not None
            self._arm(cpu, after, self._halt_now, result.detail)
            return -1
        # KILLED: the task died with its process (OOM) or the VM panicked
        return -1

    def _touch(self, cpu: int, texec: TaskExec, step: TouchStep, t: int) -> int:
        """One access at an absolute address; faults are handled like any other."""
        access = Access(addr=step.addr, write=step.write, fetch=False, user=step.mode == "user",
                        fixup=step.fixup)
        vmm = self.kernel.vmm
        for _attempt in range(4):
            if vmm.touch_allowed(cpu, texec, access, t):
                texec.step = None
                texec.remaining = 0
                texec.counters.accesses += 1
                texec.counters.work += 1
                return t + step.think
            t = self._handle(cpu, texec, access, t)
            if t < 0:
                return -1
            if texec.remaining <= 0:  # -EFAULT: abandoned
                texec.step = None
                return t
        raise InvariantViolation(f"touch of {access.addr:#x} still faults after its fault was handled")

    # ------------------------------------------------------------------ interrupts

    def truncate(self, cpu: int) -> None:
        """Stop ``cpu``'s segment now, keeping the work whose time has passed."""
        seg = self.segment[cpu]
        self.epoch[cpu] += 1
        if seg is None:
            return
        self.segment[cpu] = None
        now = self.sim.now
        if seg.kind == "kernel":
            done = min(seg.count, max(0, now - seg.t0))
        elif seg.kind == "compute":
            done = self._units_by(seg, now)
        elif now <= seg.t0:
            done = 0
        elif seg.count == 0:  # a carry segment: all of it goes to the access's think
            done = 0
            seg.texec.spent = seg.spent0 + now - seg.t0
        else:
            done, seg.texec.spent = done_by(now, seg.t0, seg.unit_ns, seg.spent0, seg.pos0,
                                            seg.pos0 + seg.count, self.log[cpu], seg.nlog)
        self._commit(seg, done)

    def kill_task(self, task: Task) -> None:
        """SIGKILL ``task`` wherever it is: running, queued or asleep."""
        texec: TaskExec = task.data
        texec.killed = True
        sched = self.kernel.scheduler
        if task.on_cpu and task.cpu is not None:
            cpu = task.cpu
            self.truncate(cpu)
            task.state = TaskState.DEAD
            self._arm(cpu, self.sim.now, self._resched_dead)
        elif task.state == TaskState.RUNNABLE:
            sched.dequeue(task)
            task.state = TaskState.DEAD
            task.put()
        elif task.is_sleeping:
            task.state = TaskState.DEAD
            task.put()

    def _resched_dead(self, cpu: int, epoch: int) -> None:
        if epoch == self.epoch[cpu]:
            self.kernel.scheduler.schedule(cpu)

    def halt_vcpu(self, cpu: int) -> None:
        """ALMOS-MKH KERNEL_PANIC: ``cpu`` sleeps forever with its current task on it."""
        self.truncate(cpu)
        self.vcpu_halted[cpu] = True
        self.kernel.scheduler.cpus[cpu].online = False

    def halt_all(self) -> None:
        """The VM panicked: every vCPU stops where it is."""
        self.halted = True
        for cpu in range(len(self.epoch)):
            self.truncate(cpu)
