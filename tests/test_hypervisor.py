"""The host inside whole simulations: EPT faults, reclaim and swap counts, async-PF modes."""

from __future__ import annotations

import copy

import pytest
from helpers import run_dict, scenario


@pytest.fixture(autouse=True)
def _both_engines(engine):
    """Every test here runs on the compiled core and on the reference path."""
    return engine


MODES = ["off", "halt", "kvm", "s390"]


def host_config(mode: str = "off", limit: str = "256KiB", **extra):
    cfg = {"enabled": True, "host_cpus": 2, "memory_limit": limit, "reclaim": "lru",
           "reclaim_batch": 1, "async_pf": mode, "apf_debug": True,
           "swap": {"device": "nvme", "page_cluster": 0}}
    cfg.update(extra)
    return cfg


def seq(vseg: str, pages: int, write: bool, **kw):
    return {"op": "access", "vseg": vseg, "pattern": "sequential", "stride": "4KiB",
            "accesses": pages, "write_ratio": 1.0 if write else 0.0, **kw}


def with_host(data, hypervisor):
    data["hypervisor"] = hypervisor
    return data


@pytest.mark.parametrize("fast", [True, False])
def test_lru_swap_round_trip_counts(fast):
    """Host grants 64 frames (one holds the guest's zero page: 63 usable), LRU, batch 1, no
    readahead.  The guest writes pages 0..99 once, then reads them again in order.

    Pass 1: 100 host first touches (minor); from page 63 on each evicts the oldest page:
    37 evictions, all dirty (never swapped) → 37 swap-outs.
    Pass 2, sequential over more pages than frames under LRU: every read misses.  Pages
    0..36 are on swap → 37 swap-ins evicting 37..73 (dirty: 37 writes); pages 37..99 were just
    evicted → 63 swap-ins evicting 74..99 (26 writes) then 0..36 (clean copies on swap: no
    write).  Totals: swap_ins 100, evictions 37 + 100 = 137, swap_outs 37 + 63 = 100,
    EPT violations 200 (100 minor + 100 major).  The guest sees only its 100 first-touch
    minor faults.
    """
    vseg = {"name": "a", "type": "anon", "size": "1MiB"}
    steps = [seq("a", 100, True), seq("a", 100, False)]
    data = scenario(guest={"fast_faults": fast},
                    processes=[{"name": "p", "vsegs": [vseg], "threads": [{"stack": False, "steps": steps}]}])
    result = run_dict(with_host(data, host_config()))
    host = result["host"]
    assert (host["host_minor_faults"], host["host_major_faults"]) == (100, 100)
    assert (host["swap_ins"], host["evictions"], host["swap_outs"]) == (100, 137, 100)
    assert host["ept_violations"] == 200
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"], p["accesses"]) == (100, 0, 200)
    assert sum(v["stalled_ns"] for v in result.vcpus) > 100 * 16_000  # 100 NVMe reads waited


def test_fifo_and_clock_keep_their_own_victim_order():
    """Same workload, FIFO: identical to LRU here (sequential access never re-touches a
    resident page before eviction), so the same 100 swap-ins; CLOCK likewise."""
    vseg = {"name": "a", "type": "anon", "size": "1MiB"}
    steps = [seq("a", 100, True), seq("a", 100, False)]
    for policy in ("fifo", "clock", "random"):
        data = scenario(processes=[{"name": "p", "vsegs": [vseg],
                                    "threads": [{"stack": False, "steps": steps}]}])
        host = run_dict(with_host(data, host_config(reclaim=policy)))["host"]
        if policy == "random":
            assert host["swap_ins"] <= 100 and host["evictions"] == 37 + host["swap_ins"]
        else:
            assert (host["swap_ins"], host["evictions"], host["swap_outs"]) == (100, 137, 100)


def _mixed_data(mode: str) -> dict:
    writers = {"name": "w", "vsegs": [{"name": "a", "type": "anon", "size": "2MiB"}],
               "threads": [{"count": 2, "stack": False, "steps": [
                   seq("a", 256, True, split=True),
                   {"op": "access", "vseg": "a", "pattern": "uniform", "accesses": 3000,
                    "write_ratio": 0.5, "think": "1us"}]}]}
    counters = {"name": "c", "threads": [{"count": 2, "stack": False,
                                          "steps": [{"op": "compute", "units": 20_000}]}]}
    data = scenario(processes=[writers, counters], guest={"vcpus": 2}, seed=5)
    return with_host(data, host_config(mode, limit="1MiB", reclaim_batch=8))


def _mixed(mode: str):
    return run_dict(_mixed_data(mode))


def test_async_pf_changes_when_not_what_the_guest_computes():
    """Every task does the same accesses and work units in every mode; only time differs.
    (Which writer first touches a page of the shared array, and whether a read maps the zero
    page before a write, depends on timing: fault counts may differ, the work may not.)"""
    results = {mode: _mixed(mode) for mode in MODES}
    base = results["off"]
    for mode, result in results.items():
        assert result.outcome == "ok", mode
        for name, task in base.tasks.items():
            other = result.tasks[name]
            assert (other["accesses"], other["compute_units"], other["state"]) == \
                (task["accesses"], task["compute_units"], "dead"), (mode, name)
        assert 512 <= result.processes["w"]["min_flt"] <= 2 * 512
    assert results["kvm"].vm["async_pf"]["not_present"] > 0
    assert results["s390"].vm["async_pf"]["not_present"] > 0
    assert results["off"].vm["async_pf"]["not_present"] == 0
    # the guest runs another task during the I/O: the run ends sooner
    assert results["kvm"]["sim_time_ns"] < results["off"]["sim_time_ns"]


def _kernel_reads_swapped_buffer(mode: str):
    """A 16-page buffer is written, pushed to swap by first touches of a 300-page array, then
    read by the kernel in write(2) (copy_from_user: kernel-mode accesses)."""
    vsegs = [{"name": "buf", "type": "anon", "size": "64KiB"},
             {"name": "big", "type": "anon", "size": "2MiB"}]
    steps = [seq("buf", 16, True), seq("big", 300, True),
             {"op": "syscall", "kind": "write", "vseg": "buf", "length": "64KiB"}]
    data = scenario(processes=[{"name": "p", "vsegs": vsegs, "threads": [{"stack": False, "steps": steps}]}])
    return run_dict(with_host(data, host_config(mode)))


def test_s390_pfault_is_refused_in_kernel_mode():
    """pfault is offered only in problem state (PSW select/compare): the 16 kernel-mode faults
    on swapped pages all fall back to synchronous (pfault_sync), no INIT is sent."""
    result = _kernel_reads_swapped_buffer("s390")
    apf = result.vm["async_pf"]
    assert result["host"]["host_major_faults"] == 16
    assert (apf["not_present"], apf["sync_fallbacks"]) == (0, 16)


def test_kvm_kernel_mode_fault_halts_without_page_ready():
    """x86 at CPL 0 with interrupts on: a work item is created but no #PF is injected
    (send_user_only); the vCPU APF-halts and no page-ready is delivered (INV-H4)."""
    result = _kernel_reads_swapped_buffer("kvm")
    apf = result.vm["async_pf"]
    assert result["host"]["host_major_faults"] == 16
    assert (apf["not_present"], apf["page_ready"], apf["sync_fallbacks"]) == (0, 0, 0)
    assert apf["apf_halts"] == 16


def test_zram_reads_inline_so_no_async_pf_happens():
    """A synchronous swap device completes the read inside the faulting thread: KVM never
    sees NEEDS_IO, so no async PF even in kvm mode."""
    vseg = {"name": "a", "type": "anon", "size": "1MiB"}
    steps = [seq("a", 100, True), seq("a", 100, False)]
    data = scenario(processes=[{"name": "p", "vsegs": [vseg], "threads": [{"stack": False, "steps": steps}]}])
    result = run_dict(with_host(data, host_config("kvm", swap={"device": "zram"})))
    assert result["host"]["swap_ins"] == 100
    assert result.vm["async_pf"]["not_present"] == 0


def test_oversubscribed_host_cpus_cost_steal_time():
    """Two vCPUs and one always-runnable host task on one host CPU: the vCPU threads are
    preempted (KVM marks them preempted on sched_out) and accumulate steal time; all guest
    work still completes."""
    procs = [{"name": "c", "threads": [{"count": 2, "stack": False,
                                        "steps": [{"op": "compute", "units": 5_000}]}]}]
    data = scenario(processes=procs, guest={"vcpus": 2})
    result = run_dict(with_host(data, host_config(host_cpus=1, host_tasks=1)))
    assert result.processes["c"]["compute_units"] == 10_000
    assert all(v["steal_ns"] > 0 for v in result.vcpus)
    total = result["sim_time_ns"]
    for v in result.vcpus:
        assert v["busy_ns"] + v["idle_ns"] + v["stalled_ns"] + v["steal_ns"] == total


def test_hypervisor_runs_are_deterministic(engine):
    """The same scenario in two fresh interpreters with different hash seeds (set and
    string-keyed dict orders differ between them): byte-identical result.json."""
    from hashseed import result_json

    data = copy.deepcopy(_mixed_data("kvm"))
    data["sim"]["engine"] = engine
    assert result_json(data, hashseed=1) == result_json(data, hashseed=2)


def test_a_workload_that_ends_before_the_duration_ends_the_run():
    """Every process exits at 21.002 ms (3 units of 7 ms after one 2 us switch); the host's
    own events go on, but the run ends with the workload, as it does without a host: the
    result reports 21.002 ms of simulated time, all of it busy, not ``sim.duration``."""
    data = {"sim": {"duration": "1s"}, "guest": {"vcpus": 1},
            "hypervisor": {"enabled": True, "host_cpus": 1},
            "processes": [{"name": "p", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 3, "unit": "7ms"}]}]}]}
    result = run_dict(data)
    assert result["sim_time_ns"] == 21_002_000
    assert result.processes["p"]["exited_ns"] == 21_002_000
    assert result.vcpus[0]["busy_ns"] == 21_002_000


def _write_then_read_back(mode, costs):
    """One thread on one vCPU and one host CPU writes pages 0..99 and reads them back (host
    limit 64 frames, LRU, batch 1, no readahead), with ``hypervisor.costs`` ``costs``.  No guest
    tick: in halt mode a tick falling during a swap-in would wake the halted vCPU, whose retry
    is one more EPT violation (tests/test_guest_tick.py has the tick wake a halted vCPU)."""
    vseg = {"name": "a", "type": "anon", "size": "1MiB"}
    steps = [seq("a", 100, True), seq("a", 100, False)]
    data = scenario(processes=[{"name": "p", "vsegs": [vseg],
                                "threads": [{"stack": False, "steps": steps}]}],
                    guest={"tick": "off"})
    hv = host_config(mode, costs=costs)
    hv["host_cpus"] = 1
    return run_dict(with_host(data, hv))


@pytest.mark.parametrize("mode", MODES)
def test_every_ept_violation_costs_the_vm_exit(mode):
    """The guest writes pages 0..99 once (host limit 64 frames: 63 usable) and reads them
    again (as in test_lru_swap_round_trip_counts: 100 minor and 100 major EPT violations).
    Raising ``costs.ept_violation`` (VM exit, EPT walk, re-entry) by D adds D of stalled time
    per EPT violation whose exit is not hidden behind a wait that lasts longer anyway:
    - pass 1, pages 0..62 take free frames: exit + host fault, D each (63);
    - pass 1, pages 63..99 evict a dirty page and wait for its write-back (16 us >> the
      exit): D hidden (0);
    - pass 2, 100 swap-ins: the vCPU waits for the read in the host (off, halt), or the
      guest is told "page not present" (kvm, s390); the exit and re-entry around it are host
      time in every mode: D each (100).
    So stalled time grows by exactly 163 D."""
    def stalled(ept):
        result = _write_then_read_back(mode, {"ept_violation": ept})
        assert result["host"]["ept_violations"] == 200
        return result.vcpus[0]["stalled_ns"]
    assert stalled(3_500) - stalled(2_500) == 163 * 1_000


@pytest.mark.parametrize("mode", ["kvm", "s390"])
def test_page_ready_delivery_takes_its_time(mode):
    """One thread reads back 100 swapped pages (the case above): each read is a "page not
    present" (the thread sleeps, the vCPU halts idle), then the completion is delivered on
    the way into the guest (kvm: page-ready interrupt and ACK; s390: PFAULT_DONE) and the
    thread runs again.  That delivery is host work on the critical path: raising
    ``costs.page_ready`` by D ends the run 100 D later, all of it stalled (kvm: 101 D, the
    boot-time "wake up all" broadcast is delivered the same way; s390: the INIT interrupts'
    delivery is in ``apf_inject``)."""
    def run_with(page_ready):
        result = _write_then_read_back(mode, {"page_ready": page_ready})
        assert result["vms"]["vm0"]["async_pf"]["page_ready"] == 100
        return result["sim_time_ns"], result.vcpus[0]["stalled_ns"]
    (t1, s1), (t2, s2) = run_with(1_000), run_with(2_000)
    deliveries = 101 if mode == "kvm" else 100
    assert (t2 - t1, s2 - s1) == (deliveries * 1_000, deliveries * 1_000)


def test_reschedule_ipi_wakes_a_vcpu_halted_in_the_host():
    """Halt mode, one vCPU, an HDD swap device, host limit 64 frames (63 usable).

    Process ``a`` computes 5 ms, writes 100 pages (pages 63..99 evict dirty pages and wait
    for their write-backs), then reads page 0 again: it is on swap, so the vCPU halts in the
    host (APF halt: ``kvm_vcpu_halt``) until the swap-in ends at about 318.4 ms (measured
    with ``a`` alone: ``a`` exits at 318,465,199 ns).  Process ``b`` sleeps 312 ms, computes
    1 us and exits.  It wakes while the vCPU is halted; the guest scheduler then asks for a
    reschedule of the vCPU (a reschedule IPI).  An interrupt for a vCPU halted in the host
    makes it runnable (``kvm_vcpu_kick``; ``kvm_arch_vcpu_runnable``: an injectable
    interrupt ends ``apf.halted``), so ``b`` runs and exits before the swap-in ends.  Dropping
    the IPI (the old behaviour) left the vCPU halted until the page came: ``b`` exited after
    318.4 ms."""
    a = {"name": "a", "vsegs": [{"name": "m", "type": "anon", "size": "1MiB"}],
         "threads": [{"stack": False, "steps": [{"op": "compute", "units": 5000},
                                                seq("m", 100, True), seq("m", 1, False)]}]}
    b = {"name": "b", "threads": [{"stack": False, "steps": [
        {"op": "sleep", "duration": "312ms"}, {"op": "compute", "units": 1}]}]}
    data = scenario(processes=[a, b])
    hv = host_config("halt", swap={"device": "hdd", "page_cluster": 0})
    result = run_dict(with_host(data, hv))
    assert result["host"]["swap_ins"] == 1
    assert result.processes["a"]["exited_ns"] > 318_400_000
    assert 312_000_000 < result.processes["b"]["exited_ns"] < 318_400_000
