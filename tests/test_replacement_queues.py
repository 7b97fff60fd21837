"""ARC, 2Q and S3-FIFO: hand-worked strings, the kernels against their slow references request by
request (fed in chunks), and against libCacheSim's ARC, TwoQ and S3FIFO."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.replacement import hits, simulate
from pfsim.replacement.reference import REFERENCE

POLICIES = ["arc", "2q", "s3fifo"]


def test_arc_keeps_frequent_pages_through_a_scan():
    """A B A B, a scan C..H, then A B with 4 frames. By hand (lists oldest first, p = 0):
    A, B fault into T1; the second A and B hit and move to T2 = [A, B]. C, D fill T1. E: T1+B1
    = 2 < 4, REPLACE: |T1| = 2 > p, so C -> B1. F: D -> B1. G and H: |T1|+|B1| = 4 drops B1's
    oldest, then REPLACE sends T1's oldest to B1. T2 is never touched: A and B hit again
    (8 faults). LRU has pushed them out by then (10 faults)."""
    trace = [1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    assert np.flatnonzero(hits("arc", trace, 4)).tolist() == [2, 3, 10, 11]
    assert simulate("lru", trace, 4) == 10


def test_arc_ghost_hits_move_the_target():
    """A B A C B A with 2 frames. A hit sends A to T2; C: REPLACE moves B to B1. B (in B1):
    p = min(0 + max(|B2|/|B1| = 0, 1), 2) = 1; |T1| = 1 is not > p, so T2's A goes to B2; B
    enters T2. A (in B2): p = max(1 - max(|B1|/|B2| = 0, 1), 0) = 0; |T1| = 1 > 0: C -> B1; A
    enters T2. Then B and A hit in T2, C (in B1) faults: 6 faults."""
    assert hits("arc", [1, 2, 1, 3, 2, 1, 2, 1, 3], 2).tolist() == [0, 0, 1, 0, 0, 0, 1, 1, 0]


def test_2q_promotes_only_pages_that_come_back_after_probation():
    """4 frames: Kin = 1, Kout = 2. A B C D fill A1in; E pushes A to A1out; A comes back (a
    fault) and enters Am; F G H push B C D E through A1out (it keeps two ids). A hits in Am.
    The scan I J K L only cycles A1in (|A1in| > Kin each time), so A hits again: 13 faults.
    LRU loses A to the scan: 14."""
    trace = [1, 2, 3, 4, 5, 1, 6, 7, 8, 1, 9, 10, 11, 12, 1]
    assert np.flatnonzero(hits("2q", trace, 4)).tolist() == [9, 14]
    assert simulate("lru", trace, 4) == 14


def test_2q_hits_in_a1in_do_not_promote():
    """Correlated references: A A A with 4 frames hit in A1in and leave A there; five new pages
    then push it out (a fault when it returns, not a hit)."""
    trace = [1, 1, 1, 2, 3, 4, 5, 6, 1]
    assert hits("2q", trace, 4).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0]


def test_s3fifo_one_hit_wonders_leave_through_the_small_queue():
    """10 frames: S's share 1, M's 9, ghost 9 ids. Warm-up: 1 enters S, then (S full, nothing
    evicted yet) 2..10 enter M. 11: S's 1 (no hit) goes to G, 11 enters S. 1 (in G): S's 11 goes
    to G, 1 enters M (10 pages). 11 (in G): M is over its share: its oldest, 2 (no hit), is
    evicted; 11 enters M. 2: M over its share again, 3 is evicted; 2 enters S. 5 hits in M."""
    trace = list(range(1, 11)) + [11, 1, 11, 2, 5]
    assert hits("s3fifo", trace, 10).tolist() == [0] * 14 + [1]


def test_s3fifo_main_queue_reinserts_pages_hit_since_they_entered():
    """Same warm-up, then 2 hits (freq 1); 11, 1 and 11 as above force M to evict: its oldest, 2,
    has freq 1, so it is reinserted (freq 0) and 3 goes instead; 2 hits afterwards."""
    trace = list(range(1, 11)) + [2, 11, 1, 11, 2]
    assert hits("s3fifo", trace, 10).tolist() == [0] * 10 + [1, 0, 0, 0, 1]


@pytest.mark.parametrize("name", POLICIES)
def test_enough_frames_fault_once_per_page(name):
    trace = np.random.default_rng(4).integers(0, 60, 3000)
    distinct = np.unique(trace).size
    assert simulate(name, trace, distinct) == distinct


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(POLICIES),
       trace=st.lists(st.integers(0, 25), min_size=1, max_size=300),
       frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_kernel_equals_reference(name, trace, frames, cuts):
    got, _ = chunked_hits(name, trace, frames, cuts)
    assert got == REFERENCE[name](trace, frames)


def scan_and_zipf(alpha: float, seed: int) -> np.ndarray:
    """12,000 Zipf requests over 2,000 pages with a 600-page scan in the middle."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 2001) ** alpha
    zipf = rng.permutation(2000)[rng.choice(2000, 12_000, p=weights / weights.sum())]
    return np.concatenate([zipf[:5000], np.arange(5000, 5600), zipf[5000:]]) * 7 + 3


# libCacheSim's class, and the smallest frame count at which its conventions match (see each
# policy's module docstring: its TwoQ caches nothing below 4 frames, its S3FIFO below 20).
LIBCACHESIM = {"arc": ("ARC", 1), "2q": ("TwoQ", 4), "s3fifo": ("S3FIFO", 20)}


@pytest.mark.parametrize("alpha", [0.7, 1.0])
@pytest.mark.parametrize("name", POLICIES)
def test_matches_libcachesim_request_by_request(name, alpha):
    lcs = pytest.importorskip("libcachesim")
    class_name, smallest = LIBCACHESIM[name]
    trace = scan_and_zipf(alpha, seed=21)
    for frames in (smallest, 20, 150, 900):
        cache = getattr(lcs, class_name)(frames)
        theirs = np.array([cache.get(lcs.Request(obj_size=1, obj_id=int(page), clock_time=i))
                           for i, page in enumerate(trace)], dtype=np.uint8)
        assert np.array_equal(hits(name, trace, frames), theirs), (name, frames)
