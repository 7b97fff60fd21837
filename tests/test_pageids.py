"""PageIds: dense ids in order of first appearance whatever the chunking, through the direct
table, its growth, and the switch to the hash table when a large page number arrives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.replacement import PageIds
from pfsim.replacement.pageids import DIRECT_LIMIT

numbers = st.one_of(st.integers(0, 300), st.integers(0, DIRECT_LIMIT - 1),
                    st.integers(DIRECT_LIMIT, 2**62))


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.lists(numbers, max_size=40), min_size=1, max_size=6))
def test_ids_follow_first_appearance(chunks):
    first_seen: dict[int, int] = {}
    page_ids = PageIds()
    for chunk in chunks:
        expected = [first_seen.setdefault(page, len(first_seen)) for page in chunk]
        assert page_ids.map(np.array(chunk, dtype=np.int64)).tolist() == expected
    assert page_ids.n_pages == len(first_seen)


def test_switch_to_hash_keeps_earlier_ids():
    """200,000 small page numbers (direct table, grown several times), then byte addresses."""
    rng = np.random.default_rng(4)
    small = rng.integers(0, 3_000_000, 200_000)
    large = rng.integers(2**40, 2**41, 200_000)
    mixed = np.concatenate([small, large, small[:1000]])
    first_seen: dict[int, int] = {}
    expected = [first_seen.setdefault(int(page), len(first_seen)) for page in mixed]
    page_ids = PageIds()
    got = [page_ids.map(part) for part in (small[:50_000], small[50_000:], large, small[:1000])]
    assert np.concatenate(got).tolist() == expected
