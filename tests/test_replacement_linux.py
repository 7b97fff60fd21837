"""Linux two-list LRU: hand-worked strings following mm/vmscan.c step by step, the
inactive_ratio table of the kernel's comment, and the kernel against its slow reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.replacement import hits
from pfsim.replacement.linux import inactive_ratio_table
from pfsim.replacement.reference import REFERENCE


def test_one_young_bit_cannot_tell_a_hit_from_the_fault():
    """A B A C A with 2 frames. A and B fault onto the inactive list, young. A's hit sets the
    young bit again, which it already has. C's fault reclaims: A (tail) is young, not
    PG_referenced -> FOLIOREF_KEEP (PG_referenced set, rotated); B likewise; A again: no longer
    young -> reclaimed, although it was used twice. So A faults at the end, where LRU (which
    would have evicted B) hits."""
    trace = [1, 2, 1, 3, 1]
    assert hits("linux", trace, 2).tolist() == [0, 0, 1, 0, 0]
    assert hits("lru", trace, 2).tolist() == [0, 0, 1, 0, 1]


def test_a_page_used_after_its_second_chance_is_activated():
    """3 frames: A B C fill the inactive list; D's reclaim rotates A, B, C once (each young, now
    PG_referenced) and evicts A. B hits (young again). E's reclaim: B is young and
    PG_referenced -> FOLIOREF_ACTIVATE; C is PG_referenced but not young -> reclaimed. A scan
    F G H I then only cycles the inactive list (1 active page, inactive_is_low() false), so B
    still hits."""
    trace = [1, 2, 3, 4, 2, 5, 6, 7, 8, 9, 2]
    assert np.flatnonzero(hits("linux", trace, 3)).tolist() == [4, 10]
    assert np.flatnonzero(hits("lru", trace, 3)).tolist() == [4]


def test_inactive_ratio_is_the_kernels_table():
    """The comment above inactive_is_low() in mm/vmscan.c: 1 GB -> 3, 10 GB -> 10,
    100 GB -> 31, 1 TB -> 101 (and 1 below 1 GB)."""
    pages_per_gb = 2**30 // 4096
    table = inactive_ratio_table(1024 * pages_per_gb)
    assert [table[0], table[1], table[10], table[100], table[1024]] == [1, 3, 10, 31, 101]


@settings(max_examples=80, deadline=None)
@given(trace=st.lists(st.integers(0, 25), min_size=1, max_size=300),
       frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_kernel_equals_reference(trace, frames, cuts):
    got, _ = chunked_hits("linux", trace, frames, cuts)
    assert got == REFERENCE["linux"](trace, frames)


def test_ratio_above_one_gigabyte_matches_reference():
    """Above 1 GiB of 4 KiB pages the inactive list is kept at 1/3 of the active one."""
    frames = 270_000  # 1.03 GiB: gb = 1, inactive_ratio = 3
    rng = np.random.default_rng(3)
    trace = rng.integers(0, frames + frames // 4, 2 * frames)
    trace[::3] = rng.integers(0, frames // 2, trace[::3].size)  # a hot half, to activate
    assert hits("linux", trace, frames).astype(bool).tolist() == \
        REFERENCE["linux"](trace.tolist(), frames)
