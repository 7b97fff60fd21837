"""The host's reclaim inside a simulation makes exactly the replay kernels' decisions.

One guest thread writes a uniform random stream over 200 pages of an anonymous vseg; the host
grants 64 frames (one pinned for the guest's zero page), reclaims one page at a time and does
no readahead.  The host then sees the stream as a sequence of guest frames: page p gets the
frame the guest allocates at p's first touch (the guest's free stack hands out frames in
increasing order from the first non-reserved one).  Host faults (minor first touches plus
major swap-ins) must equal the replay policy's fault count on that frame sequence with 63
frames; the replay kernels are themselves checked against libCacheSim in test_reclaim.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_dict, scenario

from pfsim.engine import RandomStreams
from pfsim.replacement import simulate
from pfsim.workload.patterns import PatternStream


@pytest.fixture(autouse=True)
def _both_engines(engine):
    """Every test here runs on the compiled core and on the reference path."""
    return engine


PAGES, ACCESSES, SEED = 200, 5000, 11
GUEST_MEMORY, RESERVED = 16 << 20, 8 << 20


def frame_sequence() -> np.ndarray:
    """Guest frames touched, in order, rebuilt from the workload stream alone."""
    rng = RandomStreams(SEED).generator("access/p/0/0")
    stream = PatternStream("uniform", PAGES, rng, 1.0)
    pages, _ = stream.next_chunk(ACCESSES)
    first_frame = RESERVED // 4096
    order: dict[int, int] = {}
    frames = [order.setdefault(int(p), first_frame + len(order)) for p in pages]
    return np.array(frames, dtype=np.int64)


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_host_faults_equal_replay_faults(policy):
    steps = [{"op": "access", "vseg": "a", "pattern": "uniform", "accesses": ACCESSES,
              "write_ratio": 1.0}]
    data = scenario(processes=[{"name": "p", "vsegs": [{"name": "a", "type": "anon", "size": PAGES * 4096}],
                                "threads": [{"stack": False, "steps": steps}]}],
                    guest={"memory": GUEST_MEMORY, "mm": {"kernel_reserved": RESERVED}}, seed=SEED)
    data["hypervisor"] = {"enabled": True, "memory_limit": "256KiB", "reclaim": policy,
                          "reclaim_batch": 1, "swap": {"device": "nvme", "page_cluster": 0}}
    host = run_dict(data)["host"]
    expected = simulate(policy, frame_sequence(), 63)
    assert host["host_minor_faults"] + host["host_major_faults"] == expected
    assert host["host_minor_faults"] == PAGES  # every page's first touch
    assert host["swap_ins"] == expected - PAGES
