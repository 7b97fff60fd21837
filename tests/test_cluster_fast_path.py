"""The compiled cluster loop gives what the Python reference fault path gives.

All runs use the ALMOS-MKH VMM (``model = "almos"``, also with one cluster).
With ``lookahead = 0`` the compiled loop resolves a fault only at its own segment's start,
so faults are handled in exactly the order the Python path handles them: every result must
be identical (the event count aside).  With the default lookahead, a single thread (nothing
to race with) must give identical results too; concurrent threads may swap which of two
racing faults is the true one, so only order-free totals are compared.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st
from test_cluster_support import BASE, PAGE, almos, process, thread

from pfsim.api import run


def _both(data):
    fast = run(data).to_dict()
    slow_data = copy.deepcopy(data)
    slow_data["guest"]["fast_faults"] = False
    slow = run(slow_data).to_dict()
    for result in (fast, slow):
        result.pop("events")
        result.pop("config_digest")  # fast_faults differs, by construction
    return fast, slow


def _workload(clusters, threads, pattern, write_ratio, accesses, seed, lookahead, remote_ops):
    vsegs = [{"name": "d", "type": "data", "size": 48 * PAGE, "base": BASE},
             {"name": "a", "type": "anon", "size": 48 * PAGE, "base": BASE + 0x400000},
             {"name": "c", "type": "code", "size": 8 * PAGE, "base": 0x400000}]
    steps = [{"op": "access", "vseg": "c", "fetch": True, "accesses": 8, "pattern": "sequential",
              "stride": "4KiB"},
             {"op": "access", "vseg": "d", "pattern": pattern, "accesses": accesses,
              "write_ratio": write_ratio},
             {"op": "access", "vseg": "@stack", "accesses": 20, "write_ratio": 0.5},
             {"op": "access", "vseg": "a", "pattern": pattern, "accesses": accesses,
              "write_ratio": write_ratio}]
    vcpus = 2 * clusters
    group = [thread(i % vcpus, steps) for i in range(threads)]
    return almos([process("p", vsegs, group)], clusters=clusters, seed=seed,
                 vmm={"lookahead": lookahead, "remote_ops": remote_ops, "model": "almos"})


@settings(max_examples=15, deadline=None)
@given(clusters=st.sampled_from([1, 2, 4]), threads=st.integers(1, 6),
       pattern=st.sampled_from(["sequential", "uniform", "zipf"]),
       write_ratio=st.sampled_from([0.0, 0.5, 1.0]), accesses=st.integers(1, 1500),
       seed=st.integers(0, 3), remote_ops=st.sampled_from(["direct", "rpc"]))
def test_in_order_lookahead_gives_identical_results(clusters, threads, pattern, write_ratio,
                                                    accesses, seed, remote_ops):
    """lookahead = 0: every counter, every wait, the placement, the copies and the simulated
    end time agree between the compiled loop and the Python path, for any thread count."""
    fast, slow = _both(_workload(clusters, threads, pattern, write_ratio, accesses, seed, 0,
                                 remote_ops))
    assert fast == slow


@settings(max_examples=10, deadline=None)
@given(clusters=st.sampled_from([2, 4]), pattern=st.sampled_from(["sequential", "uniform"]),
       write_ratio=st.sampled_from([0.0, 0.5]), accesses=st.integers(1, 3000),
       seed=st.integers(0, 3))
def test_one_thread_gives_identical_results_with_lookahead(clusters, pattern, write_ratio,
                                                           accesses, seed):
    """One thread, default lookahead: identical results (it races with nobody)."""
    data = _workload(clusters, 1, pattern, write_ratio, accesses, seed, 20_000, "direct")
    data["processes"][0]["threads"][0]["cpu"] = 2 * clusters - 1  # far from the reference
    fast, slow = _both(data)
    assert fast == slow


def test_concurrent_threads_agree_on_order_free_totals():
    """Eight threads on 4 clusters with the default lookahead: the pages placed (one per
    public page, one per private page per cluster), the true faults (local + global, one per
    allocation), the accesses and the remote accesses agree with the Python path."""
    data = _workload(4, 8, "uniform", 0.3, 3000, 1, 20_000, "direct")
    fast, slow = _both(data)
    pf, ps = fast["vms"]["vm0"]["processes"]["p"], slow["vms"]["vm0"]["processes"]["p"]
    assert pf["pages_placed"] == ps["pages_placed"]
    for key in ("accesses", "remote_accesses"):
        assert pf[key] == ps[key], key
    assert pf["local_pgfault_nr"] + pf["global_pgfault_nr"] == ps["local_pgfault_nr"] + ps["global_pgfault_nr"]
    assert abs(pf["false_pgfault_nr"] - ps["false_pgfault_nr"]) <= ps["false_pgfault_nr"] // 10


def test_fork_workload_is_identical_in_order():
    """fork + COW + exit with lookahead 0: identical results (COW always runs in Python; the
    page faults around it are compiled in one run, in Python in the other)."""
    child = [{"op": "access", "vseg": "d", "pattern": "uniform", "accesses": 500, "write_ratio": 0.5}]
    main = [{"op": "access", "vseg": "d", "pattern": "sequential", "stride": "4KiB",
             "accesses": 48, "write_ratio": 1.0},
            {"op": "fork", "steps": child, "cluster": 1},
            {"op": "access", "vseg": "d", "pattern": "uniform", "accesses": 500, "write_ratio": 0.5},
            {"op": "wait"}]
    data = almos([process("p", [{"name": "d", "type": "data", "size": 48 * PAGE, "base": BASE}],
                          [thread(0, main), thread(2, main[2:3])])], vmm={"lookahead": 0})
    fast, slow = _both(data)
    assert fast == slow
