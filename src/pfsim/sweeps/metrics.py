"""The headline metrics of a point: one number per result.json quantity a sweep tabulates.

Each is computed from a point's result.json alone (docs/results.md names every source field),
summed over the VMs and their processes; the vCPU shares are percentages of the vCPUs' total
time (``sim_time_ns`` times the number of vCPUs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    """``int``, ``float`` or ``str``."""
    about: str


HEADLINE: tuple[Metric, ...] = (
    Metric("outcome", "str", "ok, or the first VM outcome that is not (kernel_panic)"),
    Metric("sim_time_ns", "int", "simulated time at the end of the run"),
    Metric("events", "int", "events processed"),
    Metric("work", "int", "completed accesses plus compute units, all processes"),
    Metric("accesses", "int", "completed accesses, all processes"),
    Metric("compute_units", "int", "completed compute units, all processes"),
    Metric("min_flt", "int", "minor faults, all processes"),
    Metric("maj_flt", "int", "major faults, all processes"),
    Metric("segv", "int", "SIGSEGV delivered, all processes"),
    Metric("busy_pct", "float", "vCPU time in guest code, percent"),
    Metric("stalled_pct", "float",
           "vCPU time in the host (faults, swap waits, APF halts), percent"),
    Metric("idle_pct", "float", "vCPU time with nothing to run, percent"),
    Metric("steal_pct", "float", "vCPU time runnable without a host CPU, percent"),
    Metric("context_switches", "int", "guest context switches, all vCPUs"),
    Metric("ept_violations", "int", "host: guest accesses to frames the EPT did not map"),
    Metric("swap_ins", "int", "host: pages read from swap"),
    Metric("swap_outs", "int", "host: pages written to swap"),
    Metric("evictions", "int", "host: pages reclaimed"),
    Metric("not_present", "int", "async PF: page-not-present / initial interrupts"),
    Metric("page_ready", "int", "async PF: page-ready / completion interrupts"),
    Metric("sync_fallbacks", "int", "async PF: host faults the mode could not make asynchronous"),
)
TIMING: tuple[Metric, ...] = (
    Metric("wall_s", "float", "wall time of the simulation on its worker, seconds"),
    Metric("cpu_s", "float", "CPU time of the simulation on its worker, seconds"),
)
NUMERIC = tuple(m.name for m in HEADLINE + TIMING if m.kind != "str")
DEFAULT_SUMMARY = ("work", "busy_pct", "stalled_pct", "min_flt", "swap_ins", "wall_s")

_PROCESS_SUMS = ("work", "accesses", "compute_units", "min_flt", "maj_flt", "segv")
_APF = ("not_present", "page_ready", "sync_fallbacks")
_HOST = ("ept_violations", "swap_ins", "swap_outs", "evictions")
_SHARES = (("busy_pct", "busy_ns"), ("stalled_pct", "stalled_ns"), ("idle_pct", "idle_ns"),
           ("steal_pct", "steal_ns"))


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The headline metrics of one result.json (as a parsed dict)."""
    row: dict[str, Any] = {name: 0 for name in (*_PROCESS_SUMS, *_APF, "context_switches")}
    outcome = "ok"
    spent = {field: 0 for _name, field in _SHARES}
    vcpus = 0
    for vm in result["vms"].values():
        if outcome == "ok" and vm["outcome"] != "ok":
            outcome = vm["outcome"]
        for process in vm["processes"].values():
            for name in _PROCESS_SUMS:
                row[name] += process[name]
        for vcpu in vm["vcpus"]:
            vcpus += 1
            row["context_switches"] += vcpu["context_switches"]
            for field in spent:
                spent[field] += vcpu.get(field, 0)
        for name in _APF:
            row[name] += vm["async_pf"][name]
    span = max(1, result["sim_time_ns"] * vcpus)
    for name, field in _SHARES:
        row[name] = 100.0 * spent[field] / span
    for name in _HOST:
        row[name] = result["host"][name]
    row["outcome"] = outcome
    row["sim_time_ns"] = result["sim_time_ns"]
    row["events"] = result["events"]
    return {m.name: row[m.name] for m in HEADLINE}
