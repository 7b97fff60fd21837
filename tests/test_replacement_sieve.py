"""SIEVE: a hand-worked string, the kernel against its reference request by request (also fed
in chunks), and against libCacheSim's Sieve."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.replacement import hits, simulate
from pfsim.replacement.reference import REFERENCE


def test_hand_worked_string():
    """A B C B A D A with 3 frames. SIEVE: B and A hit (bits set); D's fault sends the hand
    from the oldest page: A visited (cleared), B visited (cleared), C evicted; A hits: 4 faults.
    FIFO evicts A for D, so A faults again: 5."""
    trace = [1, 2, 3, 2, 1, 4, 1]
    assert hits("sieve", trace, 3).tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert simulate("fifo", trace, 3) == 5


def test_hand_keeps_its_place():
    """After evicting C the hand rests on D (C's newer neighbour); E's fault then evicts D, not
    the older A whose bit the hand cleared: A B C A D E A -> A still hits."""
    assert hits("sieve", [1, 2, 3, 1, 4, 5, 1], 3).tolist() == [0, 0, 0, 1, 0, 0, 1]


@settings(max_examples=60, deadline=None)
@given(trace=st.lists(st.integers(0, 20), min_size=1, max_size=200),
       frames=st.integers(1, 10), cuts=st.lists(st.integers(0, 200), max_size=4))
def test_kernel_equals_reference(trace, frames, cuts):
    got, _ = chunked_hits("sieve", trace, frames, cuts)
    assert got == REFERENCE["sieve"](trace, frames)


@pytest.mark.parametrize("alpha", [0.8, 1.0])
def test_matches_libcachesim(alpha):
    lcs = pytest.importorskip("libcachesim")
    rng = np.random.default_rng(11)
    weights = 1.0 / np.arange(1, 2001) ** alpha
    trace = rng.permutation(2000)[rng.choice(2000, 12_000, p=weights / weights.sum())] * 3 + 11
    for frames in (10, 100, 700):
        cache = lcs.Sieve(frames)
        theirs = np.array([cache.get(lcs.Request(obj_size=1, obj_id=int(page), clock_time=i))
                           for i, page in enumerate(trace)], dtype=np.uint8)
        assert np.array_equal(hits("sieve", trace, frames), theirs)
