"""LIRS: a hand-worked string, the kernel against its slow reference request by request (fed in
chunks), and its distance from libCacheSim's LIRS, whose definition differs (see below)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.replacement import hits, simulate
from pfsim.replacement.reference import REFERENCE


def test_hand_worked_string():
    """A B C A D C B D A with 3 frames: Lhirs = 1, Llirs = 2 (S bottom first).
    A, B fault and become LIR (warm-up); C faults: resident HIR, S = [A B C], Q = [C].
    A hits (LIR at the bottom): S = [B C A]. D faults: C, the front of Q, leaves memory but stays
    in S; D is HIR, Q = [D]. C faults, but is in S: D leaves memory, C becomes LIR, the bottom
    LIR B is demoted into Q: S = [A D C], Q = [B]. B hits in Q (not in S): S = [A D C B].
    D faults, is in S: B leaves memory, D becomes LIR, A is demoted: S = [C B D], Q = [A].
    A hits in Q. Hits at 3, 6, 8; LRU's fall at 3, 5, 7."""
    trace = [1, 2, 3, 1, 4, 3, 2, 4, 1]
    assert np.flatnonzero(hits("lirs", trace, 3)).tolist() == [3, 6, 8]
    assert np.flatnonzero(hits("lru", trace, 3)).tolist() == [3, 5, 7]


def test_loop_larger_than_memory():
    """A loop over 6 pages with 5 frames: LRU faults on every request; LIRS keeps its 4 LIR
    pages and cycles the others through its one HIR frame, so 4 of every 6 requests hit once
    warm."""
    trace = list(range(6)) * 20
    assert simulate("lru", trace, 5) == len(trace)
    lirs = hits("lirs", trace, 5)
    assert lirs[12:].reshape(-1, 6).sum(axis=1).tolist() == [4] * 18


@settings(max_examples=80, deadline=None)
@given(trace=st.lists(st.integers(0, 25), min_size=1, max_size=300),
       frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_kernel_equals_reference(trace, frames, cuts):
    got, _ = chunked_hits("lirs", trace, frames, cuts)
    assert got == REFERENCE["lirs"](trace, frames)


def test_large_frame_counts_match_reference():
    """Lhirs = 1 % of memory: frame counts above 100 give several HIR frames."""
    rng = np.random.default_rng(9)
    trace = (rng.zipf(1.2, 20_000) % 3000).tolist()
    for frames in (150, 420):
        assert hits("lirs", trace, frames).astype(bool).tolist() == \
            REFERENCE["lirs"](trace, frames)


@pytest.mark.parametrize("alpha", [0.7, 1.0])
def test_close_to_libcachesim(alpha):
    """libCacheSim's LIRS is not the paper's in two places: it bounds S at twice the memory
    (forgetting the pages that left memory longest ago), and a hit on a resident HIR page that is
    not in S demotes the bottom LIR page, evicting the front of Q to make room for it, so memory
    runs one LIR page short until the next fault. Neither changes much: fault counts agree
    within 4 % on Zipf traces, and both stay well below LRU's on a loop larger than memory."""
    lcs = pytest.importorskip("libcachesim")
    rng = np.random.default_rng(21)
    weights = 1.0 / np.arange(1, 2001) ** alpha
    trace = rng.permutation(2000)[rng.choice(2000, 12_000, p=weights / weights.sum())]
    for frames in (20, 150, 900):
        cache = lcs.LIRS(frames)
        theirs = sum(not cache.get(lcs.Request(obj_size=1, obj_id=int(page), clock_time=i))
                     for i, page in enumerate(trace))
        ours = simulate("lirs", trace, frames)
        assert abs(ours - theirs) <= 0.04 * theirs, (frames, ours, theirs)
    loop = np.tile(np.arange(300), 8)
    cache = lcs.LIRS(250)
    theirs = sum(not cache.get(lcs.Request(obj_size=1, obj_id=int(page), clock_time=i))
                 for i, page in enumerate(loop))
    assert simulate("lirs", loop, 250) < 0.4 * simulate("lru", loop, 250)
    assert theirs < 0.4 * simulate("lru", loop, 250)
