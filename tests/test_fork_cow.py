"""fork, copy-on-write, munmap and exec: ALMOS-MKH scenarios 12-17 and 21-23 of docs/scenarios.md,
and the flat kernel's fork + COW (Linux scenario 21 of docs/scenarios.md).

Conventions of test_cluster_support.  DATA page A is the first page of vseg ``d`` (vpn
0x10000, so page(v) = 0: a COW copy of it is placed in cluster 0).  "COW reset" is a COW
fault with no fork pending: COW cleared, WRITABLE set, no copy (counted in cow_reuses).
"""

from __future__ import annotations

import pytest
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
from pfsim.cluster.gpt import COW, MAPPED, WRITABLE
from pfsim.machine.frames import FREE

A = BASE


def _proc(sim, name):
    return next(p for p in sim.kernel.processes if p.name == name)


def _fork(steps, cluster=None, name=None):
    body = {"op": "fork", "steps": steps}
    if cluster is not None:
        body["cluster"] = cluster
    if name is not None:
        body["name"] = name
    return body


def _scenario_12(parent_first: bool):
    """P (reference 0) maps A from threads in clusters 0 and 1, forks C into cluster 2."""
    child = [nap(1_000_000 if not parent_first else 2_000_000), touch(A, True), nap(500_000)]
    main = [touch(A, True), nap(200_000), _fork(child, cluster=2, name="c")]
    main += [nap(1_000_000), touch(A, True), {"op": "wait"}] if parent_first else \
            [{"op": "wait"}, touch(A, True), nap(1_000_000)]
    procs = [process("p", [vseg("d", "data", 4)],
                     [thread(0, main), thread(2, [nap(100_000), touch(A), nap(4_000_000)])])]
    return almos(procs, clusters=4)


def test_fork_then_child_writes_then_parent_writes_scenario_12():
    """Scenario 12.  At fork, A (forks 0) is mapped in GPT(0,P) and GPT(1,P): both become
    COW and read-only, GPT(2,C) gets A COW too, forks(A) = 1.  The child writes A (about
    1 ms later): forks 1 -> 0, a new page B in page(v) = 0 gets a copy, C maps B writable;
    no page-fault counter moves (cow_copies 1).  The parent writes after wait(): forks 0, so
    no copy: COW reset in both its copies, which map A writable (cow_reuses 1).  Two pages
    of d were allocated in all; forks(A) = 0."""
    sim = run_until(_scenario_12(parent_first=False), 400_000)
    p, c = _proc(sim, "p"), _proc(sim, "c")
    slot = p.mm.slot_of(A)
    page = int(p.vmm.gfn[0, slot])
    for copy in (0, 1):
        assert p.vmm.state[copy, slot] & (MAPPED | COW | WRITABLE) == MAPPED | COW
        assert p.vmm.gfn[copy, slot] == page
    assert c.vmm.ref == 2 and c.vmm.state[2, slot] & COW and c.vmm.gfn[2, slot] == page
    assert sim.kernel.mem.forks[page] == 1
    sim.sim.run(until_ns=1_600_000)  # the child has written
    assert sim.kernel.mem.forks[page] == 0
    new = int(c.vmm.gfn[2, slot])
    assert new != page and new // sim.kernel.mem.bank == 0
    assert c.vmm.state[2, slot] & (WRITABLE | COW) == WRITABLE
    result = sim.run()
    procs = result["vms"]["vm0"]["processes"]
    assert (procs["c"]["cow_copies"], procs["c"]["cow_reuses"], procs["c"]["pgfault"]) == (1, 0, 1)
    assert procs["c"]["false_pgfault_nr"] + procs["c"]["local_pgfault_nr"] == 0
    assert (procs["p"]["cow_copies"], procs["p"]["cow_reuses"]) == (0, 1)
    assert (procs["p"]["local_pgfault_nr"], procs["p"]["false_pgfault_nr"]) == (1, 1)
    assert sum(procs["p"]["pages_placed"]["d"]) + sum(procs["c"]["pages_placed"]["d"]) == 2
    assert procs["p"]["rpcs"] == 2  # PROCESS_MAKE_FORK to cluster 2, VMM_SET_COW back to 0


def test_fork_then_parent_writes_first_scenario_13():
    """Scenario 13, the mirror of 12: the parent writes A while the child lives (forks 1 ->
    0): the parent gets the new page, in page(v) = 0, published in both its copies; the
    child writes later, finds no fork pending, keeps A (COW reset)."""
    sim = run_until(_scenario_12(parent_first=True), 1_500_000)
    p, c = _proc(sim, "p"), _proc(sim, "c")
    slot = p.mm.slot_of(A)
    page = int(c.vmm.gfn[2, slot])
    new = int(p.vmm.gfn[0, slot])
    assert new != page and p.vmm.gfn[1, slot] == new
    assert p.vmm.state[0, slot] & (WRITABLE | COW) == WRITABLE
    result = sim.run()
    procs = result["vms"]["vm0"]["processes"]
    assert (procs["p"]["cow_copies"], procs["c"]["cow_reuses"], procs["c"]["cow_copies"]) == (1, 1, 0)


def test_two_forks_three_writers_scenario_14():
    """Scenario 14: two forks make forks(A) = 2; the first writer (child 1) copies (forks 1),
    the second (child 2) copies (forks 0), the third (the parent) keeps A: 3 pages of d."""
    def child(delay):
        return [nap(delay), touch(A, True), nap(3_000_000)]
    main = [touch(A, True), _fork(child(1_000_000), 1, "c1"), _fork(child(2_000_000), 1, "c2"),
            nap(3_000_000), touch(A, True), {"op": "wait"}]
    result = run_checked(almos([process("p", [vseg("d", "data", 4)], [thread(0, main)])]))
    procs = result.processes
    assert (procs["c1"]["cow_copies"], procs["c2"]["cow_copies"], procs["p"]["cow_reuses"]) == (1, 1, 1)
    total = sum(sum(procs[n]["pages_placed"].get("d", [0])) for n in ("p", "c1", "c2"))
    assert total == 3


def test_page_untouched_at_fork_scenario_15():
    """Scenario 15: DATA page A unmapped in P at fork: nothing is COW; the parent (in its
    reference 0) and the child (in its own reference 1) each take an ordinary local fault
    and get separate pages filled from the .elf mapper."""
    main = [_fork([touch(A, True), nap(100_000)], 1, "c"), touch(A, True), {"op": "wait"}]
    result = run(almos([process("p", [vseg("d", "data", 4)], [thread(0, main)])]))
    p, c = result.processes["p"], result.processes["c"]
    assert (p["local_pgfault_nr"], c["local_pgfault_nr"]) == (1, 1)
    assert p["cow_copies"] + p["cow_reuses"] + c["cow_copies"] + c["cow_reuses"] == 0
    assert p["pages_placed"]["d"] == [1, 0] and c["pages_placed"]["d"] == [1, 0]


def test_cow_from_a_parent_copy_outside_the_reference_scenario_16():
    """Scenario 16: P has threads in Z = 0 and X = 1, A mapped in both copies; P forks; the
    thread in X writes A: the reference PTE (in Z) is locked, the private copy is placed in
    page(v) = 0, and both GPT(Z,P) and GPT(X,P) are updated to it, writable."""
    main = [touch(A, True), nap(100_000), _fork([nap(3_000_000)], 1, "c"), nap(3_000_000)]
    other = [nap(50_000), touch(A), nap(300_000), touch(A, True), nap(1_000_000)]
    sim = run_until(almos([process("p", [vseg("d", "data", 4)], [thread(0, main), thread(2, other)])]),
                    1_000_000)
    p, c = _proc(sim, "p"), _proc(sim, "c")
    slot = p.mm.slot_of(A)
    new = int(p.vmm.gfn[0, slot])
    assert new == p.vmm.gfn[1, slot] != c.vmm.gfn[1, slot]
    assert new // sim.kernel.mem.bank == 0
    for copy in (0, 1):
        assert p.vmm.state[copy, slot] & (WRITABLE | COW) == WRITABLE
    writer = p.threads[1].data.counters
    assert (writer.cow_copies, writer.false_pgfault_nr) == (1, 1)


def test_stack_cow_scenario_17():
    """Scenario 17 (4 clusters): the forking thread lives in X = 1 and has written one page
    of its stack; the child goes to Y = 2.  The child writes that stack page first: private
    path, forks 1 -> 0, the new page is allocated in Y and only GPT(Y,C) changes.  The
    parent writes it after wait(): no fork pending, it keeps its page (COW reset), only
    GPT(X,P) changes."""
    write_stack = {"op": "access", "vseg": "@stack", "accesses": 1, "write_ratio": 1.0,
                   "pattern": "sequential"}
    forker = [write_stack, _fork([write_stack, nap(1_000_000)], 2, "c"), {"op": "wait"},
              write_stack, nap(1_000_000)]
    procs = [process("p", [], [thread(0, [nap(3_000_000)]), thread(2, forker)])]
    sim = run_until(almos(procs, clusters=4), 400_000)
    p, c = _proc(sim, "p"), _proc(sim, "c")
    bank = sim.kernel.mem.bank
    slot = int(p.vmm.mapped_slots(1)[0])
    assert c.vmm.gfn[2, slot] // bank == 2 and p.vmm.gfn[1, slot] // bank == 1
    assert c.vmm.state[2, slot] & WRITABLE and not p.vmm.state[0, slot]
    result = sim.run()
    procs = result["vms"]["vm0"]["processes"]
    assert (procs["c"]["cow_copies"], procs["p"]["cow_reuses"], procs["p"]["cow_copies"]) == (1, 1, 0)
    assert procs["c"]["pages_placed"]["stack.1"] == [0, 0, 1, 0]


def test_munmap_of_a_shared_anon_vseg_scenario_21():
    """Scenario 21 (4 clusters): an anon vseg (pages in Z = 0) is read from Z, X = 1 and
    Y = 2, then Z munmaps it: it leaves all three VSLs, every entry is reset, each of its 4
    pages is freed exactly once (by the reference), with one RPC_VMM_REMOVE_VSEG per remote
    copy; a later access from X is a USER_ERROR."""
    read_all = {"op": "access", "vseg": "a", "pattern": "sequential", "stride": "4KiB", "accesses": 4}
    procs = [process("p", [vseg("a", "anon", 4)],
                     [thread(0, [read_all, nap(500_000), {"op": "munmap", "vseg": "a"}, nap(10**6)]),
                      thread(2, [nap(100_000), read_all, nap(10**6), touch(A)]),
                      thread(4, [nap(200_000), read_all, nap(2_000_000)])])]
    sim = run_until(almos(procs, clusters=4), 400_000)
    p = _proc(sim, "p")
    v = p.vmm.vseg_index("a")
    frames = {int(f) for f in p.vmm.gfn[0, p.vmm.slots(v)]}
    assert len(frames) == 4 and all(p.vmm.gfn[c, p.vmm.slots(v)].min() >= 0 for c in (1, 2))
    sim.sim.run(until_ns=800_000)
    assert not p.vmm.vsl[:, v].any() and not p.vmm.state.any()
    assert all(sim.kernel.mem.kind[f] == FREE for f in frames)
    result = sim.run()
    proc = result["vms"]["vm0"]["processes"]["p"]
    assert proc["rpcs"] == 2 and proc["user_errors"] == 1 and proc["exit"] == "segv"


def test_exec_scenario_22():
    """Scenario 22: P (threads in Z = 0 and X = 1) has DATA pages mapped and a live fork
    child sharing them (forks 1).  The Z thread execs: the X thread is deleted, copy 1 is
    destroyed (its PT2 freed, the X thread's stack page freed), VSL(Z) holds fresh code and
    data (nothing mapped), and the DATA page is not freed: its fork count drops to 0 and the
    child keeps it."""
    write_stack = {"op": "access", "vseg": "@stack", "accesses": 1, "write_ratio": 1.0,
                   "pattern": "sequential"}
    main = [touch(A, True), nap(100_000), _fork([nap(5_000_000)], 1, "c"), nap(100_000),
            {"op": "exec"}, nap(1_000_000)]
    procs = [process("p", [vseg("c0", "code", 1, base=0x400000), vseg("d", "data", 4),
                           vseg("h", "anon", 4, base=0x20000000)],
                     [thread(0, main), thread(2, [write_stack, touch(A), nap(10**7)])])]
    sim = run_until(almos(procs), 150_000)
    p, c = _proc(sim, "p"), _proc(sim, "c")
    slot = p.mm.slot_of(A)
    page = int(p.vmm.gfn[0, slot])
    stack_page = int(p.vmm.gfn[1, p.vmm.mapped_slots(1, p.vmm.vseg_index("stack.1"))[0]])
    assert sim.kernel.mem.forks[page] == 1
    sim.sim.run(until_ns=500_000)
    assert p.threads[1].state.name == "DEAD"
    assert not p.vmm.copy_exists[1] and not (p.vmm.pt2[1] >= 0).any()
    registered = {p.vmm.vsegs[v].name for v in range(len(p.vmm.vsegs)) if p.vmm.vsl[0, v]}
    assert registered == {"c0", "d", "stack.0"}
    assert not p.vmm.state.any()
    assert sim.kernel.mem.forks[page] == 0 and sim.kernel.mem.kind[page] != FREE
    assert c.vmm.gfn[1, slot] == page
    assert sim.kernel.mem.kind[stack_page] == FREE


@pytest.mark.parametrize("user_error", [True, False])
def test_concurrent_cow_from_two_clusters_scenario_23(user_error):
    """Scenario 23 (4 clusters): threads of P in X = 1 and Y = 2 (both one hop from Z) map A
    with identical false faults 100 us apart, P forks (A COW, forks 1), and both write A at
    the same instant (their naps differ by those 100 us).  X runs first: copy (forks 1 -> 0)
    and global update of the reference and both copies.  Y's exception was raised before the
    update; it locks the reference PTE after X releases it and finds COW cleared.  With
    cow_race_is_user_error (the code as read) that is a USER_ERROR: P is terminated; without,
    Y resumes with no copy.  cow_races counts the race either way."""
    main = [touch(A, True), nap(300_000), _fork([nap(5_000_000)], 3, "c"), nap(3_000_000)]
    x = [nap(100_000), touch(A), nap(800_000), touch(A, True), nap(1_000_000)]
    y = [nap(200_000), touch(A), nap(700_000), touch(A, True), nap(1_000_000)]
    procs = [process("p", [vseg("d", "data", 4)], [thread(0, main), thread(2, x), thread(4, y)])]
    result = run_checked(almos(procs, clusters=4, vmm={"cow_race_is_user_error": user_error}))
    p = result.processes["p"]
    assert result.vm["clusters"]["cow_races"] == 1
    assert result.tasks["p/1"]["cow_copies"] == 1
    assert result.vm["clusters"]["switches"]["cow_race_is_user_error"] is user_error
    if user_error:
        assert (result.tasks["p/2"]["user_errors"], p["exit"]) == (1, "segv")
    else:
        assert (result.tasks["p/2"]["user_errors"], p["exit"], p["cow_copies"]) == (0, "exited", 1)


def test_child_exit_releases_its_pending_forks():
    """A child that exits without writing releases its pending forks (``vmm_remove_vseg``): the
    parent's later write is a COW reset, not a copy."""
    main = [touch(A, True), _fork([nap(10_000)], 1, "c"), {"op": "wait"}, touch(A, True)]
    result = run_checked(almos([process("p", [vseg("d", "data", 4)], [thread(0, main)])]))
    assert (result.processes["p"]["cow_copies"], result.processes["p"]["cow_reuses"]) == (0, 1)


def test_flat_fork_copy_while_shared_reuse_when_exclusive_linux_scenario_21():
    """Linux scenario 21 of docs/scenarios.md on the flat kernel (clusters = 1): the parent writes
    two anon pages (2 minor faults, 2 frames), forks a child that sleeps 1 ms and exits,
    writes page 0 at once: shared (refcount 2) -> copy (minor fault, third frame); waits for
    the child, writes page 1: refcount back to 1 -> reuse, no allocation.  Parent min_flt 4,
    cow_copies 1, cow_reuses 1; 3 frames allocated; the child faulted nothing."""
    write = {"op": "access", "vseg": "a", "pattern": "sequential", "stride": "4KiB",
             "accesses": 2, "write_ratio": 1.0}
    main = [write, _fork([nap(1_000_000)], name="c"), touch(A, True), {"op": "wait"},
            touch(A + PAGE, True)]
    data = {"guest": {"vcpus": 2}, "processes": [
        {"name": "p", "vsegs": [vseg("a", "anon", 4)], "threads": [{"stack": False, "steps": main}]}]}
    result = run(data)
    p = result.processes["p"]
    assert (p["min_flt"], p["cow_copies"], p["cow_reuses"]) == (4, 1, 1)
    assert result.vm["memory"]["frames_allocated_total"] == 3
    assert result.processes["c"]["min_flt"] == 0 and result.processes["c"]["parent"] == "p"


def test_flat_wait_blocks_until_children_exit_and_exit_kills_siblings():
    """wait() returns only after both children exited (the parent's last step runs after the
    slower child's 2 ms); exit() in one thread kills its sibling thread at once."""
    main = [_fork([nap(1_000_000)]), _fork([nap(2_000_000)]), {"op": "wait"}, {"op": "compute", "units": 1}]
    result = run({"guest": {"vcpus": 2}, "processes": [
        {"name": "p", "threads": [{"steps": main}]},
        {"name": "q", "threads": [{"steps": [{"op": "compute", "units": 5}, {"op": "exit"}]},
                                  {"steps": [{"op": "compute", "units": 10_000_000}]}]}]})
    assert result.processes["p"]["exited_ns"] > result.processes["p.1"]["exited_ns"] >= 2_000_000
    assert result.processes["q"]["compute_units"] < 100


@pytest.mark.parametrize("clusters", [1, 2])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pattern", ["uniform", "zipf", "sequential", "hotcold"])
def test_access_after_own_munmap_is_sigsegv_maperr(clusters, fast, pattern):
    """A thread writes the 16 pages of a vseg (16 first-touch minor faults), unmaps it, then
    accesses it again: the pointers still hold the old range, no VMA covers it, so the first
    access is SEGV_MAPERR and the process dies of SIGSEGV (Linux: do_user_addr_fault ->
    bad_area_nosemaphore, before handle_mm_fault, so no min_flt/maj_flt is counted for it).
    Both fault paths (the compiled loop and guest/fault.py) and both VMMs agree."""
    steps = [{"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "accesses": 16, "write_ratio": 1.0},
             {"op": "munmap", "vseg": "h"},
             {"op": "access", "vseg": "h", "pattern": pattern, "accesses": 5}]
    data = {"sim": {}, "guest": {"vcpus": 2, "clusters": clusters, "fast_faults": fast},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "64KiB"}],
                           "threads": [{"stack": False, "steps": steps}]}]}
    p = run(data).processes["p"]
    assert (p["segv"], p["exit"]) == (1, "segv")
    assert (p["accesses"], p["min_flt"], p["maj_flt"]) == (16, 16, 0)
