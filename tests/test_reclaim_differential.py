"""Compiled guest reclaim against its readable reference, scenario by scenario.

The same scenario runs with ``sim.engine = "reference"`` (:class:`pfsim.guest.reclaim.Reclaim`:
the Python loops of mm/vmscan.c) and ``sim.engine = "compiled"``
(:class:`pfsim.guest.reclaim_compiled.CompiledReclaim`: the kernels of
:mod:`pfsim.guest.reclaim_kernels`).  The reference is the independent implementation here: it
is the code the hand-computed cases of ``tests/test_reclaim.py`` check.  Compared in full:
result.json (all counters of every VM, process and the host), and the final state: the order
of every LRU list, the page flags, the reverse-map hints, every swap slot (count, cached frame,
shadow entry) and the free-slot stack in order, frame reference counts, kinds and the free
stack, the file pages' shadow entries, every PTE of every process, and where the kernel
threads' work stands (CPU time owed and run, state, runtime, switches, vCPU).

Shapes: anonymous only (nvme readahead, zram), file only (clean and dirty shared pages), both
at swappiness 0, 60 and 200, fork with shared swap entries, two threads on two vCPUs (reclaim
unmapping pages of a thread running on the other vCPU), a balloon reclaiming to inflate,
double paging under a host, kswapd0 sharing one vCPU with the task (preempting it and
preempted), and kswapd0 on a vCPU the host takes away; each with ``sim.check_invariants`` (the compiled batches driven by
the Python loops, invariants checked after every batch) and without (one compiled call per
kswapd pass or direct reclaim), on two seeds (one when checked).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from pfsim.config import load_config
from pfsim.guest.reclaim_compiled import CompiledReclaim
from pfsim.simulation import Simulation


def _access(vseg, n, pattern="uniform", write=0.3, think="200ns"):
    step = {"op": "access", "vseg": vseg, "pattern": pattern, "accesses": n,
            "write_ratio": write, "think": think}
    if pattern == "sequential":
        step["stride"] = "4KiB"
    return step


def _anon(device="nvme", swappiness=60, pages=400, accesses=1500):
    """One process writes ``pages`` pages in a guest with 240 user frames, then touches them
    at random."""
    return {"guest": {"memory": "1MiB", "mm": {"kernel_reserved": "64KiB",
                                                "swappiness": swappiness},
                      "swap": {"device": device, "size": "4MiB"}},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon",
                                                    "size": pages * 4096}],
                           "threads": [{"steps": [_access("h", pages, "sequential", 1.0),
                                                  _access("h", accesses)]}]}]}


def _file(write=0.0):
    """A 3 MiB file mapped shared in a guest with 768 user frames: read (clean pages) or
    written (dirty pages written back by reclaim), first in order then at random."""
    return {"guest": {"memory": "4MiB", "mm": {"kernel_reserved": "1MiB"}},
            "processes": [{"name": "r", "vsegs": [{"name": "f", "type": "file", "size": "3MiB",
                                                    "cached": False}],
                           "threads": [{"steps": [_access("f", 768, "sequential", write),
                                                  _access("f", 2000, write=write)]}]}]}


def _mixed(swappiness):
    """A file reader and an anonymous writer competing for 768 frames."""
    return {"guest": {"memory": "4MiB", "mm": {"kernel_reserved": "1MiB",
                                                "swappiness": swappiness},
                      "swap": {"device": "nvme", "size": "8MiB"}},
            "processes": [
                {"name": "reader", "vsegs": [{"name": "f", "type": "file", "size": "2MiB",
                                              "cached": False}],
                 "threads": [{"steps": [_access("f", 512, "sequential", 0.0),
                                        _access("f", 800, write=0.0)]}]},
                {"name": "anon", "start": "50us",
                 "vsegs": [{"name": "h", "type": "anon", "size": "3MiB"}],
                 "threads": [{"steps": [_access("h", 768, "sequential", 1.0),
                                        _access("h", 800)]}]}]}


def _fork():
    """A parent writes 300 pages in 240 frames, forks; parent and child then touch them at
    random (shared swap entries, swap-in through the swap cache, COW after swap-in)."""
    child = [_access("h", 800, write=0.5)]
    return {"guest": {"memory": "2MiB", "mm": {"kernel_reserved": "1088KiB"},
                      "swap": {"device": "nvme", "size": "4MiB"}},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon",
                                                    "size": 300 * 4096}],
                           "threads": [{"steps": [_access("h", 300, "sequential", 1.0),
                                                  {"op": "fork", "name": "c", "steps": child},
                                                  _access("h", 800, write=0.5),
                                                  {"op": "wait"}]}]}]}


def _threads():
    """Two threads of one process on two vCPUs over one heap twice the memory."""
    steps = [_access("h", 800, write=0.5)]
    data = _anon(pages=400, accesses=800)
    data["guest"]["vcpus"] = 2
    data["processes"][0]["threads"].append({"steps": steps})
    return data


def _balloon():
    """A balloon set to inflate to 1 MiB at 1 ms while 'p' holds its pages: it reclaims (its
    kworker and kswapd0 share the one vCPU with 'p': 500 us slices, no tick), then deflates."""
    data = _anon(device="zram", pages=500, accesses=2000)
    data["guest"]["tick"] = "off"
    data["guest"]["sched"] = {"latency": "500us", "min_granularity": "100us"}
    data["guest"]["memory"] = "2MiB"
    data["guest"]["mm"]["kernel_reserved"] = "512KiB"
    data["guest"]["balloon"] = {"target": "1MiB", "at": "1ms",
                                "schedule": [{"at": "3ms", "target": "256KiB"}]}
    return data


def _double_paging():
    """Guest swap under a host that grants less than the guest has: 'old' fills its heap and
    sleeps while 'new' works, so the guest's reclaim picks pages the host already swapped."""
    old = [_access("h", 300, "sequential", 1.0), {"op": "sleep", "duration": "3ms"},
           _access("h", 300, "sequential", 0.0)]
    new = [_access("h", 300, "sequential", 1.0), _access("h", 1500)]
    return {"guest": {"memory": "3MiB", "mm": {"kernel_reserved": "1MiB"},
                      "swap": {"device": "nvme", "size": "4MiB"}},
            "hypervisor": {"enabled": True, "memory_limit": "1536KiB", "swap": {"device": "nvme"}},
            "processes": [
                {"name": "old", "vsegs": [{"name": "h", "type": "anon", "size": 300 * 4096}],
                 "threads": [{"steps": old}]},
                {"name": "new", "start": "500us",
                 "vsegs": [{"name": "h", "type": "anon", "size": 300 * 4096}],
                 "threads": [{"steps": new}]}]}


def _kswapd_one_vcpu():
    """One vCPU shared by the task and kswapd0 (CFS: kswapd0 preempts on wake-up, and is
    preempted at its slice end: a pass's CPU time is longer than a slice), swap on nvme."""
    data = _anon(pages=400, accesses=1500)
    data["guest"]["costs"] = {"reclaim_page": "5us"}
    data["guest"]["sched"] = {"policy": "cfs", "latency": "200us", "min_granularity": "50us",
                              "wakeup_granularity": "20us"}
    return data


def _kswapd_host_preempted():
    """Two vCPUs on one host CPU shared with a host task: the host takes the vCPU running
    kswapd0 away in the middle of its passes' CPU time (20 us per page isolated)."""
    data = _threads()
    data["guest"]["costs"] = {"reclaim_page": "20us"}
    data["guest"]["swap"]["device"] = "zram"
    data["hypervisor"] = {"enabled": True, "host_cpus": 1, "host_tasks": 1}
    return data


SHAPES = {
    "kswapd-one-vcpu": _kswapd_one_vcpu(),
    "kswapd-host-preempted": _kswapd_host_preempted(),
    "anon-nvme": _anon(),
    "anon-zram-swappiness-200": _anon("zram", 200),
    "file-clean": _file(),
    "file-dirty": _file(write=0.5),
    "mixed-swappiness-0": _mixed(0),
    "mixed-swappiness-60": _mixed(60),
    "mixed-swappiness-200": _mixed(200),
    "fork-shared-swap": _fork(),
    "two-threads": _threads(),
    "balloon": _balloon(),
    "double-paging": _double_paging(),
}


def _run(data, engine, seed, check):
    data = copy.deepcopy(data)
    data.setdefault("sim", {}).update(engine=engine, seed=seed, check_invariants=check)
    sim = Simulation(load_config(data))
    result = sim.run()
    assert isinstance(sim.kernel.reclaim, CompiledReclaim) == (engine == "compiled")
    return result, sim


def _result_text(result):
    result = copy.deepcopy(dict(result))
    for key in ("engine", "wall_time_s", "engine_note"):
        result.pop(key, None)
    return json.dumps(result, sort_keys=True, default=str)


def _state(sim):
    """Everything reclaim leaves behind, as comparable arrays."""
    kernel = sim.kernel
    reclaim = kernel.reclaim
    mem = kernel.mem
    out = {f"lru{i}": reclaim.lru.order(i) for i in range(4)}
    out["nr"] = reclaim.lru.nr.copy()
    for name in ("referenced", "workingset", "dirty", "file_id1", "file_page", "rmap_mm1",
                 "rmap_slot"):
        out[name] = getattr(reclaim, name).copy()
    out["scalars"] = np.array([reclaim.nonresident_age, reclaim.anon_cost, reclaim.file_cost,
                               reclaim.kswapd_failures, *reclaim.refault_snapshot])
    out["stats"] = np.array(list(reclaim.stats.values()))
    swap = reclaim.swap
    if swap is not None:
        for name in ("count", "cache", "shadow", "shadow_workingset", "slot1"):
            out[f"swap.{name}"] = getattr(swap, name).copy()
        out["swap.free"] = swap.free_slots[:swap.nfree].copy()
        out["swap.io"] = np.array([swap.swap_outs, swap.swap_ins, swap.device.reads,
                                   swap.device.writes, swap.device.pages_written])
    out["mem.refcount"] = mem.refcount.copy()
    out["mem.kind"] = mem.kind.copy()
    out["mem.free"] = mem.free_stack[:mem._stacked()].copy()
    out["mem.nfree"] = mem.nfree.copy()
    for i, shadow in enumerate(reclaim.file_shadow):
        out[f"file{i}.shadow"] = shadow.copy()
        out[f"file{i}.shadow_ws"] = reclaim.file_shadow_ws[i].copy()
        out[f"file{i}.frame"] = reclaim.files[i].frame.copy()
    for kt in kernel.kthreads:  # kswapd0, the balloon's kworker: where their work stands
        task = kt.task
        out[f"{kt.name}.thread"] = np.array([kt.owed_ns, kt.cpu_ns, kt.wakeups, task.state,
                                             task.runtime_ns, task.switches_in,
                                             -1 if task.cpu is None else task.cpu])
    for process in kernel.processes:
        mm = process.mm
        out[f"{process.name}.state"] = mm.state.copy()
        out[f"{process.name}.gfn"] = mm.gfn.copy()
        out[f"{process.name}.rss"] = np.array([mm.rss])
    return out


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_compiled_reclaim_matches_the_reference(shape, check):
    data = SHAPES[shape]
    for seed in ((1,) if check else (1, 7)):  # (checking after every batch is the slow part)
        ref, ref_sim = _run(data, "reference", seed, check)
        com, com_sim = _run(data, "compiled", seed, check)
        memory = ref["vms"]["vm0"]["memory"]
        assert memory["pgscan_kswapd"] + memory["pgscan_direct"] > 0, "no reclaim: a weak case"
        assert _result_text(com) == _result_text(ref), f"{shape} seed {seed}"
        want, got = _state(ref_sim), _state(com_sim)
        assert want.keys() == got.keys()
        for name in want:
            assert np.array_equal(want[name], got[name]), f"{shape} seed {seed}: {name} differs"


def test_the_shapes_reach_what_they_are_meant_to():
    """Each shape exercises its part of reclaim (on the reference engine): without this a
    differential test could pass by comparing two runs that never swapped or wrote back."""
    def memory(name):
        result, _ = _run(SHAPES[name], "reference", 1, False)
        return result["vms"]["vm0"]["memory"], result

    m, _ = memory("anon-nvme")
    assert m["swap_outs"] > 0 and m["swap_ra"] > 0 and m["refaults"] > 0
    m, _ = memory("file-dirty")
    assert m["file_writeback"] > 0
    m, _ = memory("file-clean")
    assert m["file_writeback"] == 0 and m["refaults"] > 0
    m0, _ = memory("mixed-swappiness-0")
    m200, _ = memory("mixed-swappiness-200")
    assert m0["swap_outs"] < m200["swap_outs"]
    m, result = memory("fork-shared-swap")
    assert m["swap_ins"] > 0 and result["vms"]["vm0"]["processes"]["c"]["cow_copies"] > 0
    m, _ = memory("balloon")
    assert m["balloon_inflated"] > 0 and m["pgsteal"] > 0
    m, result = memory("double-paging")
    assert m["swap_outs_host_swapped"] > 0
    m, result = memory("kswapd-one-vcpu")  # kswapd0 took the task's vCPU, and was preempted
    kswapd = result["vms"]["vm0"]["kernel_threads"]["kswapd0"]
    assert m["kswapd_cpu_ns"] > 0 and kswapd["switches_in"] > m["kswapd_wakeups"]
    m, result = memory("kswapd-host-preempted")  # its vCPU was taken away: charged > run
    kswapd = result["vms"]["vm0"]["kernel_threads"]["kswapd0"]
    assert m["kswapd_cpu_ns"] > 0 and kswapd["runtime_ns"] > kswapd["cpu_ns"]
    m, result = memory("balloon")
    assert m["balloon_cpu_ns"] == result["vms"]["vm0"]["kernel_threads"]["kworker/0:1"]["cpu_ns"] > 0


def test_after_scan_compiled_matches_the_reference_through_a_compaction():
    """``after_scan`` (reverse-map notes and inactive-anon adds after the access loop), whose
    compiled version compacts the queue in place when it reaches the end: a queue of 256
    entries, 240 of them stale (taken off the list), then 60 new frames, on both engines."""
    small = {"guest": {"memory": "64MiB"}, "processes": [{"name": "p", "vsegs": [
        {"name": "h", "type": "anon", "size": "1MiB"}], "threads": [{"steps": [
            {"op": "access", "vseg": "h", "accesses": 10}]}]}]}
    states = []
    for engine in ("reference", "compiled"):
        _, sim = _run(small, engine, 1, False)
        reclaim, mm = sim.kernel.reclaim, sim.kernel.processes[0].mm
        lru = reclaim.lru
        for lists in range(4):
            for frame in lru.order(lists):
                lru.remove(np.array([frame]))
        base = 5000
        lru.add(np.arange(base, base + 250), 0)
        lru.remove(np.arange(base, base + 240))  # stale entries, 10 still on the list
        assert lru._queues[0].frames.size == 256 and lru._queues[0].tail == 250
        popped = np.arange(base + 300, base + 360, dtype=np.int64)[::-1].copy()
        mm.gfn = np.full(1024, -1, dtype=np.int64)  # the exited process's table, refilled
        slots = np.arange(500, 580, dtype=np.int64)
        mm.gfn[slots[:60]] = popped[::-1]  # the slot of each new frame, in slot order
        reclaim.after_scan(mm, slots, popped)
        queue = lru._queues[0]
        assert (queue.frames.size, queue.head, queue.tail) == (256, 0, 70)  # compacted
        state = {"order": lru.order(0), "nr": lru.nr.copy(), "which": lru.which,
                 "stamp": lru.stamp.copy(), "mm1": reclaim.rmap_mm1.copy(),
                 "slot": reclaim.rmap_slot.copy()}
        assert list(state["order"][-60:]) == list(popped)  # in the order allocated
        assert (state["slot"][popped[::-1]] == slots[:60]).all()
        states.append(state)
    reference, compiled = states
    assert compiled["order"].size == reference["order"].size == 70
    for key in reference:
        np.testing.assert_array_equal(compiled[key], reference[key], err_msg=key)
