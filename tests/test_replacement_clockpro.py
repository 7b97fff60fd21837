"""CLOCK-Pro: strings worked by hand through the three hands of the paper, the kernel against
its slow reference, and why libCacheSim's ClockPro is not compared request by request."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.replacement import hits, simulate
from pfsim.replacement.reference import REFERENCE


def test_test_period_and_promotion_by_hand():
    """A B C A B A B with 2 frames (mc starts at 2; order read from HANDhot).
    A, B enter cold, in test. C: HANDcold evicts A (bit 0), which stays as a non-resident test
    page; C enters. A faults: HANDcold evicts B (non-resident test page); A, still in the
    clock, is promoted to hot (mc stays 2 = m); hot 1 > m - mc = 0, so HANDhot runs: B's test
    ends (mc 1, B leaves the clock), C's test ends, A (bit 0) is demoted. B faults: HANDcold
    evicts C, no longer in test, from the clock; B enters. A and B then hit."""
    assert np.flatnonzero(hits("clockpro", [1, 2, 3, 1, 2, 1, 2], 2)).tolist() == [5, 6]


def test_page_used_in_its_test_period_survives_a_scan():
    """H H S1 S2 S3 H S4 S5 H S6 H with 3 frames. H's hit sets its bit; S3's fault makes
    HANDcold find H referenced in its test period: H is promoted, and HANDhot, passing S1 and S2
    (their tests end, mc drops to 1), demotes H (bit now 0) to cold; HANDcold then evicts S1.
    H hits again (bit set): at S5's fault HANDcold gives it a new test period at the head and
    evicts S3 instead. H hits at 5, 8 and 10, where LRU loses it to the scan at 5."""
    trace = [0, 0, 1, 2, 3, 0, 4, 5, 0, 6, 0]
    assert np.flatnonzero(hits("clockpro", trace, 3)).tolist() == [1, 5, 8, 10]
    assert np.flatnonzero(hits("lru", trace, 3)).tolist() == [1, 8, 10]


@settings(max_examples=80, deadline=None)
@given(trace=st.lists(st.integers(0, 25), min_size=1, max_size=300),
       frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_kernel_equals_reference(trace, frames, cuts):
    got, _ = chunked_hits("clockpro", trace, frames, cuts)
    assert got == REFERENCE["clockpro"](trace, frames)


def test_larger_memory_matches_reference():
    rng = np.random.default_rng(5)
    trace = (rng.zipf(1.1, 8000) % 1500).tolist()
    for frames in (50, 400):
        assert hits("clockpro", trace, frames).astype(bool).tolist() == \
            REFERENCE["clockpro"](trace, frames)


def test_close_to_lirs_as_the_paper_reports():
    """CLOCK-Pro approximates LIRS (section 5 of the paper): fault counts within 5 % of LIRS's
    on Zipf traces, and clearly below LRU's where memory is small."""
    rng = np.random.default_rng(21)
    weights = 1.0 / np.arange(1, 2001) ** 1.0
    trace = rng.permutation(2000)[rng.choice(2000, 12_000, p=weights / weights.sum())]
    for frames in (20, 150, 900):
        clockpro, lirs = simulate("clockpro", trace, frames), simulate("lirs", trace, frames)
        assert abs(clockpro - lirs) <= 0.05 * lirs
    assert simulate("clockpro", trace, 150) < 0.9 * simulate("lru", trace, 150)


def test_libcachesim_clockpro_is_not_comparable():
    """libCacheSim's ClockPro (a port of pyclockpro) refuses to cache a new page whenever the
    resident cold pages are at their target (its can_insert), so with its Python default
    init_ratio_cold=0.5 a loop over 10 pages in 10 frames keeps only 5 of them: 20 hits in 4
    passes where any policy that fills memory has 40. CLOCK-Pro as defined here fills memory."""
    lcs = pytest.importorskip("libcachesim")
    loop = list(range(10)) * 5
    cache = lcs.ClockPro(10)
    theirs = sum(cache.get(lcs.Request(obj_size=1, obj_id=page, clock_time=i))
                 for i, page in enumerate(loop))
    assert theirs == 20
    assert int(hits("clockpro", loop, 10).sum()) == 40
