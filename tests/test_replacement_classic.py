"""FIFO, LRU, CLOCK, random, OPT: hand-computed cases, kernels against the references, libCacheSim,
and the same results whatever the chunking of the trace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import chunked_hits
from pfsim.errors import ConfigError
from pfsim.replacement import PageIds, hits, make_policy, simulate
from pfsim.replacement.opt import next_use_of
from pfsim.replacement.reference import REFERENCE, splitmix64

CLASSIC = ["clock", "fifo", "lru", "opt", "random"]

# The reference string of OSTEP chapter 22 and Silberschatz, 3 frames.
OSTEP_TRACE = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2]
INT64_NEVER = 2**63 - 1  # libCacheSim Belady's "no next access"


def test_ostep_string_by_hand():
    """Fault counts on 7,0,1,2,0,3,0,4,2,3,0,3,2 with 3 frames, worked by hand (M = fault):

    FIFO (evict oldest load):      7M 0M 1M 2M(-7) 0 3M(-0) 0M(-1) 4M(-2) 2M(-3) 3M(-0) 0M(-4) 3 2
                                   -> 10 faults
    LRU (evict least recent):      7M 0M 1M 2M(-7) 0 3M(-1) 0 4M(-2) 2M(-3) 3M(-0) 0M(-4) 3 2
                                   -> 9 faults
    OPT (evict farthest next use): 7M 0M 1M 2M(-7, never used again) 0 3M(-1, never) 0
                                   4M(-0: next uses 0@10, 2@8, 3@9) 2 3 0M(-4, never) 3 2
                                   -> 7 faults
    CLOCK (bit 0 on load, 1 on hit; hand starts at the oldest):
        [7 0 1] 2M: 7 has bit 0 -> evict        [2 0 1], hand at 0
        0 hit: 0's bit = 1
        3M: 0 bit 1 -> clear, 1 bit 0 -> evict  [2 0 3], hand at 2
        0 hit: bit 1;  4M: 2 bit 0 -> evict     [4 0 3], hand at 0
        2M: 0 bit 1 -> clear, 3 -> evict        [4 0 2], hand at 4
        3M: 4 bit 0 -> evict                    [3 0 2]
        0, 3, 2 hit                             -> 8 faults
    """
    expected = {"fifo": 10, "lru": 9, "opt": 7, "clock": 8}
    assert {name: simulate(name, OSTEP_TRACE, 3) for name in expected} == \
        expected


def test_ostep_string_lru_per_request():
    """LRU hits on the OSTEP string fall exactly on requests 4, 6, 11 and 12 (0-based)."""
    lru_hits = hits("lru", OSTEP_TRACE, 3)
    assert np.flatnonzero(lru_hits).tolist() == [4, 6, 11, 12]


def test_fifo_belady_anomaly():
    """FIFO on 1,2,3,4,1,2,5,1,2,3,4,5 faults 9 times with 3 frames but 10 with 4 (Belady 1969)."""
    trace = np.array([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5])
    assert (simulate("fifo", trace, 3), simulate("fifo", trace, 4)) == (9, 10)
    assert (simulate("lru", trace, 3), simulate("lru", trace, 4)) == (10, 8)


@pytest.mark.parametrize("name", CLASSIC)
def test_enough_frames_fault_once_per_page(name):
    """With at least as many frames as distinct pages, only first touches fault."""
    trace = np.random.default_rng(1).integers(0, 50, 2000) * 4096
    distinct = np.unique(trace).size
    assert simulate(name, trace, distinct, seed=7) == distinct
    assert simulate(name, trace, 10 * distinct, seed=7) == distinct


@pytest.mark.parametrize("name", CLASSIC)
def test_one_frame_faults_on_every_change_of_page(name):
    """With one frame, a request hits exactly when it repeats the previous page."""
    trace = np.array([3, 3, 5, 3, 3, 3, 9, 9, 5])
    assert simulate(name, trace, 1) == 5


def test_opt_is_a_lower_bound():
    """No policy faults less than OPT on the same trace and memory size."""
    trace = np.random.default_rng(2).zipf(1.3, 3000) % 400
    for frames in (5, 40, 200):
        best = simulate("opt", trace, frames)
        assert all(simulate(name, trace, frames) >= best for name in CLASSIC)


def test_random_is_seeded():
    """The same seed repeats the same hits; different seeds pick different victims."""
    trace = np.random.default_rng(4).integers(0, 30, 500)
    outcomes = {hits("random", trace, 10, seed=seed).tobytes() for seed in range(6)}
    again = hits("random", trace, 10, seed=3)
    assert np.array_equal(again, hits("random", trace, 10, seed=3))
    assert len(outcomes) > 1


def test_splitmix64_matches_published_outputs():
    """The reference generator gives splitmix64's known first outputs for seed 0."""
    state, outputs = 0, []
    for _ in range(3):
        state, value = splitmix64(state)
        outputs.append(value)
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_page_ids_number_pages_in_order_of_first_appearance():
    """Dense ids 0, 1, 2... follow first appearance, across chunks and table growth."""
    page_ids = PageIds()
    assert page_ids.map(np.array([900, 5, 900, 2**50])).tolist() == [0, 1, 0, 2]
    assert page_ids.map(np.array([5, 7])).tolist() == [1, 3]
    pages = np.random.default_rng(8).integers(0, 2**62, 300_000)  # forces several rehashes
    first_seen: dict[int, int] = {}
    expected = [first_seen.setdefault(int(page), len(first_seen)) for page in pages]
    fresh = PageIds()
    assert fresh.map(pages[:1000]).tolist() + fresh.map(pages[1000:]).tolist() == expected
    assert fresh.n_pages == len(first_seen)


def test_next_use_matches_a_forward_scan():
    """next_use agrees with looking ahead for each request's page by hand."""
    trace = np.random.default_rng(5).integers(0, 40, 400)
    expected = [next((j for j in range(i + 1, trace.size) if trace[j] == trace[i]), trace.size)
                for i in range(trace.size)]
    assert next_use_of(trace.astype(np.int32), 40).tolist() == expected


def test_unknown_policy_lists_valid_names():
    """make_policy names the bad policy and every valid one."""
    with pytest.raises(ConfigError) as error:
        make_policy("lfu", 4)
    assert str(error.value).startswith("unknown replacement policy 'lfu'; valid policies: ")
    assert str(error.value).endswith("valid policies: 2q, arc, clock, clockpro, fifo, linux, "
                                     "lirs, lru, mglru, opt, random, s3fifo, sieve")


def test_frames_must_be_positive():
    """Zero frames is a programming error."""
    with pytest.raises(ValueError, match="positive"):
        simulate("lru", [1, 2], 0)


page_traces = st.tuples(
    st.lists(st.integers(0, 12), max_size=60),
    st.sampled_from([1, 4096, 2**40 + 1]),  # the last spreads pages beyond the dense table
).map(lambda drawn: [page * drawn[1] for page in drawn[0]])


@pytest.mark.parametrize("name", CLASSIC)
@settings(max_examples=40, deadline=None)
@given(trace=page_traces, frames=st.integers(1, 8), seed=st.integers(0, 2**64 - 1))
def test_kernel_equals_reference_request_by_request(name, trace, frames, seed):
    """Each compiled kernel hits and faults on exactly the requests its reference version does."""
    fast = hits(name, np.array(trace, dtype=np.int64), frames, seed=seed)
    slow = REFERENCE[name](trace, frames, seed)
    assert fast.astype(bool).tolist() == slow


@pytest.mark.parametrize("name", CLASSIC)
@settings(max_examples=25, deadline=None)
@given(trace=st.lists(st.integers(0, 30), min_size=1, max_size=300), frames=st.integers(1, 12),
       cuts=st.lists(st.integers(0, 300), max_size=6))
def test_chunked_feeding_equals_one_chunk(name, trace, frames, cuts):
    """Feeding the trace in arbitrary chunks (state carried over, arrays grown between them)
    gives the hits of the reference on the whole trace."""
    got, policy = chunked_hits(name, trace, frames, cuts, seed=5)
    assert got == REFERENCE[name](trace, frames, 5)
    assert policy.faults == got.count(False)


def zipf_trace(alpha: float, pages: int, requests: int, seed: int) -> np.ndarray:
    """``requests`` page numbers drawn with P(rank k) proportional to 1/k**alpha."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, pages + 1) ** alpha
    ranks = rng.choice(pages, size=requests, p=weights / weights.sum())
    return rng.permutation(pages)[ranks] * 3 + 11  # popular pages scattered, ids not dense


def libcachesim_hits(lcs, cache, trace: np.ndarray, next_use: np.ndarray | None = None):
    """Per request, 1 if libCacheSim's ``cache`` hit (one object of size 1 per page)."""
    hits = np.zeros(trace.size, dtype=np.uint8)
    for index, page in enumerate(trace.tolist()):
        request = lcs.Request(obj_size=1, obj_id=page, clock_time=index)
        if next_use is not None:
            request.next_access_vtime = int(next_use[index]) if next_use[index] < trace.size \
                else INT64_NEVER
        hits[index] = cache.get(request)
    return hits


@pytest.mark.parametrize("alpha", [0.8, 1.0])
@pytest.mark.parametrize(("name", "cache_class"), [("lru", "LRU"), ("fifo", "FIFO"),
                                                    ("clock", "Clock")])
def test_matches_libcachesim(alpha, name, cache_class):
    """LRU, FIFO and CLOCK hit on the same requests as libCacheSim 0.3.5 on Zipf traces."""
    lcs = pytest.importorskip("libcachesim")
    trace = zipf_trace(alpha, pages=2000, requests=12_000, seed=11)
    for frames in (10, 100, 700):
        theirs = libcachesim_hits(lcs, getattr(lcs, cache_class)(frames), trace)
        ours = hits(name, trace, frames)
        assert int((ours == 0).sum()) == int((theirs == 0).sum())
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("alpha", [0.8, 1.0])
def test_opt_matches_libcachesim_belady(alpha):
    """OPT faults as often as libCacheSim's Belady, fed each request's next access time.

    Only counts are compared: which never-again page leaves first is a free choice of each.
    """
    lcs = pytest.importorskip("libcachesim")
    trace = zipf_trace(alpha, pages=2000, requests=12_000, seed=12)
    ids = PageIds().map(trace)
    next_use = next_use_of(ids, int(ids.max()) + 1)
    for frames in (10, 100, 700):
        theirs = libcachesim_hits(lcs, lcs.Belady(frames), trace, next_use)
        assert simulate("opt", trace, frames) == int((theirs == 0).sum())
