"""An access's ``think`` is CPU work like a compute unit: when it is longer than what is left
of a slice it is carried across slice ends (and interrupts), so it completes.  Before, the
scan refused to start an access that would end past the slice end and burnt the rest of the
slice, so a think longer than a slice never completed (``think = "6001us"`` with the 6 ms CFS
period ran forever).

Each scenario runs guest-only (the reference executor), under a hypervisor on both engines,
and on the cluster VMM (its own compiled loop); they must agree with the hand count.
"""

from __future__ import annotations

import pytest
from helpers import run_dict

SWITCH_NS = 2_000  # guest.sched.context_switch: the one switch that puts the thread on the CPU
ANON_FAULT_NS = 300 + 1_500  # guest.costs.entry + anon_page: the first write to the page
HOST_FIRST_TOUCH_NS = 2_500 + 1_500  # hypervisor.costs.ept_violation + host_fault

VARIANTS = [None, "compiled", "reference", "clusters"]


def _run(data, variant):
    if variant == "clusters":  # two clusters of one vCPU; the thread on vCPU 0
        data["guest"].update(vcpus=2, clusters=2)
        for process in data["processes"]:
            for group in process["threads"]:
                group["cpu"] = 0
    elif variant is not None:
        data["hypervisor"] = {"enabled": True, "host_cpus": 1}
        data["sim"]["engine"] = variant
    return run_dict(data)


def _one_page(steps, policy="cfs", timeslice="3ms", duration="1s"):
    return {"sim": {"duration": duration},
            "guest": {"vcpus": 1, "sched": {"policy": policy, "timeslice": timeslice}},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "4KiB"}],
                           "threads": [{"stack": False, "steps": steps}]}]}


@pytest.mark.parametrize("policy", ["rr", "cfs"])
@pytest.mark.parametrize("variant", [None, "compiled", "reference"])  # clusters: own fault costs
def test_an_access_think_longer_than_the_slice_completes(policy, variant):
    """3 writes to one page, 7 ms of think each, 3 ms slices (rr) or the 6 ms CFS period: the
    thread keeps the CPU, the first write faults once (anonymous page), and the step ends
    after exactly 3 x 7 ms of think plus the fault and the one switch."""
    data = _one_page([{"op": "access", "vseg": "h", "accesses": 3, "think": "7ms",
                       "write_ratio": 1.0}], policy=policy)
    result = _run(data, variant)
    host = HOST_FIRST_TOUCH_NS if variant in ("compiled", "reference") else 0
    assert result.processes["p"]["accesses"] == 3
    assert result.processes["p"]["min_flt"] == 1
    assert result["sim_time_ns"] == 21_000_000 + ANON_FAULT_NS + host + SWITCH_NS
    # the host's time on the vCPU's behalf (the EPT violation) is stalled, not busy
    assert result.vcpus[0]["busy_ns"] == 21_000_000 + ANON_FAULT_NS + SWITCH_NS
    assert result.vcpus[0].get("stalled_ns", 0) == host


@pytest.mark.parametrize("variant", VARIANTS)
def test_think_of_6001us_ends_like_6ms(variant):
    """The case that hung: 6001 us does not fit a 6 ms CFS period.  Now 10 accesses of
    6001 us end 10 us after 10 accesses of 6 ms (the same faults, the same one switch)."""
    ends = []
    for think in ("6ms", "6001us"):
        data = _one_page([{"op": "access", "vseg": "h", "accesses": 10, "think": think}],
                         duration="10s")
        result = _run(data, variant)
        assert result.processes["p"]["accesses"] == 10
        ends.append(result["sim_time_ns"])
    assert ends[1] - ends[0] == 10 * 1_000


@pytest.mark.parametrize("variant", [None, "compiled", "reference"])
def test_seven_threads_with_long_think_all_progress(variant):
    """7 threads reading one page each with 1 ms of think share one vCPU for 500 ms (CFS: a
    slice of 6 ms / 7 < 1 ms, so before the fix no access ever completed).  The vCPU is never
    idle and every thread completes its share: the accesses done are the CPU time less the
    switches and the faults, in whole accesses, less at most one in progress per thread; the
    threads' shares differ by at most one slice's worth (a slice ends on the next 4 ms tick at
    HZ 250: 4 accesses)."""
    data = {"sim": {"duration": "500ms"}, "guest": {"vcpus": 1},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "4KiB"}],
                           "threads": [{"count": 7, "stack": False, "steps": [
                               {"op": "access", "vseg": "h", "duration": "10s",
                                "think": "1ms"}]}]}]}
    result = _run(data, variant)
    vcpu = result.vcpus[0]
    assert vcpu["busy_ns"] == 500_000_000
    done = [task["accesses"] for task in result.tasks.values()]
    run_ns = 500_000_000 - vcpu["context_switches"] * SWITCH_NS
    assert run_ns // 1_000_000 - 8 <= sum(done) <= run_ns // 1_000_000
    assert min(done) > 0 and max(done) - min(done) <= 4
