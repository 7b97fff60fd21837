"""Time series of a run: the counters every ``sim.sample`` interval, on both engines.

The event loop is stopped at each sample time ``T`` (``Simulator.run(until_ns=T)`` on the
reference path, the compiled core's ``until`` on the compiled one), the counters are read
without changing any state, and the run goes on: a stop runs no event and moves no event, so
the run with samples is the run without them (tests/test_sampling.py checks every counter of
result.json).

A sample at ``T`` holds what result.json would hold had the run ended at ``T`` (events at
exactly ``T`` not run, as ``sim.duration`` does): the work of the segment a vCPU is running is
counted up to ``T`` as the end of a run counts it (``VcpuExecutor.truncate``, read here without
truncating), vCPU times up to ``T`` as ``Host.vcpu_times`` counts them.  Faults are counted when
the executor resolves them; the per-access loop resolves the common minor faults of a segment
when the segment starts, so a sample may count some of the current segment's faults early (at
most one segment: up to the next slow fault or slice end), exactly as the final counters do.

Samples are taken at ``k * interval`` for k = 1, 2, ... while the run lasts (the last one at
``sim.duration`` when that is a multiple of the interval).  A run that would give more than
:data:`MAX_SAMPLES` samples keeps every other one and doubles the interval, as often as
needed, so a long run without ``sim.duration`` stays small.

:class:`ReferenceReader` reads the Python objects; :class:`CompiledReader` reads the compiled
core's arrays; they give the same numbers (the compiled-vs-reference tests compare the whole
result.json, samples included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.machine.hostmem_layout import S_NFREE
from pfsim.machine.scan import done_by

if TYPE_CHECKING:
    from pfsim.compiled.run import CompiledRun
    from pfsim.engine import Simulator
    from pfsim.simulation import Simulation

MAX_SAMPLES = 10_000
"""Most samples a run keeps (per series); beyond, the interval doubles."""

TASK_SERIES = ("work", "accesses", "min_flt", "maj_flt")
VCPU_SERIES = ("busy_ns", "stalled_ns", "idle_ns", "steal_ns")
HOST_SERIES = ("free_frames", "swap_ins", "swap_outs", "evictions", "ept_violations",
               "swap_busy_slots")
APF_SERIES = ("not_present", "page_ready")

Counters = dict[str, Any]
"""One sample: ``tasks`` {name: (work, accesses, min_flt, maj_flt)}, ``vcpus`` [(busy,
stalled, idle, steal)], ``guest_free_frames``, ``host`` (HOST_SERIES) and ``async_pf``
(APF_SERIES) tuples, the last two None without a hypervisor."""


def _in_flight(kind_access: bool, t: int, t0: int, pos0: int, count: int, unit: int,
               spent0: int, log: np.ndarray, nlog: int) -> int:
    """Items of a running segment done by ``t`` (``VcpuExecutor.truncate`` without the cut)."""
    if not kind_access:
        return min(count, (spent0 + max(0, t - t0)) // unit)
    if t <= t0 or count == 0:  # not started, or a carry segment (think only)
        return 0
    return int(done_by(t, t0, unit, spent0, pos0, pos0 + count, log, nlog)[0])


def _busy_slots(slots: Any, t: int) -> int:
    """Swap-device slots whose last request is still in flight at ``t``."""
    return int(sum(1 for free_at in slots if free_at > t))


class ReferenceReader:
    """The counters of a :class:`~pfsim.simulation.Simulation` on the reference path."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation

    def __call__(self, t: int) -> Counters:
        sim = self.simulation
        kernel, host = sim.kernel, sim.host
        executor = kernel.executor
        extra: dict[int, tuple[int, int]] = {}  # id(texec) -> (work, accesses) in flight
        for cpu, seg in enumerate(executor.segment):
            if seg is None or seg.kind == "kernel":  # a kernel thread: no task's counters
                continue
            done = _in_flight(seg.kind == "access", t, seg.t0, seg.pos0, seg.count,
                              seg.unit_ns, seg.spent0, executor.log[cpu], seg.nlog)
            extra[id(seg.texec)] = (done, done if seg.kind == "access" else 0)
        tasks = {}
        for process in kernel.processes:
            for task in process.threads:
                c = task.data.counters
                work, accesses = extra.get(id(task.data), (0, 0))
                tasks[task.name] = (c.work + work, c.accesses + accesses, c.min_flt, c.maj_flt)
        vcpus = []
        for rq in kernel.scheduler.cpus:
            if host is not None:
                v = host.vcpu_times(rq.index, t)
                vcpus.append(tuple(v[k] for k in VCPU_SERIES))
            else:
                idle = kernel.scheduler.idle_ns(rq.index, t)
                vcpus.append((t - idle, 0, idle, 0))
        out: Counters = {"tasks": tasks, "vcpus": vcpus,
                         "guest_free_frames": kernel.mem.free_frames, "host": None,
                         "async_pf": None}
        if host is not None:
            m = host.memory
            out["host"] = (int(m.small[S_NFREE]), m.swap_ins, m.swap_outs, m.evictions,
                           m.ept_violations, _busy_slots(host.swap._slots, t))
            apf = host.apf_counters()
            out["async_pf"] = tuple(apf.get(k, 0) for k in APF_SERIES)
        return out


class CompiledReader:
    """The same counters read from the compiled core's arrays (:mod:`pfsim.compiled.state`)."""

    def __init__(self, run: CompiledRun) -> None:
        self.run = run

    def __call__(self, t: int) -> Counters:
        from pfsim.compiled import apf_kvm, apf_s390
        from pfsim.compiled import state as S

        run = self.run
        m = run.m
        tx, vc, pr = m.tx, m.vc, m.pr
        extra: dict[int, tuple[int, int]] = {}
        for cpu in range(int(m.g[S.G_NV])):
            if not vc[S.VC_SEG, cpu]:
                continue
            access = bool(vc[S.VC_SEG_ACCESS, cpu])
            done = _in_flight(access, t, int(vc[S.VC_SEG_T0, cpu]), int(vc[S.VC_SEG_POS0, cpu]),
                              int(vc[S.VC_SEG_COUNT, cpu]), int(vc[S.VC_SEG_UNIT, cpu]),
                              int(vc[S.VC_SEG_SPENT0, cpu]), m.flog[cpu],
                              int(vc[S.VC_SEG_NLOG, cpu]))
            extra[int(vc[S.VC_SEG_TASK, cpu])] = (done, done if access else 0)
        tasks = {}
        for k, process in enumerate(run.processes):
            if not pr[S.PR_ALIVE, k] and pr[S.PR_EXITED_NS, k] < 0:
                continue  # not spawned yet
            t0 = int(pr[S.PR_T0, k])
            for t_id in range(t0, t0 + int(pr[S.PR_NT, k])):
                work, accesses = extra.get(t_id, (0, 0))
                tasks[run.guest_tasks[t_id].name] = (
                    int(tx[S.TX_WORK, t_id]) + work, int(tx[S.TX_ACCESSES, t_id]) + accesses,
                    int(tx[S.TX_MIN_FLT, t_id]), int(tx[S.TX_MAJ_FLT, t_id]))
        vcpus = []
        for c in range(int(m.g[S.G_NV])):  # Host.vcpu_times
            times = [int(vc[S.VC_TIME_RUNNING + k, c]) for k in range(4)]
            times[int(vc[S.VC_VMODE, c])] += t - int(vc[S.VC_SINCE, c])
            charge = min(int(vc[S.VC_CHARGED_STALL, c]), times[S.VM_RUNNING])
            vcpus.append((times[S.VM_RUNNING] - charge, times[S.VM_STALLED] + charge,
                          times[S.VM_IDLE], times[S.VM_PREEMPTED]))
        hm = m.hm
        host = (int(m.hsmall[S_NFREE]), int(hm[S.HM_SWAP_INS]), int(hm[S.HM_SWAP_OUTS]),
                int(hm[S.HM_EVICTIONS]), int(hm[S.HM_EPT_VIOLATIONS]),
                _busy_slots(m.swq[:int(m.sw[S.SW_QD])], t))
        mode = int(m.g[S.G_MODE])
        apf = (0, 0)
        if mode == S.MODE_KVM:  # apf_kvm.kvm_counters / apf_s390.s390_counters, two of them
            apf = (int(m.kvm[apf_kvm.ST_SC][apf_kvm.SC_NOT_PRESENT]), int(hm[S.HM_PAGE_READY]))
        elif mode == S.MODE_S390:
            sc = m.s390[apf_s390.ST_SC]
            apf = (int(sc[apf_s390.SC_INIT_COUNT]), int(sc[apf_s390.SC_DONE_COUNT]))
        return {"tasks": tasks, "vcpus": vcpus, "guest_free_frames": int(m.gnfree[0]),
                "host": host, "async_pf": apf}


class Sampler:
    """Collects samples as columns and decides the next stop.

    Args:
        interval_ns: ``sim.sample`` (> 0).
        read: the reader of the counters at a time (:class:`ReferenceReader` or
            :class:`CompiledReader`).
    """

    def __init__(self, interval_ns: int, read: Callable[[int], Counters]) -> None:
        self.interval = interval_ns
        self.read = read
        self.next_time = interval_ns
        self.t: list[int] = []
        self.tasks: dict[str, list[list[int]]] = {}
        self.vcpus: list[list[list[int]]] = []
        self.guest_free: list[int] = []
        self.host: list[list[int]] | None = None
        self.apf: list[list[int]] | None = None

    def take(self, t: int) -> None:
        """Record the counters at ``t`` (= :attr:`next_time`) and move to the next stop."""
        counters = self.read(t)
        n = len(self.t)
        self.t.append(t)
        for name, values in counters["tasks"].items():
            columns = self.tasks.get(name)
            if columns is None:  # spawned since the last sample: zeros before
                columns = self.tasks[name] = [[0] * n for _ in TASK_SERIES]
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        for columns in self.tasks.values():  # a task gone from the list keeps its last value
            if len(columns[0]) == n:
                for column in columns:
                    column.append(column[-1] if column else 0)
        if not self.vcpus:
            self.vcpus = [[[] for _ in VCPU_SERIES] for _ in counters["vcpus"]]
        for columns, values in zip(self.vcpus, counters["vcpus"], strict=True):
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        self.guest_free.append(counters["guest_free_frames"])
        for attr, series in (("host", HOST_SERIES), ("apf", APF_SERIES)):
            values = counters["host" if attr == "host" else "async_pf"]
            if values is None:
                continue
            if getattr(self, attr) is None:
                setattr(self, attr, [[] for _ in series])
            for column, value in zip(getattr(self, attr), values, strict=True):
                column.append(value)
        if len(self.t) >= MAX_SAMPLES:
            self._thin()
        self.next_time = (t // self.interval + 1) * self.interval

    def _thin(self) -> None:
        """Keep the samples at multiples of twice the interval; double the interval."""
        self.interval *= 2
        keep = [i for i, t in enumerate(self.t) if t % self.interval == 0]

        def cut(column: list[int]) -> list[int]:
            return [column[i] for i in keep]

        self.t = cut(self.t)
        self.guest_free = cut(self.guest_free)
        for columns in [*self.tasks.values(), *self.vcpus, self.host or [], self.apf or []]:
            if columns and isinstance(columns[0], list):
                columns[:] = [cut(c) for c in columns]

    def result(self) -> dict[str, Any]:
        """The ``samples`` entry of result.json (columns: one list per series)."""
        out: dict[str, Any] = {
            "interval_ns": self.interval,
            "t_ns": self.t,
            "tasks": {name: dict(zip(TASK_SERIES, columns, strict=True))
                      for name, columns in self.tasks.items()},
            "vcpus": [dict(zip(VCPU_SERIES, columns, strict=True)) for columns in self.vcpus],
            "guest_free_frames": self.guest_free,
        }
        if self.host is not None:
            out["host"] = dict(zip(HOST_SERIES, self.host, strict=True))
        if self.apf is not None:
            out["async_pf"] = dict(zip(APF_SERIES, self.apf, strict=True))
        return out


def run_sampled(sim: Simulator, until: int | None, progress: Callable[[int], None] | None,
                sampler: Sampler) -> int:
    """``sim.run(until_ns=until)`` stopping at every sample time; returns the end clock."""
    while True:
        stop = sampler.next_time if until is None else min(sampler.next_time, until)
        end = sim.run(until_ns=stop, progress=progress)
        if sim.stopped or sim.peek() is None:
            return end  # the run ended before the stop
        if stop == sampler.next_time:
            sampler.take(stop)
        if until is not None and stop == until:
            return end
        if progress is not None:  # a stretch between samples may be shorter than the
            progress(stop)        # events between two calls of sim.run's own
