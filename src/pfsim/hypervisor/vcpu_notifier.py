"""KVM's use of preempt notifiers: ``vcpu_load`` / ``vcpu_put`` around a vCPU thread's switches.

Mirrors virt/kvm/kvm_main.c (``vcpu_load``, ``vcpu_put``, ``kvm_sched_out``,
``kvm_sched_in``): between ``vcpu_load`` and ``vcpu_put`` the vCPU thread carries a notifier;
``kvm_sched_out`` marks the vCPU ``preempted`` and ``ready`` only when the thread was still
runnable (preempted, not blocking) and inside KVM_RUN, then puts the architecture state;
``kvm_sched_in`` clears both flags and loads the state on the (possibly new) CPU.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pfsim.errors import InvariantViolation
from pfsim.sched import PreemptNotifier, Scheduler, SwitchContext, Task


@dataclass
class KvmVcpu:
    """Host-side state of one vCPU that the notifier callbacks touch."""

    vcpu_id: int
    preempted: bool = False
    ready: bool = False
    scheduled_out: bool = False
    wants_to_run: bool = False
    loaded_cpu: int | None = None
    arch_loads: int = 0
    arch_puts: int = 0
    cpu_migrations: int = 0
    log: deque[tuple[str, int, bool, bool, bool]] = field(default_factory=lambda: deque(maxlen=64))
    """(callback, cpu, preempted after, irqs_disabled, rq_locked) of the last 64 callbacks."""


class KvmPreemptOps:
    """``kvm_preempt_ops``: ``kvm_sched_in`` / ``kvm_sched_out``."""

    def __init__(self, vcpu: KvmVcpu) -> None:
        self.vcpu = vcpu

    def sched_out(self, notifier: PreemptNotifier, next_task: Task | None, ctx: SwitchContext) -> None:
        vcpu = self.vcpu
        if not (ctx.irqs_disabled and ctx.rq_locked):
            raise InvariantViolation("kvm_sched_out must run with IRQs off and the rq lock held")
        vcpu.scheduled_out = True
        if ctx.prev_runnable and vcpu.wants_to_run:
            vcpu.preempted = True
            vcpu.ready = True
        vcpu.arch_puts += 1
        vcpu.log.append(("sched_out", ctx.cpu, vcpu.preempted, ctx.irqs_disabled, ctx.rq_locked))

    def sched_in(self, notifier: PreemptNotifier, cpu: int, ctx: SwitchContext) -> None:
        vcpu = self.vcpu
        if ctx.irqs_disabled or ctx.rq_locked:
            raise InvariantViolation("kvm_sched_in must run with IRQs on and the rq lock dropped")
        vcpu.preempted = False
        vcpu.ready = False
        vcpu.scheduled_out = False
        if vcpu.loaded_cpu is not None and vcpu.loaded_cpu != cpu:
            vcpu.cpu_migrations += 1
        vcpu.loaded_cpu = cpu
        vcpu.arch_loads += 1
        vcpu.log.append(("sched_in", cpu, vcpu.preempted, ctx.irqs_disabled, ctx.rq_locked))


def vcpu_load(scheduler: Scheduler, thread: Task, vcpu: KvmVcpu, notifier: PreemptNotifier,
              cpu: int) -> None:
    """``vcpu_load``: register the notifier on the vCPU thread and load state on ``cpu``."""
    scheduler.preempt_notifier_register(thread, notifier)
    vcpu.loaded_cpu = cpu
    vcpu.arch_loads += 1
    vcpu.wants_to_run = True


def vcpu_put(scheduler: Scheduler, vcpu: KvmVcpu, notifier: PreemptNotifier) -> None:
    """``vcpu_put``: put the architecture state and unregister the notifier."""
    vcpu.arch_puts += 1
    vcpu.wants_to_run = False
    scheduler.preempt_notifier_unregister(notifier)
