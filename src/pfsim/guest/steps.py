"""What a guest task is doing: its program of steps and its position in the current one.

:class:`TaskExec` holds a task's steps, the state of the step it is in (deadline, what is
left, the generated access stream translated to page-table slots), its fault counters, and
prepares each step and each chunk of its stream; :mod:`pfsim.guest.executor` runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.config.schema import AccessStep, ComputeStep, SleepStep, SyscallStep, TouchStep
from pfsim.guest.mm import Vma
from pfsim.guest.process import Counters, Process
from pfsim.guest.trace_steps import trace_page_ids
from pfsim.sched import Task
from pfsim.units import PAGE_SHIFT, PAGE_SIZE
from pfsim.workload.patterns import PatternStream

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel

CHUNK = 1 << 16
"""Accesses generated at a time per access step (bounds memory on long runs)."""
FOREVER = 1 << 62


class TaskExec:
    """What one guest task is doing: its program, its position in it, its counters."""

    kthread = False
    """A user task (:class:`pfsim.guest.kthread.KernelThread` has True)."""

    def __init__(self, kernel: GuestKernel, task: Task, process: Process, steps: list[Any],
                 stack: Vma | None, index: int, member: tuple[int, int] = (0, 1)) -> None:
        self.kernel = kernel
        self.task = task
        self.process = process
        self.steps = steps
        self.stack = stack
        self.index = index
        self.member, self.group_size = member
        self.counters = Counters()
        self.step_index = -1
        self.step: Any = None
        self.tried_slot = -1
        self.tried_major = False
        """The wait before the retry on ``tried_slot`` was for a read this fault started."""
        self.killed = False
        self.apf_wait = False  # slept for an x86 async PF: run the wait loop when resumed
        self.apf_since = -1  # when an async PF put it to sleep (the latency histogram's start)
        self.io_since = -1  # when a fault first waited for I/O (the latency histogram's start)
        self.io_majors = 0  # maj_flt before that fault
        # current step
        self.deadline = FOREVER
        self.remaining = FOREVER  # accesses, units or calls left
        # ns already run of the compute unit, or of the access's think, in progress.  Both are
        # CPU work, so they go on where they stopped: across slice ends, preemptions and
        # interrupts (an access makes its memory reference when its last part runs).
        self.spent = 0
        self.stream: PatternStream | None = None
        self.slots = np.zeros(0, dtype=np.int32)
        self.generation = 0  # the address space's generation when ``slots`` were translated
        self.writes = np.zeros(0, dtype=np.bool_)
        self.vpns = np.zeros(0, dtype=np.int64)
        self.pos = 0
        self.think = 1
        self.user = True
        self.fetch = False
        self.base_vpn = 0
        self.call_pending = False  # syscall: entry cost not yet paid for the current call

    @property
    def tid(self) -> int:
        return self.task.tid

    def next_step(self, t: int) -> bool:
        """Start the next step at time ``t``; False when the program is over."""
        texec = self
        texec.step_index += 1
        if texec.step_index >= len(texec.steps):
            return False
        step = texec.steps[texec.step_index]
        texec.step = step
        texec.deadline = FOREVER
        texec.remaining = FOREVER
        texec.spent = 0
        texec.pos = 0
        texec.slots = np.zeros(0, dtype=np.int32)
        texec.writes = np.zeros(0, dtype=np.bool_)
        texec.stream = None
        texec.call_pending = False
        if isinstance(step, AccessStep):
            if step.duration is not None:
                texec.deadline = t + step.duration
            if step.accesses is not None:
                texec.remaining = step.accesses
            texec.stream, texec.base_vpn = self.access_stream(step, texec.step_index)
            texec.think = step.think
            texec.user = True
            texec.fetch = step.fetch
        elif isinstance(step, ComputeStep):
            if step.duration is not None:
                texec.deadline = t + step.duration
            if step.units is not None:
                texec.remaining = step.units
        elif isinstance(step, SyscallStep):
            texec.remaining = step.repeat
            texec.think = self.kernel.config.guest.copy_page
            texec.user = False
            texec.fetch = False
        elif isinstance(step, (TouchStep, SleepStep)):
            texec.remaining = 1
        return True

    def access_stream(self, step: AccessStep, step_index: int) -> tuple[PatternStream, int]:
        """The access stream of step ``step_index`` (its own named random stream) and the
        page number its offsets are relative to."""
        start, length = self.step_range(step)
        base_vpn = start >> PAGE_SHIFT
        npages = ((start + length - 1) >> PAGE_SHIFT) - base_vpn + 1
        rng = self.kernel.streams.generator(f"access/{self.process.name}/{self.index}/{step_index}")
        trace = trace_page_ids(step.trace) if step.trace is not None else None
        stream = PatternStream(step.pattern, npages, rng, step.write_ratio, length_bytes=length,
                               stride=step.stride, alpha=step.alpha,
                               hot_fraction=step.hot_fraction,
                               hot_probability=step.hot_probability, phase=step.phase,
                               offset_bytes=start & (PAGE_SIZE - 1), trace=trace)
        return stream, base_vpn

    def step_range(self, step: AccessStep | SyscallStep) -> tuple[int, int]:
        """(start address, length in bytes) of the range ``step`` works on for this task."""
        texec = self
        if step.vseg is not None:
            vma = texec.stack if step.vseg == "@stack" else next(
                v for v in texec.process.mm.vmas if v.name == step.vseg)
            assert vma is not None
            # after its munmap a VMA is empty (start == end) but its old range is still what
            # the program's pointers hold: the accesses go there and fault (SEGV_MAPERR)
            base = vma.reserve_start if vma.start >= vma.end and vma.type != "stack" else vma.start
            start = base + step.offset
            length = step.length if step.length is not None else vma.end - start
        else:
            assert step.addr is not None and step.length is not None
            start, length = step.addr, step.length
        if step.split and texec.group_size > 1:
            share = (length // texec.group_size) & ~(PAGE_SIZE - 1)
            if share == 0:
                share = PAGE_SIZE
            start += min(texec.member * share, max(0, length - share))
            length = share
        return start, length

    def refill(self) -> bool:
        texec = self
        """Generate the next chunk of the current step's stream; False when the step is done."""
        step = texec.step
        mm = texec.process.mm
        if isinstance(step, AccessStep):
            assert texec.stream is not None
            n = CHUNK if texec.remaining >= FOREVER else min(CHUNK, texec.remaining)
            pages, stores = texec.stream.next_chunk(n)
            texec.vpns = pages + texec.base_vpn
            texec.slots = mm.slots_of(pages, texec.base_vpn)
            texec.generation = mm.generation
            texec.writes = stores
            texec.pos = 0
            return True
        if isinstance(step, SyscallStep):
            if texec.remaining <= 0:
                return False
            start, length = self.step_range(step)
            vpns = np.arange(start >> PAGE_SHIFT, ((start + length - 1) >> PAGE_SHIFT) + 1)
            texec.vpns = vpns
            texec.slots = mm.slots_of(vpns)
            texec.generation = mm.generation
            texec.writes = np.full(len(vpns), step.kind == "read", dtype=np.bool_)
            texec.base_vpn = int(vpns[0])
            texec.pos = 0
            texec.call_pending = True
            return True
        return False
