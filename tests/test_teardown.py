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
