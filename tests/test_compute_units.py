"""Compute units are CPU work: a unit goes on where it stopped, across slice ends, preemptions
and interrupts, so a unit longer than a slice completes and an interrupted unit is not lost.

Each scenario runs guest-only (the reference executor) and under a hypervisor on both engines
(the compiled core and the reference), which must agree.
"""

from __future__ import annotations

import pytest
from helpers import run_dict

SWITCH_NS = 2_000  # guest.sched.context_switch default: one real switch (prev != next)

VARIANTS = [None, "compiled", "reference"]  # None: no hypervisor


def _run(data, engine):
    if engine is not None:
        data["hypervisor"] = {"enabled": True, "host_cpus": 1}
        data["sim"]["engine"] = engine
    return run_dict(data)


@pytest.mark.parametrize("policy", ["rr", "cfs"])
@pytest.mark.parametrize("engine", VARIANTS)
def test_a_unit_longer_than_the_slice_completes(policy, engine):
    """3 units of 7 ms on one thread, 3 ms slices: the thread keeps the CPU (nothing else is
    runnable), each slice end carries the unit in progress, and the step ends after exactly
    21 ms of work plus the one switch that put the thread on the CPU (2 us)."""
    data = {"sim": {"duration": "1s"},  # a bound, should the units never complete
            "guest": {"vcpus": 1, "sched": {"policy": policy, "timeslice": "3ms"}},
            "processes": [{"name": "p", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 3, "unit": "7ms"}]}]}]}
    result = _run(data, engine)
    assert result.processes["p"]["compute_units"] == 3
    assert result["sim_time_ns"] == 21_000_000 + SWITCH_NS
    assert result.vcpus[0]["busy_ns"] == 21_000_000 + SWITCH_NS


@pytest.mark.parametrize("policy", ["rr", "cfs"])
@pytest.mark.parametrize("engine", VARIANTS)
def test_seven_threads_of_1ms_units_on_one_vcpu_all_progress(policy, engine):
    """7 threads of 1 ms units share one vCPU for 500 ms.  The CPU is never idle, so the work
    done is 500 ms less the context switches, in whole units, less at most one unit in progress
    per thread at the end; every thread gets its share, within one slice's worth of units: a
    slice (cfs 6 ms / 7, rr 3 ms) ends on the next 4 ms tick (HZ 250), so 4 units."""
    data = {"sim": {"duration": "500ms"}, "guest": {"vcpus": 1, "sched": {"policy": policy}},
            "processes": [{"name": "p", "threads": [{"count": 7, "stack": False, "steps": [
                {"op": "compute", "duration": "10s", "unit": "1ms"}]}]}]}
    result = _run(data, engine)
    vcpu = result.vcpus[0]
    assert vcpu["busy_ns"] == 500_000_000
    units = [task["compute_units"] for task in result.tasks.values()]
    run_ns = 500_000_000 - vcpu["context_switches"] * SWITCH_NS
    assert run_ns // 1_000_000 - 7 <= sum(units) <= run_ns // 1_000_000
    assert max(units) - min(units) <= 4


@pytest.mark.parametrize("engine", VARIANTS)
def test_preempted_units_are_not_lost(engine):
    """Thread a computes 1 ms units; thread b sleeps 2 ms then computes 300 us, 15 times, and
    (CFS wake-up preemption) cuts a's unit in progress each time it wakes.  In 60 ms of a busy
    vCPU, a runs 60 ms - 15 x 300 us (b) - 2 us per context switch, so it completes
    floor((60 - 4.5 - 0.002 x switches) ms / 1 ms) units.  Dropping the cut partial units
    instead (as a truncation to whole units would) loses about a third of them."""
    b_steps = [{"op": "sleep", "duration": "2ms"},
               {"op": "compute", "units": 1, "unit": "300us"}] * 15
    data = {"sim": {"duration": "60ms"}, "guest": {"vcpus": 1},
            "processes": [
                {"name": "a", "threads": [{"stack": False, "steps": [
                    {"op": "compute", "duration": "1s", "unit": "1ms"}]}]},
                {"name": "b", "threads": [{"stack": False, "steps": b_steps}]}]}
    result = _run(data, engine)
    vcpu = result.vcpus[0]
    assert vcpu["busy_ns"] == 60_000_000
    assert result.processes["b"]["compute_units"] == 15
    a_ns = 60_000_000 - 15 * 300_000 - vcpu["context_switches"] * SWITCH_NS
    assert result.processes["a"]["compute_units"] == a_ns // 1_000_000 == 55
