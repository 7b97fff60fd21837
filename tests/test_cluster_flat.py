"""clusters = 1 is the flat kernel of the foundation issue, unchanged.

* With one cluster (``model = "auto"``) the cluster machinery is not built: the flat page
  table and the flat fault handler run, whatever ``[guest.vmm]`` says.  Changing every
  ``guest.vmm`` key (mesh, costs, switches) must leave every result unchanged: nothing of the
  cluster model leaks into a flat run.
* The ALMOS-MKH VMM itself, forced on one cluster (``model = "almos"``), reproduces the flat
  kernel where the two models agree (anonymous memory without the zero page, one thread per
  vCPU, every ALMOS-only cost set to 0): same faults, frames, accesses and end time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from helpers import simulation

from pfsim.api import run
from pfsim.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL_VMM_KNOBS = {
    "mesh": [1, 1], "distrib_index": "modulo", "remote_ops": "rpc", "vsl_lock": "queuelock",
    "oom_rule": "2018", "cow_oom_policy": "panic_core", "cow_race_is_user_error": False,
    "cow_update_unmapped_copies": True, "lookahead": 0,
    "costs": {"pte_op": 999, "vsl_lookup": 999, "vseg_copy": 999, "pt2_alloc": 999,
              "remote_op": 999, "remote_page": 999, "remote_access": 999, "hop": 999, "rpc": 999},
}


def _without_digest(result):
    data = result.to_dict()
    data.pop("config_digest")
    return data


@pytest.mark.parametrize("example", ["quickstart.toml", "segv.toml"])
def test_vmm_settings_do_not_touch_a_one_cluster_run(example):
    """The bundled flat examples give identical results with every guest.vmm key changed."""
    base = load_config(EXAMPLES / example)
    data = base.model_dump(mode="json")
    assert data["guest"]["clusters"] == 1
    changed = copy.deepcopy(data)
    changed["guest"]["vmm"] = ALL_VMM_KNOBS
    assert _without_digest(run(changed)) == _without_digest(run(data))


def test_one_cluster_builds_no_cluster_machinery():
    """clusters = 1: no cluster VMM, the flat frame pool, no per-cluster result section."""
    data = {"processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "64KiB"}],
                           "threads": [{"steps": [{"op": "access", "vseg": "h", "accesses": 100}]}]}]}
    sim = simulation(data)
    assert type(sim.kernel.vmm).__name__ == "FlatVmm" and type(sim.kernel.mem).__name__ == "PhysMem"
    result = sim.run()
    assert "clusters" not in result["vms"]["vm0"]
    assert "copies" not in result["vms"]["vm0"]["processes"]["p"]


def test_fork_cow_example_on_one_cluster_follows_the_flat_rule():
    """examples/fork-cow.toml with clusters = 1 (Linux COW by reference counts) gives the
    same copy/reuse split as the ALMOS pending-fork counters: 256 and 512 copies in the
    children, 128 copies then 1920 reuses in the parent."""
    result = run(EXAMPLES / "fork-cow.toml", overrides=["guest.clusters=1"])
    procs = result.processes
    assert (procs["server.0"]["cow_copies"], procs["server.1"]["cow_copies"]) == (256, 512)
    assert (procs["server"]["cow_copies"], procs["server"]["cow_reuses"]) == (128, 1920)


@pytest.mark.parametrize("pattern", ["sequential", "uniform", "zipf"])
def test_almos_on_one_cluster_matches_the_flat_kernel(pattern):
    """Two threads (one per vCPU) writing and reading their halves of an anonymous vseg: the flat
    kernel (zero page off) and the ALMOS VMM on one cluster with its own costs at 0 fault the
    same pages (every fault local: entry 300 + allocate and zero 1500 either way), allocate
    the same user frames and end at the same time.  (Threads sharing pages would differ: the
    flat kernel has no PTE lock, so a second thread never waits for the first one's fault.)"""
    step = {"op": "access", "vseg": "h", "pattern": pattern, "accesses": 4000, "write_ratio": 0.4,
            "split": True}
    procs = [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "2MiB"}],
              "threads": [{"count": 2, "stack": False, "steps": [step]}]}]
    flat = {"guest": {"vcpus": 2, "mm": {"zero_page": False}}, "processes": procs}
    almos = copy.deepcopy(flat)
    almos["guest"]["vmm"] = {"model": "almos", "lookahead": 0,
                             "costs": {"pte_op": 0, "vsl_lookup": 0, "pt2_alloc": 0}}
    a, b = run(flat), run(almos)
    assert a["sim_time_ns"] == b["sim_time_ns"]
    for key in ("min_flt", "local_pgfault_nr", "accesses", "work"):
        assert a.processes["p"][key] == b.processes["p"][key], key
    assert a.vm["memory"]["frames_allocated_total"] == sum(b.processes["p"]["pages_placed"]["h"])
