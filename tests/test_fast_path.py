"""The compiled fault fast path gives exactly what the Python reference fault path gives."""

from __future__ import annotations

from helpers import run_dict, scenario
from hypothesis import given, settings
from hypothesis import strategies as st

KEYS = ("min_flt", "maj_flt", "cow_reuses", "cow_copies", "accesses", "work", "segv", "pgfault")


def both(data):
    fast = run_dict(data)
    slow_data = dict(data, guest=dict(data["guest"], fast_faults=False))
    slow = run_dict(slow_data)
    return fast, slow


@settings(max_examples=12, deadline=None)
@given(pattern=st.sampled_from(["sequential", "uniform", "zipf", "hotcold"]),
       write_ratio=st.sampled_from([0.0, 0.3, 1.0]), pages=st.integers(1, 300),
       accesses=st.integers(1, 3000), seed=st.integers(0, 5), zero_page=st.booleans())
def test_single_thread_results_are_identical(pattern, write_ratio, pages, accesses, seed, zero_page):
    """One thread, one anonymous vseg: every counter, the simulated end time and the memory
    totals agree between the fast path and the Python path."""
    vseg = {"name": "h", "type": "anon", "size": pages * 4096}
    step = {"op": "access", "vseg": "h", "pattern": pattern, "write_ratio": write_ratio,
            "accesses": accesses, "stride": "1KiB"}
    data = scenario([step, {"op": "touch", "addr": 0x1000}], [vseg], seed=seed,
                    guest={"mm": {"zero_page": zero_page}})
    fast, slow = both(data)
    assert fast["sim_time_ns"] == slow["sim_time_ns"]
    for key in KEYS:
        assert fast.processes["p"][key] == slow.processes["p"][key], key
    assert fast.vm["memory"] == slow.vm["memory"]


def test_out_of_memory_falls_back_to_python_identically():
    """When frames run out inside the compiled loop it stops and Python does the OOM kill;
    the outcome equals the all-Python run.  16 MiB with 8 MiB reserved: 2048 user frames;
    the min watermark is int_sqrt(16 x 8192 KiB) = 362 KiB = 90 pages (mm/page_alloc.c), which
    only atomic allocations may use, so the hog gets 2048 - 90 = 1958 pages: the fast path
    stops at the low watermark (2048 - 112) and the Python path allocates down to min."""
    procs = [{"name": "hog", "vsegs": [{"name": "h", "type": "anon", "size": "12MiB"}],
              "threads": [{"stack": False, "steps": [
                  {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
                   "accesses": 3000, "write_ratio": 1.0}]}]}]
    fast, slow = both(scenario(processes=procs, guest={"memory": "16MiB"}))
    assert fast.processes["hog"]["exit"] == slow.processes["hog"]["exit"] == "oom"
    assert fast.processes["hog"]["min_flt"] == slow.processes["hog"]["min_flt"] == 2048 - 90
    assert fast["sim_time_ns"] == slow["sim_time_ns"]


def test_multithreaded_fault_totals_match():
    """Four threads on two vCPUs sharing a heap: each page is first-touched exactly once
    either way, so the process totals agree (which thread faults may differ)."""
    vseg = {"name": "h", "type": "anon", "size": "2MiB"}
    step = {"op": "access", "vseg": "h", "pattern": "uniform", "accesses": 20_000,
            "write_ratio": 1.0}
    procs = [{"name": "p", "vsegs": [vseg], "threads": [{"count": 4, "steps": [step]}]}]
    fast, slow = both(scenario(processes=procs, guest={"vcpus": 2}))
    for key in ("min_flt", "accesses"):
        assert fast.processes["p"][key] == slow.processes["p"][key], key
    assert fast.processes["p"]["min_flt"] == 512  # each of the 512 heap pages once (stacks untouched)
