"""The memory estimate made before a run: refusals name the driving key, and the estimate
covers what a large run really uses (resident memory measured in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pfsim.config import load_config
from pfsim.errors import ResourceError
from pfsim.footprint import BASELINE, check_resources, estimate

GIB = 1 << 30


def scenario(memory: str = "256MiB", **thread) -> dict:
    thread.setdefault("steps", [{"op": "access", "vseg": "h", "accesses": 100}])
    return {"guest": {"memory": memory},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "1MiB"}],
                           "threads": [thread]}]}


def test_a_64tib_guest_is_refused_naming_guest_memory():
    """2**34 frames * (4 refcount + 1 kind + 8 int64 free-stack bytes) = 208 GiB of frame
    arrays: written only where used, but more address space than 24 GiB of RAM and swap."""
    config = load_config(scenario("64TiB"))
    with pytest.raises(ResourceError) as info:
        check_resources(config, available=8 * GIB, limit=24 * GIB)
    assert str(info.value) == (
        "guest.memory: simulating this scenario needs about 208.0 GiB of address space for the "
        "frame tables of a 64.0 TiB guest, more than the 24.0 GiB of memory and swap this "
        "machine has available; make guest.memory smaller")


def test_a_guest_whose_used_frames_do_not_fit_is_refused():
    """A 16 GiB guest writing a 16 GiB vseg: 2**22 frames * 64 bytes (16 of frame tables, 48
    of page reclaim) = 256 MiB of frame bookkeeping (the larger term) plus (2**22 + 512)
    slots * 24 bytes = 96 MiB of page table, and 256 MiB of baseline: about 0.6 GiB, refused
    with 256 MiB available."""
    data = scenario("16GiB")
    data["processes"][0]["vsegs"][0]["size"] = "16GiB"
    with pytest.raises(ResourceError) as info:
        check_resources(load_config(data), available=256 << 20, limit=24 * GIB)
    assert str(info.value).startswith(
        "guest.memory: simulating this scenario needs about 0.6 GiB of memory "
        "(0.2 GiB of it for guest.memory), more than the 0.2 GiB")


def test_the_largest_term_names_the_key():
    threads = load_config(scenario(count=1_000_000, steps=[{"op": "exit"}]))
    assert estimate(threads).key == "processes[0].threads[0].count"
    # 10**6 threads * (16 KiB + one 512-slot leaf of stack * 24 bytes) = 26.7 GiB
    assert estimate(threads).key_bytes == 1_000_000 * ((16 << 10) + 512 * 24)
    # a Zipf stream over 1 TiB costs nothing per page (rejection-inversion, no table)
    zipf = load_config(scenario(steps=[{"op": "access", "addr": 0, "length": "1TiB",
                                        "pattern": "zipf", "accesses": 1}]))
    assert estimate(zipf).total == estimate(load_config(scenario())).total


def test_a_small_scenario_passes():
    footprint = check_resources(load_config(scenario()), available=1 * GIB)
    assert footprint.total < BASELINE + (16 << 20)


MEASURE = """
import gc, json, sys
from pfsim.config import load_config
from pfsim.footprint import BASELINE, estimate
from pfsim.simulation import Simulation
def status(field):  # kB field of /proc/self/status, in bytes
    with open("/proc/self/status") as text:
        return next(int(line.split()[1]) * 1024 for line in text if line.startswith(field))
data = json.loads(sys.argv[1])
small = json.loads(sys.argv[1]); small["guest"]["memory"] = "64MiB"
small["processes"][0]["vsegs"][0]["size"] = "1MiB"
small.get("hypervisor", {}).pop("memory_limit", None)
Simulation(load_config(small)).run()  # compile and import everything first
gc.collect()
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as clear:  # restart the peak (VmHWM) from now
    clear.write("5")
config = load_config(data)
Simulation(config).run()
after = status("VmHWM:")
print(json.dumps({"measured": after - before, "estimated": estimate(config).total - BASELINE}))
"""


@pytest.mark.parametrize("kind", ["flat", "host", "clusters"])
def test_the_estimate_covers_the_measured_peak(kind):
    """An 8 GiB guest (2 M frames; with clusters, a 4 GiB vseg too): the peak resident memory of the run above what the process
    held before it (the peak counter is restarted first, so a first compile does not count)
    stays below the estimate, and the estimate is not wildly above it (at most 3x)."""
    data = scenario("8GiB")
    if kind in ("flat", "host"):  # frames, page-table leaves and the host's arrays cost
        data["processes"][0]["vsegs"][0]["size"] = "4GiB"  # memory once used: write 4 GiB
        data["processes"][0]["threads"][0]["steps"] = [
            {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
             "accesses": 1 << 20, "write_ratio": 1.0}]
    if kind == "host":
        data["hypervisor"] = {"enabled": True, "memory_limit": "6GiB"}
        data["sim"] = {"engine": "reference"}  # the reference path holds more than the compiled
    if kind == "clusters":  # 1 GiB written (256 K slots) in 4 page-table copies
        data["guest"].update(clusters=4, vcpus=4)
        data["processes"][0]["vsegs"][0]["size"] = "1GiB"
        data["processes"][0]["threads"][0]["steps"] = [
            {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
             "accesses": 1 << 18, "write_ratio": 1.0}]
    proc = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(data)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["measured"] <= found["estimated"] <= 3 * found["measured"], found
