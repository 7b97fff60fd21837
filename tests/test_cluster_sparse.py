"""The cluster kernel's VMM copies follow the sparse page table: a vseg of a terabyte that the
threads touch in a few pages costs a few leaves per copy, not a slot per page of the vseg.

Expected values are hand counts (pages written, distinct 2 MiB leaves and regions) and the
sizes the dense copies had (a slot per page of every vseg)."""

from __future__ import annotations

import numpy as np
from helpers import simulation

from pfsim.config import load_config
from pfsim.footprint import check_resources
from pfsim.guest.mm import LEAF


def _clustered(vseg: str, pages: int) -> dict:
    """4 clusters of 2 vCPUs; 8 threads, each writing ``pages`` consecutive pages from the
    start of its eighth of an anon vseg (``split``), then reading them again; the run stops
    (500 ms) while they sleep, before the process exits and releases its copies."""
    share = {"op": "access", "vseg": "buf", "split": True, "pattern": "sequential",
             "stride": "4KiB", "accesses": pages, "write_ratio": 1.0}
    again = {**share, "write_ratio": 0.0}
    return {"sim": {"seed": 3, "check_invariants": True, "duration": "500ms"},
            "guest": {"vcpus": 8, "clusters": 4, "memory": "256MiB"},
            "processes": [{"name": "p", "cluster": 0,
                           "vsegs": [{"name": "buf", "type": "anon", "size": vseg}],
                           "threads": [{"count": 8, "stack": False, "steps": [share, again, {"op": "sleep", "duration": "10s"}]}]}]}


def test_a_1tib_vseg_in_four_copies_holds_the_leaves_touched():
    """Each of 8 threads writes 5 pages at the start of its 128 GiB share: 40 pages, 8
    leaves (one per share), 8 PT2 regions; every copy's arrays are as long as the address
    space's 8 leaves (rounded up by its doubling), where the dense copies had 2**28 slots."""
    sim = simulation(_clustered("1TiB", 5))
    result = sim.run()
    process = sim.kernel.processes[0]
    gpt, mm = process.vmm, process.mm
    assert mm.nleaves == 8
    assert gpt.state.shape == (4, len(mm.state)) and len(mm.state) <= 2 * 8 * LEAF
    assert len(gpt._regions) == 8
    mapped = [int(np.count_nonzero(gpt.state[c] & 1)) for c in range(4)]
    assert mapped[0] == 40  # the reference copy maps every public page
    placed = result["vms"]["vm0"]["processes"]["p"]["pages_placed"]["buf"]
    assert sum(placed) == 40
    assert result["vms"]["vm0"]["outcome"] == "ok"


def test_pages_far_apart_in_one_leaf_share_its_slots():
    """Page numbers 1 apart share a leaf and a region; 2 MiB apart they do not: 2 pages at
    0 and 4 KiB, then 1 page at 1 GiB, of one thread: 2 leaves, 2 regions, 3 pages."""
    data = _clustered("1TiB", 2)
    thread = data["processes"][0]["threads"][0]
    thread["count"] = 1
    thread["steps"].insert(2, {"op": "access", "vseg": "buf", "offset": "1GiB", "accesses": 1,
                            "pattern": "sequential", "write_ratio": 1.0})
    sim = simulation(data)
    sim.run()
    gpt, mm = sim.kernel.processes[0].vmm, sim.kernel.processes[0].mm
    assert (mm.nleaves, len(gpt._regions)) == (2, 2)
    slots = gpt.mapped_slots(gpt.ref)
    assert gpt.vpn[slots].tolist() == [gpt.vsegs[0].start >> 12, (gpt.vsegs[0].start >> 12) + 1,
                                       (gpt.vsegs[0].start + (1 << 30)) >> 12]


def test_a_terabyte_clustered_vseg_is_no_longer_refused():
    """The estimate counts the leaves a run can touch (at most the guest's frames), not a
    slot per page in each of the 4 copies (about 46 GiB for 1 TiB)."""
    footprint = check_resources(load_config(_clustered("1TiB", 5)), available=4 << 30)
    assert footprint.total < 1 << 30
