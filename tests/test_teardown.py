"""Teardown without a Python call per page: ``PhysMem.put_many`` against one ``put`` after
another (the obvious reference), and exit / munmap / exec leaving every frame accounted for."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_dict
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.errors import InvariantViolation
from pfsim.guest.memory import PhysMem
from pfsim.machine.frames import ANON, ZERO_GFN


def _memory(refs: list[int]) -> PhysMem:
    """A PhysMem whose user frames 2.. hold ``refs[i]`` references (0: free)."""
    mem = PhysMem(len(refs) + 2, reserved=2)
    for _ in range(len(refs)):
        mem.alloc(ANON)
    for i, r in enumerate(refs):
        gfn = 2 + i
        mem.refcount[gfn] = r
    for i, r in enumerate(refs):
        if r == 0:
            mem.refcount[2 + i] = 1
            mem.put(2 + i)
    return mem


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=12).flatmap(
    lambda refs: st.tuples(st.just(refs), st.lists(
        st.sampled_from([g for g in range(2, 2 + len(refs)) if refs[g - 2] > 0] or [2]),
        max_size=20))))
def test_put_many_is_put_after_put(case):
    refs, gfns = case
    # only sequences the kernel can produce: no frame loses more references than it holds
    if any(gfns.count(g) > refs[g - 2] for g in set(gfns)):
        return
    a, b = _memory(refs), _memory(refs)
    for g in gfns:
        a.put(g)
    b.put_many(np.array(gfns, dtype=np.int64))
    assert np.array_equal(a.refcount, b.refcount)
    assert np.array_equal(a.kind, b.kind)
    assert np.array_equal(a.nfree, b.nfree)
    n = int(a.nfree[0]) - (a.nframes - int(a.nfree[1]))  # frames on the stack
    assert np.array_equal(a.free_stack[:n], b.free_stack[:n])  # same order: same next frames


def test_put_many_skips_the_zero_page_and_refuses_a_free_frame():
    mem = _memory([1, 0])
    assert mem.put_many(np.array([ZERO_GFN, 2], dtype=np.int64)) == 1
    with pytest.raises(InvariantViolation):
        mem.put_many(np.array([3], dtype=np.int64))


def _run(steps):
    data = {"sim": {"duration": "500ms"}, "guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "4MiB"}],
                           "threads": [{"stack": False, "steps": steps}]}]}
    return run_dict(data)


@pytest.mark.parametrize("last", [{"op": "munmap", "vseg": "h"}, {"op": "exec"}, {"op": "exit"}])
def test_teardown_frees_exactly_what_was_mapped(last):
    """A process writes 300 pages and reads 100 untouched ones (mapped to the zero page),
    then unmaps the vseg, execs or exits, and (but for exit) sleeps past the end of the run:
    the 300 frames it mapped are free again, so the free count is the one of a process that
    never touched anything, and the end-of-run check (allocated = mapped + free) holds."""
    nap = {"op": "sleep", "duration": "10s"}
    baseline = _run([nap])["vms"]["vm0"]["memory"]["free_frames"]
    steps = [{"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "accesses": 300, "write_ratio": 1.0},
             {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "offset": "2MiB", "accesses": 100, "write_ratio": 0.0},
             last, nap]
    result = _run(steps)
    assert result.processes["p"]["min_flt"] == 400
    assert result["vms"]["vm0"]["memory"]["free_frames"] == baseline
    assert result["vms"]["vm0"]["memory"]["frames_allocated_total"] == 300


def _tables(steps, *, sleep_first=None, engine=None):
    """Run one process with a 4 MiB vseg ``a`` and a 2 GiB vseg ``b`` (two directory levels:
    1024 leaves) that stops (500 ms) before it exits unless a step ends it; its address space."""
    from helpers import simulation

    data = {"sim": {"duration": "500ms"}, "guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "a", "type": "anon", "size": "4MiB"},
                                                  {"name": "b", "type": "anon", "size": "2GiB"}],
                           "threads": [{"stack": False, "steps": steps}]}]}
    if engine is not None:
        data["sim"]["engine"] = engine
        data["hypervisor"] = {"enabled": True}
    sim = simulation(data)
    result = sim.run()
    result["engine_note"] = sim.engine_note
    return result, sim.kernel.processes[0].mm


def _write(vseg, offset, pages=1):
    return {"op": "access", "vseg": vseg, "pattern": "sequential", "stride": "4KiB",
            "offset": offset, "accesses": pages, "write_ratio": 1.0}


NAP = {"op": "sleep", "duration": "10s"}
A_ONLY = [_write("a", 0, 300)]  # pages 0..299 of a: one leaf under a's root
B_TOO = [*A_ONLY, _write("b", 0), _write("b", "1GiB")]  # leaves 0 and 512 of b: two PMD nodes


def test_munmap_frees_the_leaves_and_nodes_it_emptied():
    """Hand counts: ``a`` alone holds 1 leaf and 2 nodes (a's root and b's); touching ``b``
    at 0 and at 1 GiB adds 2 leaves and the 2 nodes above them; munmap of ``b`` gives back
    exactly those (free_pgtables), so the counts return to ``a``'s alone."""
    _, alone = _tables([*A_ONLY, NAP])
    _, both = _tables([*B_TOO, NAP])
    result, unmapped = _tables([*B_TOO, {"op": "munmap", "vseg": "b"}, NAP])
    assert (alone.nleaves, alone.nnodes) == (1, 2)
    assert (both.nleaves, both.nnodes) == (3, 4)
    assert (unmapped.nleaves, unmapped.nnodes) == (1, 2)
    assert result["vms"]["vm0"]["memory"]["frames_allocated_total"] == 302
    assert unmapped.rss == 300


def test_a_freed_leaf_is_reused_and_reads_empty():
    """After munmap of ``b`` a new leaf of ``a`` takes b's last freed block: the slot arrays
    do not grow, and the new leaf maps only what was written since."""
    steps = [*B_TOO, {"op": "munmap", "vseg": "b"}, _write("a", "2MiB", 5), NAP]
    _, mm = _tables(steps)
    assert (mm.nleaves, mm.nblocks) == (2, 3)
    present = np.count_nonzero(mm.gfn[:mm.nslots] >= 0)
    assert present == 305 == mm.rss


@pytest.mark.parametrize("last", [{"op": "exec"}, {"op": "exit"}])
def test_exec_and_exit_free_every_leaf(last):
    """exec empties every VMA it keeps and drops the others; exit drops everything: no leaf
    is left and the slot arrays are given back; only the VMAs' root nodes remain."""
    _, mm = _tables([*B_TOO, last, NAP])
    assert mm.nleaves == 0 and len(mm.state) == 0
    assert mm.nnodes == 2


def test_exit_in_the_compiled_core_frees_the_leaves_too():
    result, mm = _tables(B_TOO, engine="compiled")
    assert result["engine_note"] == "compiled core"
    assert result["vms"]["vm0"]["processes"]["p"]["min_flt"] == 302
    assert mm.nleaves == 0 and len(mm.state) == 0


def test_a_thread_holding_slots_of_an_unmapped_leaf_faults_instead_of_aliasing():
    """Thread 1 keeps writing ``b``'s first page; thread 0 unmaps ``b`` and writes a new leaf
    of ``a``, which reuses b's freed block.  Thread 1's translated chunk still names that
    block: translated again, its next access finds no VMA and the process dies of SIGSEGV
    (otherwise it would write into ``a``'s new page without a fault)."""
    hammer = {"op": "access", "vseg": "b", "pattern": "uniform", "length": "4KiB", "duration": "50ms", "write_ratio": 1.0, "think": "1us"}
    data = {"sim": {"duration": "500ms"}, "guest": {"vcpus": 2, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "a", "type": "anon", "size": "4MiB"},
                                                  {"name": "b", "type": "anon", "size": "2GiB"}],
                           "threads": [
                               {"stack": False, "steps": [
                                   {"op": "sleep", "duration": "1ms"},
                                   {"op": "munmap", "vseg": "b"}, _write("a", "2MiB", 5), NAP]},
                               {"stack": False, "steps": [hammer, NAP]}]}]}
    result = run_dict(data)
    proc = result.processes["p"]
    assert proc["segv"] == 1
    assert proc["min_flt"] == 1 + 5  # b's page once, then a's five: none on the reused block
