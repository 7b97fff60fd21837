"""kswapd0 and the balloon's kworker as tasks of the guest scheduler (pfsim.guest.kthread).

The expected numbers are derived by hand in each docstring from the rules of docs/reclaim.md
(watermarks, ``balance_pgdat``'s priority loop, the CPU time of a pass) and of the round-robin
scheduler; both engines run every case (the ``engine`` fixture).
"""

from __future__ import annotations

import copy

import pytest
from helpers import run_dict

PAGE_COST = 200  # guest.costs.reclaim_page (the default)


def _pressure(vcpus=1, reclaim_page=PAGE_COST, policy="rr", pin=None, first=0):
    """A 32 MiB guest with 8 MiB reserved: 6144 user frames, watermarks min 156, low 195,
    high 234 (tests/test_reclaim.py works them out).  Process 'p' has a 16 MiB file in the
    page cache (4096 clean pages on the inactive file list, never mapped), writes 1873 pages
    of its heap and then computes 50,000 units of 1 us (``first``: after computing that many
    units first).  No swap device; the slice is 20 ms (rr timeslice, cfs sched_latency)."""
    steps = [{"op": "compute", "units": first, "unit": "1us"}] if first else []
    steps += [{"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
              "accesses": 1873, "write_ratio": 1.0, "think": "100ns"},
             {"op": "compute", "units": 50_000, "unit": "1us"}]
    thread = {"steps": steps} if pin is None else {"steps": steps, "cpu": pin}
    return {"sim": {"check_invariants": True},
            "guest": {"vcpus": vcpus, "memory": "32MiB", "tick": "off",
                      "mm": {"kernel_reserved": "8MiB"},
                      "costs": {"reclaim_page": reclaim_page},
                      "sched": {"policy": policy, "timeslice": "20ms", "latency": "20ms",
                                "context_switch": 0}},
            "processes": [{"name": "p", "vsegs": [
                {"name": "cache", "type": "file", "size": "16MiB", "cached": True},
                {"name": "heap", "type": "anon", "size": "8MiB"}], "threads": [thread]}]}


def _vm(data):
    result = run_dict(data)
    assert result.outcome == "ok"
    return result["vms"]["vm0"]


def test_kswapd_delays_the_task_it_displaces_by_its_cpu_time(engine):
    """One vCPU.  The file fills 4096 of the 6144 frames, leaving 2048 free; the heap's first
    1853 touches take them down to low (195); the next finds low free, which wakes kswapd0
    (``__alloc_pages`` leaves the fast path), and the 20 last touches take free memory to 175
    (above min: no direct reclaim).  Round robin has no wake-up
    preemption, so kswapd0 waits for the 20 ms slice of 'p' to end (mid-compute).  Then one
    ``balance_pgdat`` pass: with no swap only file pages are scanned; at priority 12 the
    target is 4096 >> 12 = 1 page per ``shrink_node``, unreferenced and clean, so freed; the
    priority stays (scanned 1 < 234 to reclaim, freed 1), but the list is now one page
    shorter: 4095 >> 12 = 0, nothing freed, priority 11, where 4095 >> 11 = 1 page is scanned
    and freed per iteration; the loop stops when more than high are free: 235 - 175 = 60 pages scanned
    and freed.  Its CPU time is 60 x 200 ns = 12 us (more than SWAP_CLUSTER_MAX pages), during
    which 'p' does not run, then kswapd0 sleeps (balanced).  So 'p' exits exactly 12 us later
    than with reclaim_page = 0 (the same pass at no CPU cost)."""
    vm = _vm(_pressure())
    free = _vm(_pressure(reclaim_page=0))
    memory = vm["memory"]
    assert memory["kswapd_wakeups"] == 1
    assert memory["pgscan_kswapd"] == memory["pgsteal_kswapd"] == 60
    assert memory["pgscan_direct"] == memory["allocstall"] == 0
    assert memory["kswapd_cpu_ns"] == 60 * PAGE_COST == 12_000
    kswapd = vm["kernel_threads"]["kswapd0"]
    assert kswapd == {"tid": 999, "cpu": 0, "state": "interruptible", "runtime_ns": 12_000,
                      "cpu_ns": 12_000, "wakeups": 1, "switches_in": 1}
    assert free["memory"]["pgsteal_kswapd"] == 60 and free["memory"]["kswapd_cpu_ns"] == 0
    delay = vm["processes"]["p"]["exited_ns"] - free["processes"]["p"]["exited_ns"]
    assert delay == 12_000
    assert "kswapd0" not in vm["tasks"]  # a kernel thread: no process, no task counters


def test_kswapd_on_an_idle_vcpu_does_not_delay_the_task(engine):
    """Two vCPUs, 'p' bound to vCPU 0: kswapd0 is woken with vCPU 1 idle and runs there at
    once, so 'p' exits at the same time as when kswapd's passes cost nothing, and all of
    kswapd0's CPU time is vCPU 1's busy time."""
    vm = _vm(_pressure(vcpus=2, pin=0))
    free = _vm(_pressure(vcpus=2, pin=0, reclaim_page=0))
    kswapd = vm["kernel_threads"]["kswapd0"]
    assert kswapd["cpu"] == 1 and kswapd["cpu_ns"] > 0
    assert kswapd["cpu_ns"] == vm["memory"]["kswapd_cpu_ns"] == kswapd["runtime_ns"]
    assert vm["memory"]["kswapd_cpu_ns"] % PAGE_COST == 0
    assert vm["processes"]["p"]["exited_ns"] == free["processes"]["p"]["exited_ns"]
    assert vm["vcpus"][1]["busy_ns"] == kswapd["cpu_ns"]


def test_kswapd_preempts_on_wakeup_under_cfs(engine):
    """CFS, one vCPU, 'p' computing 5 ms before its first touches.  Its 1854th touch finds
    the low watermark (195 free) and wakes kswapd0, then takes its frame (194 free).
    kswapd0's vruntime is placed at min_vruntime - sched_latency / 2 < 0, so at 0
    (``place_entity``), more than 5 ms behind 'p': more than wakeup_granularity (1 ms), so it
    preempts 'p' when that fault is handled, with 194 frames free: one pass frees 235 - 194 =
    41 pages (one per iteration, as above), 41 x 200 ns = 8.2 us of CPU time.  It is balanced
    after that, and the 19 last touches take free memory only to 216, above low: no second
    wake-up.  'p' exits 8.2 us later than with reclaim_page = 0."""
    vm = _vm(_pressure(policy="cfs", first=5000))
    free = _vm(_pressure(policy="cfs", first=5000, reclaim_page=0))
    assert vm["memory"]["kswapd_wakeups"] == 1
    assert vm["memory"]["pgscan_kswapd"] == 41
    assert vm["memory"]["kswapd_cpu_ns"] == 8_200
    assert vm["kernel_threads"]["kswapd0"]["switches_in"] == 1
    delay = vm["processes"]["p"]["exited_ns"] - free["processes"]["p"]["exited_ns"]
    assert delay == 8_200


def _balloon(vcpus):
    """A 1 MiB balloon (256 pages: one chunk) set at 1 ms in a guest with plenty free; 'p'
    computes 10,000 units of 1 us on vCPU 0."""
    return {"sim": {"check_invariants": True},
            "guest": {"vcpus": vcpus, "memory": "32MiB", "tick": "off",
                      "mm": {"kernel_reserved": "8MiB"},
                      "balloon": {"target": "1MiB", "at": "1ms"},
                      "sched": {"policy": "rr", "timeslice": "2ms", "context_switch": 0}},
            "processes": [{"name": "p", "threads": [
                {"cpu": 0, "steps": [{"op": "compute", "units": 10_000, "unit": "1us"}]}]}]}


@pytest.mark.parametrize("vcpus", [1, 2])
def test_the_balloon_kworker_runs_on_vcpu_0(engine, vcpus):
    """The work item runs in the kworker bound to vCPU 0 (a per-CPU workqueue), so even with
    vCPU 1 idle it takes vCPU 0 from 'p': queued at 1 ms, it runs at the end of the slice of
    'p' (2 ms), inflates 256 pages in one chunk (256 x 200 ns = 51.2 us of CPU time), then
    sleeps (target reached).  'p' exits at 10 ms + 51.2 us."""
    vm = _vm(_balloon(vcpus))
    assert vm["memory"]["balloon_inflated"] == 256
    assert vm["memory"]["balloon_cpu_ns"] == 256 * PAGE_COST == 51_200
    worker = vm["kernel_threads"]["kworker/0:1"]
    assert worker["cpu"] == 0 and worker["switches_in"] == 1
    assert vm["processes"]["p"]["exited_ns"] == 10_000_000 + 51_200


def test_kernel_threads_are_listed_without_pressure():
    """kswapd0 exists (asleep) in every flat guest; it never ran, so its CPU time is 0."""
    data = copy.deepcopy(_pressure())
    data["processes"][0]["threads"][0]["steps"] = [{"op": "compute", "units": 10}]
    vm = _vm(data)
    assert vm["kernel_threads"]["kswapd0"]["cpu_ns"] == 0
    assert vm["kernel_threads"]["kswapd0"]["switches_in"] == 0
    assert vm["memory"]["kswapd_cpu_ns"] == 0


def test_the_trace_names_kswapd0_on_its_vcpu(tmp_path):
    """A traced run shows kswapd0's one slice on vCPU 0 under its name: in the hand-worked
    case above it runs 12 us, from the end of the 20 ms slice of 'p'."""
    import json

    from pfsim.api import run

    trace = tmp_path / "t.json"
    run(_pressure(), trace=trace)
    slices = [e for e in json.loads(trace.read_text())["traceEvents"]
              if e["ph"] == "X" and e["name"] == "kswapd0"]
    assert [(e["tid"], e["args"]["tid"], e["dur"]) for e in slices] == [(0, 999, 12.0)]
    assert slices[0]["ts"] == pytest.approx(20_000.0)


def _nap(extra):
    """The hand-worked case above, then 'p' writes ``extra`` pages of a second heap and
    sleeps 100 ms."""
    data = _pressure()
    data["processes"][0]["vsegs"].append({"name": "more", "type": "anon", "size": "1MiB"})
    data["processes"][0]["threads"][0]["steps"] += [
        {"op": "access", "vseg": "more", "pattern": "sequential", "stride": "4KiB",
         "accesses": extra, "write_ratio": 1.0, "think": "100ns"},
        {"op": "sleep", "duration": "100ms"}]
    return data


def test_kswapd_rebalances_after_its_short_sleep(engine):
    """``kswapd_try_to_sleep``: balanced at 20.012 ms (the case above), kswapd0 first sleeps
    HZ/10 = 25 jiffies of 4 ms = 100 ms.  Meanwhile 'p' finishes computing and writes 10 more
    pages: 235 -> 225 free, still above low, so nothing wakes kswapd0, and 'p' sleeps.  At
    120.012 ms the short sleep ends with memory no longer balanced: kswapd0 runs at once on
    the idle vCPU (``kswapd_high_wmark_hit_quickly``) and balances again: 235 - 225 = 10 pages
    (the file list, 4036 pages, gives one page per iteration from priority 11), costing
    SWAP_CLUSTER_MAX x 200 ns = 6.4 us; balanced, it takes another short sleep."""
    vm = _vm(_nap(10))
    memory = vm["memory"]
    assert memory["kswapd_wakeups"] == 1
    assert memory["kswapd_high_wmark_hit_quickly"] == 1
    assert memory["kswapd_low_wmark_hit_quickly"] == 0
    assert memory["pgscan_kswapd"] == memory["pgsteal_kswapd"] == 70
    assert memory["kswapd_cpu_ns"] == 12_000 + 6_400
    kswapd = vm["kernel_threads"]["kswapd0"]
    assert kswapd["wakeups"] == 2 and kswapd["switches_in"] == 2  # woken, then its timeout


def test_kswapd_woken_during_its_short_sleep(engine):
    """As above with 45 pages: the 41st finds low (195) free during kswapd0's short sleep and
    wakes it (``kswapd_low_wmark_hit_quickly``); round robin runs it when 'p' sleeps, with
    235 - 45 = 190 free: one pass frees 45 pages, 9 us."""
    vm = _vm(_nap(45))
    memory = vm["memory"]
    assert memory["kswapd_wakeups"] == 2
    assert memory["kswapd_low_wmark_hit_quickly"] == 1
    assert memory["kswapd_high_wmark_hit_quickly"] == 0
    assert memory["pgscan_kswapd"] == 60 + 45
    assert memory["kswapd_cpu_ns"] == 12_000 + 9_000


def _out_of_puff(duration):
    """Under a host, 'a' holds 5788 of the 6144 user frames (32 MiB guest, 8 MiB reserved; min
    156, low 195; written by about 35 ms) and sleeps; from 50 ms 'b' writes 100 pages and exits,
    leaving its 100 host-backed frames on top of the free stack (356 free).  At 100 ms the
    host asks for 1 MiB (256 pages).  No swap and no file pages: nothing is reclaimable."""
    def proc(name, pages, then):
        return {"name": name, "vsegs": [{"name": "h", "type": "anon", "size": pages * 4096}],
                "threads": [{"stack": False, "steps": [
                    {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
                     "accesses": pages, "write_ratio": 1.0, "think": "100ns"}, *then]}]}
    return {"sim": {"duration": duration, "check_invariants": True},
            "guest": {"vcpus": 1, "memory": "32MiB", "tick": "off",
                      "mm": {"kernel_reserved": "8MiB"},
                      "balloon": {"target": "1MiB", "at": "100ms"}},
            "hypervisor": {"enabled": True},
            "processes": [proc("a", 5788, [{"op": "sleep", "duration": "1s"}]),
                          {**proc("b", 100, []), "start": "50ms"}]}


@pytest.mark.parametrize("duration, told", [("300ms", 0), ("350ms", 100)])
def test_out_of_puff_sleeps_before_telling_the_host(engine, duration, told):
    """``fill_balloon``: the first chunk allocates down to min, 356 - 156 = 200 pages (b's
    100 backed frames first), then fails ("Out of puff!"): 201 allocations of 200 ns, 40.2 us
    of the kworker's CPU time from about 100 ms; then ``msleep(200)``, and only then
    ``tell_host``: the host frees b's 100 frames at about 300.04 ms, not before.  The next chunk
    fails at once (200 ns) and sleeps again."""
    result = run_dict(_out_of_puff(duration))
    assert result.outcome == "ok"
    memory = result["vms"]["vm0"]["memory"]
    assert memory["balloon_inflated"] == memory["balloon_pages"] == 200
    assert result["host"]["balloon_freed_frames"] == told
    assert memory["balloon_alloc_failures"] == (1 if told == 0 else 2)
    assert memory["balloon_cpu_ns"] == (201 if told == 0 else 202) * PAGE_COST
