"""vmm_handle_page_fault scenarios of docs/scenarios.md (ALMOS-MKH scenarios 1-11, 18-20, 24).

Costs and conventions are those of test_cluster_support.  The ``*_pgfault_cost`` counters
are the time from the handler's entry (after the 300 ns exception entry) to its return.
"""

from __future__ import annotations

import numpy as np
from test_cluster_support import (
    BASE,
    PAGE,
    almos,
    nap,
    process,
    run_checked,
    run_until,
    thread,
    touch,
    vseg,
)

from pfsim.api import run
from pfsim.cluster.gpt import EXECUTABLE, MAPPED, WRITABLE

BANK = 8192  # frames per bank: 64 MiB / 2 clusters (16 MiB / 4 KiB... per cluster of 4: 4096)


def _gpt(sim, name="p"):
    return next(p for p in sim.kernel.processes if p.name == name).vmm


def _slot(sim, addr, name="p"):
    return next(p for p in sim.kernel.processes if p.name == name).mm.slot_of(addr)


def test_first_touch_of_data_in_the_reference_scenario_1():
    """Scenario 1: a thread in Z = 0 reads DATA page 0 (vpn 0x10000, page(v) = 0).

    The 2-page .elf mapper was cached at spawn, page 0 in bank 0 (both banks equally free)
    and page 1 in bank 1.  Local path (L = R): lookup 60, PT2 creation in Z 20+1500+20,
    lock 20, allocate in page(v) = 0 and copy the local mapper page 2500, set 20:
    local_pgfault_cost = 4140, l = 1, f = g = 0.  Frames allocated: 2 mapper + 1 PT2 + 1.
    GPT(Z) maps v readable and writable (DATA is RW); copy 1 has nothing.
    """
    procs = [process("p", [vseg("d", "data", 2)], [thread(0, [touch(BASE), nap(1_000_000)])])]
    sim = run_until(almos(procs), 500_000)
    gpt, slot = _gpt(sim), _slot(sim, BASE)
    assert gpt.state[0, slot] & (MAPPED | WRITABLE) == MAPPED | WRITABLE
    assert gpt.gfn[0, slot] // BANK == 0
    assert not gpt.state[1].any()
    assert sim.kernel.mem.allocated_total == 4
    task = sim.kernel.processes[0].threads[0].data.counters
    assert (task.local_pgfault_nr, task.false_pgfault_nr, task.global_pgfault_nr) == (1, 0, 0)
    assert task.local_pgfault_cost == 4140


def test_false_fault_from_another_cluster_scenario_2():
    """Scenario 2: after scenario 1, a thread in X = 1 (100 us later) reads the same page.

    vmm_get_vseg misses locally (60), reads the reference VSL remotely (60 + 80) and copies
    the vseg (400): 600.  PT2 created in X: 1540.  Lock and unlock the local PTE: 40.  Lock
    the reference PTE (20 + 80), lock the local one (20), copy the reference entry (20),
    unlock the reference (100).  false_pgfault_cost = 2420, f = 1, no page allocated (only
    X's PT2).  GPT(X) now holds Z's entry; VSL(X) has the data vseg.
    """
    procs = [process("p", [vseg("d", "data", 2)],
                     [thread(0, [touch(BASE), nap(1_000_000)]),
                      thread(2, [nap(100_000), touch(BASE), nap(1_000_000)])])]
    sim = run_until(almos(procs), 500_000)
    gpt, slot = _gpt(sim), _slot(sim, BASE)
    assert gpt.gfn[1, slot] == gpt.gfn[0, slot] and gpt.state[1, slot] == gpt.state[0, slot]
    assert gpt.vsl[1, gpt.vseg_index("d")] == 1
    assert sim.kernel.mem.allocated_total == 5  # 2 mapper + PT2 in Z + page + PT2 in X
    task = sim.kernel.processes[0].threads[1].data.counters
    assert (task.false_pgfault_nr, task.local_pgfault_nr, task.global_pgfault_nr) == (1, 0, 0)
    assert task.false_pgfault_cost == 2420


def test_global_fault_scenario_3():
    """Scenario 3 (4 clusters, 2x2 mesh): a thread in X = 1 reads DATA page 2 (page(v) = 2,
    two hops from X); a thread in Y = 2 exists but only sleeps.

    The 4-page mapper was cached one page per bank (page k in bank k).  Lookup with the vseg
    copy: 60 + (60 + 80) + 400 = 600.  PT2 in X: 1540.  Lock/unlock local: 40.  PT2 in Z,
    remotely (1 hop): 20+80 + 1500+1000 + 20+80 = 2700.  Lock the reference: 100; the local
    PTE: 20.  Allocate in bank 2 and copy from the mapper page in bank 2: 2500 + (1000+10)
    + (1000+10) = 4520.  Set the reference (100), then the local PTE (20).
    global_pgfault_cost = 9640, g = 1.  GPT(Z) and GPT(X) map the same frame, in bank 2;
    GPT(Y) is untouched.
    """
    procs = [process("p", [vseg("d", "data", 4)],
                     [thread(2, [touch(BASE + 2 * PAGE), nap(1_000_000)]),
                      thread(4, [nap(2_000_000)])])]
    sim = run_until(almos(procs, clusters=4), 500_000)
    gpt, slot = _gpt(sim), _slot(sim, BASE + 2 * PAGE)
    bank = sim.kernel.mem.bank
    assert gpt.gfn[0, slot] == gpt.gfn[1, slot] and gpt.gfn[1, slot] // bank == 2
    assert gpt.copy_exists[2] and not gpt.state[2].any()
    task = sim.kernel.processes[0].threads[0].data.counters
    assert (task.global_pgfault_nr, task.local_pgfault_nr, task.false_pgfault_nr) == (1, 0, 0)
    assert task.global_pgfault_cost == 9640


def test_two_clusters_race_on_one_public_page_scenario_4():
    """Scenario 4 (4 clusters): threads in X = 1 and Y = 2 (both one hop from Z = 0) read the
    same untouched ANON page at 2000 ns; X's fault runs first.

    X (global): entry to 2300; lookup with vseg copy to 2900 (VSL(X) write-held 2500-2900);
    PT2 in X 2900-4440; local lock/unlock to 4480; PT2 in Z created remotely 4480-7180;
    reference lock 7180-9900; local lock from 7280; zero a page in Z's bank (the anon vseg
    is placed in the reference cluster) remotely: 1500 + 1000; set reference at 9900, local
    at 9920.  global_pgfault_cost = 9920 - 2300 = 7620.
    Y (false): its own vseg copy and PT2 take it to 4480; Z's PT2 is still being created:
    spins to 7180 (pt2 wait 2700); the reference PTE is held until 9900: spins (wait 2720);
    locks it to 10000, its local PTE to 10020, copies the entry (10040), unlocks the
    reference (10140).  false_pgfault_cost = 7840, waits 5420 ns.
    Exactly one page allocated; both copies map it (INV-1, INV-2).
    """
    procs = [process("p", [vseg("a", "anon")],
                     [thread(2, [touch(BASE), nap(1_000_000)]),
                      thread(4, [touch(BASE), nap(1_000_000)])])]
    sim = run_until(almos(procs, clusters=4), 500_000)
    gpt, slot = _gpt(sim), _slot(sim, BASE)
    assert gpt.gfn[1, slot] == gpt.gfn[2, slot] == gpt.gfn[0, slot]
    assert int(gpt.placement.sum()) == 1
    x, y = (t.data.counters for t in sim.kernel.processes[0].threads)
    assert (x.global_pgfault_nr, x.false_pgfault_nr, x.global_pgfault_cost) == (1, 0, 7620)
    assert (y.false_pgfault_nr, y.global_pgfault_nr, y.false_pgfault_cost) == (0 + 1, 0, 7840)
    assert (y.pt2_lock_waits, y.pte_lock_waits, y.pte_lock_wait_ns) == (1, 1, 5420)


def test_same_cluster_race_scenario_5():
    """Scenario 5: two threads of X = 1 (vCPUs 2 and 3) read the same untouched ANON page at
    2000 ns.  The first does scenario 4's global fault (ends at 9920).  The second waits for
    the first's vseg copy (VSL write lock until 2900: rwlock wait 600), searches (2960),
    waits for the PT2 (to 4440) and for the local PTE (to 9920), finds it mapped: step 3,
    a false fault (unlock 9960): false_pgfault_cost = 9960 - 2300 = 7660."""
    procs = [process("p", [vseg("a", "anon")],
                     [thread(2, [touch(BASE), nap(1_000_000)]),
                      thread(3, [touch(BASE), nap(1_000_000)])])]
    result = run_checked(almos(procs))
    first, second = result.tasks["p/0"], result.tasks["p/1"]
    assert (first["global_pgfault_nr"], first["global_pgfault_cost"]) == (1, 7620)
    assert (second["false_pgfault_nr"], second["false_pgfault_cost"]) == (1, 7660)
    assert (second["rwlock_waits"], second["rwlock_wait_ns"]) == (1, 600)
    assert (second["pt2_lock_waits"], second["pte_lock_waits"]) == (1, 1)
    assert result.processes["p"]["pages_placed"] == {"a": [1, 0]}


def test_reference_versus_remote_race_scenario_6():
    """Scenario 6: one thread in Z, one in X, same untouched ANON page at 2000 ns.

    Z first: local path, lookup 60, PT2 in Z 2360-3900, lock, zero 1500, set at 5440:
    local_pgfault_cost = 3140.  X: vseg copy and PT2 to 4480, the reference PTE is held
    until 5440 (wait 960), lock 5540, local 5560, copy 5580, unlock 5680: false, cost 3380.
    X first: X does scenario 4's global fault (7620); Z's lookup hits at 2360, Z's PT2 is
    being created by X until 7180 (wait 4820), its PTE held until 9900 (wait 2720); lock
    9920, mapped: step 3, unlock 9940: false, cost 7640.  One page either way.
    """
    z_first = [thread(0, [touch(BASE), nap(1_000_000)]), thread(2, [touch(BASE), nap(1_000_000)])]
    result = run(almos([process("p", [vseg("a", "anon")], z_first)]))
    z, x = result.tasks["p/0"], result.tasks["p/1"]
    assert (z["local_pgfault_nr"], z["local_pgfault_cost"]) == (1, 3140)
    assert (x["false_pgfault_nr"], x["false_pgfault_cost"], x["pte_lock_wait_ns"]) == (1, 3380, 960)
    x_first = list(reversed(z_first))
    result = run(almos([process("p", [vseg("a", "anon")], x_first)]))
    x, z = result.tasks["p/0"], result.tasks["p/1"]
    assert (x["global_pgfault_nr"], x["global_pgfault_cost"]) == (1, 7620)
    assert (z["false_pgfault_nr"], z["false_pgfault_cost"], z["pte_lock_wait_ns"]) == (1, 7640, 7540)
    for res in (result,):
        assert sum(res.processes["p"]["pages_placed"]["a"]) == 1


def test_private_stack_fault_scenario_7():
    """Scenario 7: a thread in X writes a fresh page of its own stack: the stack vseg is in
    VSL(X) only; private path: lookup 60, PT2 in X 1540, lock 20, zero 1500, set 20:
    local_pgfault_cost = 3140, l = 1, the page in X's bank; VSL(Z) and GPT(Z) unchanged."""
    steps = [{"op": "access", "vseg": "@stack", "accesses": 1, "write_ratio": 1.0,
              "pattern": "sequential"}, nap(1_000_000)]
    procs = [process("p", [], [thread(0, [nap(2_000_000)]), thread(2, steps)])]
    sim = run_until(almos(procs), 500_000)
    gpt = _gpt(sim)
    stack = sim.kernel.processes[0].threads[1].data.stack
    v = gpt.vseg_index(stack.name)
    assert (gpt.vsl[0, v], gpt.vsl[1, v]) == (0, 1)
    assert not gpt.state[0].any()
    mapped = gpt.mapped_slots(1)
    assert mapped.size == 1 and gpt.gfn[1, mapped[0]] // BANK == 1
    counters = sim.kernel.processes[0].threads[1].data.counters
    assert (counters.local_pgfault_nr, counters.local_pgfault_cost) == (1, 3140)


def test_code_replication_scenario_8():
    """Scenario 8 (4 clusters): threads in X = 1 and Y = 2 fetch the same code page: each
    copies the CODE vseg from VSL(Z) and allocates its own page in its own bank, filled from
    the .elf mapper: two distinct frames, l = 1 each, nothing mapped in GPT(Z)."""
    fetch = {"op": "access", "vseg": "c", "accesses": 1, "fetch": True, "pattern": "sequential"}
    procs = [process("p", [vseg("c", "code", 1)],
                     [thread(2, [fetch, nap(1_000_000)]), thread(4, [fetch, nap(1_000_000)])])]
    sim = run_until(almos(procs, clusters=4), 500_000)
    gpt, slot = _gpt(sim), _slot(sim, BASE)
    bank = sim.kernel.mem.bank
    assert gpt.gfn[1, slot] != gpt.gfn[2, slot]
    assert (gpt.gfn[1, slot] // bank, gpt.gfn[2, slot] // bank) == (1, 2)
    assert gpt.state[1, slot] & EXECUTABLE and not gpt.state[1, slot] & WRITABLE
    assert not gpt.state[0].any()
    for task in sim.kernel.processes[0].threads:
        assert task.data.counters.local_pgfault_nr == 1
    assert [int(x) for x in gpt.placement[gpt.vseg_index("c")]] == [0, 1, 1, 0]


def test_illegal_address_scenario_9():
    """Scenario 9: a load at an address in no vseg: USER_ERROR, the process is terminated;
    no fault counter, no page allocated, no PTE lock left held."""
    procs = [process("p", [vseg("a", "anon")], [thread(2, [touch(0x5000_0000)])])]
    data = almos(procs)
    result = run_checked(data)
    p = result.processes["p"]
    assert (p["segv"], p["user_errors"], p["exit"]) == (1, 1, "segv")
    assert p["signal"]["outcome"] == "USER_ERROR"
    assert p["false_pgfault_nr"] + p["local_pgfault_nr"] + p["global_pgfault_nr"] == 0
    assert result.vm["memory"]["frames_allocated_total"] == 0
    assert result.vm["clusters"]["outcomes"] == {"NON_FATAL": 0, "USER_ERROR": 1, "KERNEL_PANIC": 0}


def test_write_to_code_is_two_exceptions_scenario_10():
    """Scenario 10: a store to an unmapped code page: the page fault maps it read-only and
    executable (l = 1), the re-executed store raises a write violation, vmm_handle_cow finds
    no COW: USER_ERROR, the process is terminated (2 exceptions, 1 fault counted)."""
    procs = [process("p", [vseg("c", "code", 1)], [thread(0, [touch(BASE, write=True)])])]
    result = run_checked(almos(procs))
    p = result.processes["p"]
    assert (p["local_pgfault_nr"], p["user_errors"], p["pgfault"], p["exit"]) == (1, 1, 2, "segv")
    assert result.vm["clusters"]["outcomes"] == {"NON_FATAL": 1, "USER_ERROR": 1, "KERNEL_PANIC": 0}


def test_fetch_from_data_and_user_access_to_kernel_scenario_11():
    """Scenario 11: fetching from an untouched DATA page first maps it (RW, not executable:
    l = 1), the refetch raises an exec violation: USER_ERROR.  A user load from a kernel
    address is a privilege violation: USER_ERROR with no page fault at all."""
    fetch = {"op": "access", "vseg": "d", "accesses": 1, "fetch": True, "pattern": "sequential"}
    procs = [process("x", [vseg("d", "data", 1)], [thread(0, [fetch])]),
             process("k", [], [thread(2, [touch(0xFFFF888000001000)])])]
    result = run(almos(procs))
    x, k = result.processes["x"], result.processes["k"]
    assert (x["local_pgfault_nr"], x["user_errors"], x["exit"]) == (1, 1, "segv")
    assert (k["user_errors"], k["local_pgfault_nr"], k["exit"]) == (1, 0, "segv")


def _exhaustion(oom_rule: str):
    """Bank 1 full when the victim (in Z = 0) faults a DATA page placed in cluster 1.

    8 MiB in 2 banks of 1024 frames, 128 reserved per bank: 896 free each.  At spawn the
    victim's 2-page mapper takes one frame per bank (895 left in bank 1).  The hog (cluster
    1) writes 893 pages of its anon vseg, which with its 2 PT2s fills bank 1.
    """
    hog_steps = [{"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
                  "accesses": 893, "write_ratio": 1.0}, nap(50_000_000)]
    procs = [process("hog", [vseg("h", "anon", 1024)], [thread(2, hog_steps)], cluster=1),
             process("victim", [vseg("d", "data", 2)],
                     [thread(0, [nap(20_000_000), touch(BASE + PAGE, write=True)])])]
    return almos(procs, memory="8MiB", vmm={"oom_rule": oom_rule}, mm={"kernel_reserved": "1MiB"})


def test_memory_exhaustion_halts_the_core_scenario_18():
    """Scenario 18 (2020 rule): no page in bank 1: KERNEL_PANIC; vCPU 0 halts for good with
    the victim on it, its PTE lock released, no fault counter; the hog finishes normally."""
    data = _exhaustion("2020")
    sim = run_until(data, 30_000_000)
    assert sim.kernel.mem.nfree2d[1] == 0
    result = sim.run()
    victim = result["vms"]["vm0"]["processes"]["victim"]
    assert victim["kernel_panics"] == 1 and victim["exit"] == "running"
    assert victim["local_pgfault_nr"] + victim["global_pgfault_nr"] + victim["false_pgfault_nr"] == 0
    clusters = result["vms"]["vm0"]["clusters"]
    assert clusters["outcomes"]["KERNEL_PANIC"] == 1
    assert [h["vcpu"] for h in clusters["halted_vcpus"]] == [0]
    assert result["vms"]["vm0"]["processes"]["hog"]["exit"] == "exited"
    gpt = next(p for p in sim.kernel.processes if p.name == "victim").vmm
    assert int(gpt.lock_rel.max()) <= result["sim_time_ns"]


def test_memory_exhaustion_2018_kills_the_process_scenario_18():
    """Scenario 18 (2018 rule): the same exhaustion is a USER_ERROR: the victim is killed."""
    result = run(_exhaustion("2018"))
    victim = result.processes["victim"]
    assert (victim["user_errors"], victim["kernel_panics"], victim["exit"]) == (1, 0, "segv")
    assert result.vm["clusters"]["halted_vcpus"] == []


def test_pt2_creation_race_scenario_19():
    """Scenario 19: two threads of Z fault different pages of one untouched 2 MiB region at
    2000 ns.  The first creates the PT2 (2360-3900) and maps its page (local cost 3140); the
    second, after its lookup at 2360, spins on the PTE1 until 3900 (pt2_lock_waits 1, 1540
    ns), then locks, zeroes and maps its own page by 5440: cost 60 + 1540 + 20 + 1500 + 20 =
    3140 as well.  Exactly one PT2 in Z's bank."""
    procs = [process("p", [vseg("a", "anon")],
                     [thread(0, [touch(BASE, True), nap(1_000_000)]),
                      thread(1, [touch(BASE + PAGE, True), nap(1_000_000)])])]
    sim = run_until(almos(procs), 500_000)
    gpt = _gpt(sim)
    assert int((gpt.pt2 >= 0).sum()) == 1 and gpt.pt2[0].max() // BANK == 0
    first, second = (t.data.counters for t in sim.kernel.processes[0].threads)
    assert (first.local_pgfault_cost, first.pt2_lock_waits) == (3140, 0)
    assert (second.local_pgfault_cost, second.pt2_lock_waits, second.pte_lock_wait_ns) == (3140, 1, 1540)


def test_mmap_anon_from_a_non_reference_cluster_scenario_20():
    """Scenario 20: an anon vseg mapped by a thread of X (``cluster = 1``) is registered in
    VSL(Z) only; X's first touch copies it into VSL(X) and is a global fault whose page is
    placed in X."""
    procs = [process("p", [vseg("a", "anon", cluster=1)], [thread(2, [touch(BASE, True), nap(10**6)])])]
    sim = run_until(almos(procs), 500_000)
    gpt = _gpt(sim)
    v = gpt.vseg_index("a")
    assert gpt.vsl[0, v] == 1 and gpt.vsl[1, v] == 1
    counters = sim.kernel.processes[0].threads[0].data.counters
    assert counters.global_pgfault_nr == 1
    assert [int(x) for x in gpt.placement[v]] == [0, 1]


def test_access_to_another_clusters_private_address_scenario_24():
    """Scenario 24: a thread in X reads the stack of thread 0, which lives in Z (so its stack
    vseg is in VSL(Z)): the vseg is copied into VSL(X) and X gets a new zero page of its own
    (private: local path, l = 1): two different frames for one address."""
    write_stack = {"op": "access", "vseg": "@stack", "accesses": 1, "write_ratio": 1.0,
                   "pattern": "sequential"}
    read_other = {"op": "access", "vseg": "stack.0", "accesses": 1, "pattern": "sequential"}
    procs = [process("p", [], [thread(0, [write_stack, nap(2_000_000)]),
                               thread(2, [nap(100_000), read_other, nap(1_000_000)])])]
    sim = run_until(almos(procs), 500_000)
    gpt = _gpt(sim)
    slot = int(gpt.mapped_slots(0)[0])
    assert gpt.state[1, slot] & MAPPED and gpt.gfn[1, slot] != gpt.gfn[0, slot]
    assert (gpt.gfn[0, slot] // BANK, gpt.gfn[1, slot] // BANK) == (0, 1)
    reader = sim.kernel.processes[0].threads[1].data.counters
    assert (reader.local_pgfault_nr, reader.segv) == (1, 0)
    assert np.array_equal(np.nonzero(gpt.vsl[1])[0],
                          sorted([gpt.vseg_index("stack.0"), gpt.vseg_index("stack.1")]))
