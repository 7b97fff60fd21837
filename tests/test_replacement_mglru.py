"""MGLRU: hand-worked strings following the lru_gen functions of mm/vmscan.c step by step, the
kernel's generation invariants, and the compiled kernel against its slow reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.replacement import PageIds, hits, make_policy
from pfsim.replacement.mglru import MAX_NR_GENS, MIN_NR_GENS
from pfsim.replacement.reference import REFERENCE


def test_hand_worked_string():
    """A B A C B D B D with 2 frames; generations start at min_seq 0, max_seq 3.

    A, B fault into generation 3 (list [A B], oldest first), young. A hits. C faults: memory
    is full. should_run_aging: 4 generations, no. try_to_inc_min_seq retires the empty 0, 1, 2
    (min_seq 2): still empty, and only 2 generations left, so aging runs: the walk clears A's
    and B's young bits (they stay in generation 3), max_seq 4. min_seq moves to 3; its tail, A,
    is not young: evicted, though it was used twice (the fault's young bit and the hit's are one
    bit). LRU would have evicted B. C enters generation 4. B hits (young). D faults: 2
    generations (3, 4): aging; the walk relabels B to 4 and clears C's bit; max_seq 5. B, at
    generation 3's tail, is sorted to generation 4 (list [C B]). 3 generations, the oldest
    holding none of the 2 pages: old * 4 < total, aging again (max_seq 6). min_seq 4: C is not
    young: evicted. B and D then hit."""
    trace = [1, 2, 1, 3, 2, 4, 2, 4]
    assert np.flatnonzero(hits("mglru", trace, 2)).tolist() == [2, 4, 6, 7]
    assert np.flatnonzero(hits("lru", trace, 2)).tolist() == [2, 6, 7]


@settings(max_examples=80, deadline=None)
@given(trace=st.lists(st.integers(0, 25), min_size=1, max_size=300),
       frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_kernel_equals_reference(trace, frames, cuts):
    pages = np.array(trace, dtype=np.int64)
    page_ids = PageIds()
    policy = make_policy("mglru", frames)
    bounds = sorted({0, pages.size, *(cut for cut in cuts if cut < pages.size)})
    recorded = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        chunk_hits = np.zeros(stop - start, dtype=np.uint8)
        policy.feed(page_ids.map(pages[start:stop]), page_ids.n_pages, chunk_hits)
        recorded.append(chunk_hits)
        generations = policy.state[2] - policy.state[1] + 1  # max_seq - min_seq + 1
        assert MIN_NR_GENS <= generations <= MAX_NR_GENS
    assert np.concatenate(recorded).astype(bool).tolist() == REFERENCE["mglru"](trace, frames)


def test_larger_memory_matches_reference():
    rng = np.random.default_rng(12)
    trace = (rng.zipf(1.1, 15_000) % 2000).tolist()
    for frames in (64, 700):
        assert hits("mglru", trace, frames).astype(bool).tolist() == \
            REFERENCE["mglru"](trace, frames)
