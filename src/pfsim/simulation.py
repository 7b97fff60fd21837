"""The composition root: config → simulator, guest kernel → run → result dict.

This file shows the whole system on one page.  It wires the layers; it holds no model logic.
It chooses the guest's VMM (flat, or the ALMOS-MKH clusters) and the host's async-PF mode, and
injects them: the guest and the hypervisor never import each other, nor the cluster package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pfsim.config import Config, config_digest
from pfsim.config.cluster_checks import almos_enabled
from pfsim.engine import RandomStreams, Simulator
from pfsim.errors import InvariantViolation
from pfsim.footprint import check_resources
from pfsim.guest.flat_vmm import FlatVmm
from pfsim.guest.kernel import GuestKernel
from pfsim.guest.vmm import Vmm
from pfsim.machine.latency import as_result
from pfsim.machine.trace_records import OFF, TraceRecorder
from pfsim.sched import TaskState
from pfsim.small_pages import small_pages

if TYPE_CHECKING:
    from pfsim.hypervisor.host import Host

VERSION = "0.1.0"


def vmm_class(config: Config) -> type[Vmm]:
    """The guest's VMM: ALMOS-MKH page-table copies per cluster, or the flat page tables."""
    if almos_enabled(config):
        from pfsim.cluster.vmm import ClusterVmm  # only clustered runs load the cluster VMM

        return ClusterVmm
    return FlatVmm


class Simulation:
    """One run of one scenario."""

    def __init__(self, config: Config, recorder: TraceRecorder | None = None) -> None:
        check_resources(config)  # refuse a scenario too large before allocating anything
        with small_pages():  # NOTE: perf: no huge-page zeroing of sparse arrays (small_pages.py)
            self._build(config, recorder)

    def _build(self, config: Config, recorder: TraceRecorder | None) -> None:
        self.config = config
        self.sim = Simulator()
        self.streams = RandomStreams(config.sim.seed)
        self.kernel = GuestKernel(config, self.sim, self.streams, vmm_class(config))
        self.host: Host | None = None
        if config.hypervisor.enabled:
            # NOTE: perf: only runs with a host load it (and the async-PF modes): a plain
            # `pfsim run` starts faster (README, "Speed")
            from pfsim.apf_modes import MODES
            from pfsim.hypervisor.host import Host

            self.host = Host(config, self.sim, self.streams, self.kernel,
                             MODES[config.hypervisor.async_pf])
            self.kernel.executor.attach_host(self.host)
        self.recorder = OFF if recorder is None else recorder
        if self.recorder.on:  # --trace: every part that records gets the one array
            self.recorder.reset()
            parts: list[Any] = [self.kernel.scheduler, self.kernel.executor]
            if self.host is not None:
                parts += [self.host, self.host.sched, self.host.swap, self.host.apf]
            for part in parts:
                part.recorder = self.recorder

    def run(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Run to completion (or ``sim.duration``) and return the result dict."""
        with small_pages():
            return self._run(progress)

    def _run(self, progress: Callable[[int], None] | None) -> dict[str, Any]:
        self.engine_note: str | None = None
        if self.config.sim.engine == "compiled" and self.host is not None:
            from pfsim.compiled.run import Fallback, unsupported

            reason = unsupported(self.config)
            if reason is None:
                try:
                    return self._run_compiled(progress)
                except Fallback as why:
                    reason = str(why)
                    fresh = Simulation(self.config, self.recorder)  # the same run from the start
                    self.__dict__.update(fresh.__dict__)
            self.engine_note = f"reference path ({reason})"
        return self._run_reference(progress)

    def _run_compiled(self, progress: Callable[[int], None] | None) -> dict[str, Any]:
        from pfsim.compiled import machine
        from pfsim.compiled.run import CompiledRun, asleep_tasks, write_back
        from pfsim.sampling import CompiledReader

        run = CompiledRun(self)
        self.sampler = self._sampler(CompiledReader(run))
        run.run(progress, self.sampler)
        until = self.config.sim.duration
        end, pending = write_back(run)
        if until is not None and pending and not run.stopped:
            end = until  # the limit ended the run (a stopped workload ends at its last event)
        if not pending and self.kernel.outcome == "ok":
            asleep = asleep_tasks(run)
            if asleep:
                raise InvariantViolation(f"no event left but tasks still asleep (a lost wake-up): "
                                         f"{', '.join(asleep[:5])}")
        machine.truncate_all(run.view)
        write_back(run)
        assert self.host is not None
        self.host.memory.check()
        self.kernel.mem.check()
        self.engine_note = "compiled core"
        return self._result(end)

    def _run_reference(self, progress: Callable[[int], None] | None) -> dict[str, Any]:
        from pfsim.sampling import ReferenceReader, run_sampled

        until = self.config.sim.duration
        self.sampler = self._sampler(ReferenceReader(self))
        if self.sampler is None:
            end = self.sim.run(until_ns=until, progress=progress)
        else:
            end = run_sampled(self.sim, until, progress, self.sampler)
        if until is not None and self.sim.peek() is not None and not self.sim.stopped:
            end = until  # the limit ended the run (a stopped workload ends at its last event)
        if self.sim.peek() is None and self.kernel.outcome == "ok":
            asleep = [t.name for p in self.kernel.processes for t in p.threads if t.is_sleeping]
            if asleep:
                raise InvariantViolation(f"no event left but tasks still asleep (a lost wake-up): "
                                         f"{', '.join(asleep[:5])}")
        for cpu in range(self.config.guest.vcpus):  # work done up to the end of the run
            self.kernel.executor.truncate(cpu)
        if self.host is not None:
            self.host.memory.check()
        self.kernel.mem.check()
        return self._result(end)

    def _sampler(self, reader: Callable[[int], Any]) -> Any:
        """The time series of the run (``sim.sample``; 0: none)."""
        from pfsim.sampling import Sampler

        every = self.config.sim.sample
        return Sampler(every, reader) if every else None

    def _async_pf(self) -> dict[str, Any]:
        counters = {"mode": self.config.hypervisor.async_pf if self.host else "off",
                    "not_present": 0, "page_ready": 0, "early_completions": 0,
                    "sync_fallbacks": 0}
        if self.host is not None:
            counters.update(self.host.apf_counters())
        return counters

    def _result(self, end: int) -> dict[str, Any]:
        kernel = self.kernel
        processes: dict[str, Any] = {}
        tasks: dict[str, Any] = {}
        for process in kernel.processes:
            counters = process.counters().as_dict()
            processes[process.name] = {
                "pid": process.pid,
                **counters,
                "threads": len(process.threads),
                "exit": process.exit_reason or ("exited" if not process.alive else "running"),
                "signal": process.signal,
                "started_ns": process.started_ns,
                "exited_ns": process.exited_ns,
                "rss_pages": process.mm.rss,
                "parent": process.parent.name if process.parent is not None else None,
            }
            # the VMM's own entries (clusters: copies, reference cluster, page placement)
            processes[process.name].update(kernel.vmm.process_result(process))
            for task in process.threads:
                tasks[task.name] = {
                    "tid": task.tid,
                    "process": process.name,
                    **task.data.counters.as_dict(),
                    "state": "dead" if task.state == TaskState.DEAD else task.state.name.lower(),
                    "switches_in": task.switches_in,
                }
        sched = kernel.scheduler
        vcpus = []
        for rq in sched.cpus:
            if self.host is not None:
                times = self.host.vcpu_times(rq.index, end)
            else:
                idle = sched.idle_ns(rq.index, end)
                times = {"busy_ns": end - idle, "idle_ns": idle, "stalled_ns": 0, "steal_ns": 0}
            vcpus.append({"vcpu": rq.index, **times, "context_switches": rq.context_switches})
        vm = {
            "outcome": kernel.outcome,
            "panic": kernel.panic,
            "processes": processes,
            "tasks": tasks,
            "kernel_threads": {kt.name: kt.result() for kt in kernel.kthreads},
            "vcpus": vcpus,
            "async_pf": self._async_pf(),
            "memory": {
                "frames": kernel.mem.nframes,
                "free_frames": kernel.mem.free_frames,
                "frames_allocated_total": kernel.mem.allocated_total,
                "oom_kills": kernel.oom_kills,
                "disk_reads": kernel.disk.requests,
                "disk_pages_read": kernel.disk.pages_read,
                **(kernel.reclaim.result() if kernel.reclaim is not None else {}),
                **(kernel.balloon.result() if kernel.balloon is not None else {}),
            },
            "warnings": list(sched.warnings),
            "latency": as_result(kernel.latency),
        }
        clusters = kernel.vmm.vm_result()
        if clusters is not None:
            vm["clusters"] = clusters
        result = {
            "engine": self.config.sim.engine,
            "pfsim_version": VERSION,
            "seed": self.config.sim.seed,
            "config_digest": config_digest(self.config),
            "sim_time_ns": end,
            "events": self.sim.events_processed,
            "vms": {"vm0": vm},
            "host": (self.host.result() if self.host is not None else
                     {"evictions": 0, "swap_ins": 0, "swap_outs": 0, "ept_violations": 0}),
        }
        if self.sampler is not None:
            result["samples"] = self.sampler.result()
        return result
