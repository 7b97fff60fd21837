"""The host's arrays cost memory for what a VM uses, not for its size.

Expected values come from an obvious reference (a Python list holding every host frame, popped
from the top and pushed on free) and from hand counts; the memory bound is far below what the
dense arrays took (a 1 TiB guest: 2**28 gfns x about 56 bytes = 14 GiB resident before any
access) and far above what 1000 touched pages need."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.hostmem import HostMemory


def _memory(limit: int) -> HostMemory:
    return HostMemory(nframes=64, limit=limit, policy="fifo", batch=1,
                      rng=np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=20), max_size=80))
def test_host_frames_come_out_as_from_a_full_free_stack(ops):
    """The watermark allocator of host frames against a list holding every frame, highest
    at the bottom: ``-1`` takes a frame, ``k`` frees the k-th frame still held."""
    memory = _memory(limit=12)
    stack = list(range(11, -1, -1))
    held: list[int] = []
    for op in ops:
        if op < 0:
            if not stack:
                continue
            want = stack.pop()
            got = memory._pop_free()
            assert got == want
            memory.frame_gfn[got] = 0  # held (a gfn), as _install would record
            held.append(got)
        elif held:
            frame = held.pop(op % len(held))
            memory.frame_gfn[frame] = -1
            memory._push_free(frame)
            stack.append(frame)
        assert memory.resident == len(held)
        assert memory.has_free_frame() == bool(stack)


def test_check_reads_only_what_was_used_and_still_catches_a_broken_link():
    memory = _memory(limit=8)
    for gfn in (5, 9, 2):
        frame, _ = memory.take_frame(0)
        memory.map_new(gfn, frame)
    memory.check()
    assert memory.gfns_used == 10
    assert memory.swap_slot(9) == -1 and memory.needs_writeback(9)
    memory.hfn[9] = memory.hfn[5]  # two gfns claiming one frame
    with pytest.raises(InvariantViolation):
        memory.check()


def test_swap_slots_are_one_based_inside_and_numbered_from_zero_outside():
    memory = _memory(limit=8)
    for gfn in (3, 4):
        frame, _ = memory.take_frame(0)
        memory.map_new(gfn, frame)
    memory.wrote_back(4)
    memory.wrote_back(3)
    assert (memory.swap_slot(4), memory.swap_slot(3), memory.swap_slot(7)) == (0, 1, -1)
    assert not memory.needs_writeback(4)
    memory.discard(np.array([4]))
    assert memory.swap_slot(4) == -1 and memory.swap_slots_used == 1


MEASURE = """
import json, sys
from pfsim.config import load_config
from pfsim.simulation import Simulation
def status(field):
    with open("/proc/self/status") as text:
        return next(int(line.split()[1]) * 1024 for line in text if line.startswith(field))
def config(memory, pages):
    return load_config({"sim": {"engine": sys.argv[1]}, "guest": {"vcpus": 1, "memory": memory},
        "hypervisor": {"enabled": True},
        "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "64MiB"}],
            "threads": [{"stack": False, "steps": [{"op": "access", "vseg": "h",
                "pattern": "sequential", "stride": "4KiB", "accesses": pages,
                "write_ratio": 1.0}]}]}]})
Simulation(config("64MiB", 10)).run()  # imports and compiled code first
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as clear:  # restart the peak (VmHWM) from now
    clear.write("5")
result = Simulation(config("1TiB", 1000)).run()
print(json.dumps({"grown": status("VmHWM:") - before,
                  "min_flt": result["vms"]["vm0"]["processes"]["p"]["min_flt"],
                  "host_minor": result["host"]["host_minor_faults"],
                  "resident": result["host"]["resident_frames"]}))
"""


@pytest.mark.parametrize("engine_name", ["compiled", "reference"])
def test_a_1tib_guest_on_the_host_model_holds_what_it_touches(engine_name):
    """1000 pages written in a 1 TiB guest with the host model: the run's peak resident
    memory grows by far less than the 14 GiB dense host arrays took; each written page is one
    guest fault and one host fault (the host backs it on first touch)."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, engine_name], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["min_flt"] == 1000
    assert found["host_minor"] == 1000
    assert found["resident"] == 1000 + 1  # and the guest's zero page, pinned
    assert found["grown"] < 256 << 20, found
