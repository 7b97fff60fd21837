"""Access-pattern generators against their definitions."""

from __future__ import annotations

import numpy as np

from pfsim.workload.patterns import PatternStream


def stream(pattern, npages=64, seed=0, **kw):
    return PatternStream(pattern, npages, np.random.default_rng(seed), 0.25, **kw)


def test_sequential_walks_the_range_by_stride_and_wraps():
    s = stream("sequential", npages=4, stride=2048)
    pages, _ = s.next_chunk(10)
    assert pages.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 0, 0]


def test_same_seed_and_chunks_give_the_same_stream():
    for pattern in ("uniform", "zipf", "hotcold"):
        a, b = stream(pattern, seed=3), stream(pattern, seed=3)
        for n in (1, 99, 400):
            pa, sa = a.next_chunk(n)
            pb, sb = b.next_chunk(n)
            assert np.array_equal(pa, pb) and np.array_equal(sa, sb)
        assert not np.array_equal(stream(pattern, seed=4).next_chunk(500)[0],
                                  stream(pattern, seed=3).next_chunk(500)[0])


def test_sequential_does_not_depend_on_chunking():
    seq = stream("sequential")
    assert np.array_equal(np.concatenate([seq.next_chunk(7)[0], seq.next_chunk(13)[0]]),
                          stream("sequential").next_chunk(20)[0])


def test_uniform_covers_the_range_evenly():
    pages, stores = stream("uniform", npages=16).next_chunk(160_000)
    counts = np.bincount(pages, minlength=16)
    assert pages.min() == 0 and pages.max() == 15
    assert np.all(np.abs(counts - 10_000) < 500)  # ~5 sigma
    assert abs(stores.mean() - 0.25) < 0.01


def test_zipf_rank_frequencies_follow_the_power_law():
    """Bounded Zipf(1.0) over 100 pages: P(rank r) = (1/r) / H_100.  The most popular page
    should get 1/H_100 = 19.28 % of accesses, the second 9.64 %."""
    pages, _ = stream("zipf", npages=100, alpha=1.0).next_chunk(400_000)
    counts = np.sort(np.bincount(pages, minlength=100))[::-1] / 400_000
    harmonic = sum(1 / r for r in range(1, 101))
    assert abs(counts[0] - 1 / harmonic) < 0.004
    assert abs(counts[1] - 0.5 / harmonic) < 0.003


def test_hotcold_concentrates_on_a_moving_hot_set():
    s = stream("hotcold", npages=100, hot_fraction=0.1, hot_probability=0.9, phase=10_000)
    first, _ = s.next_chunk(10_000)
    second, _ = s.next_chunk(10_000)
    in_first_hot = np.mean((first >= 0) & (first < 10))
    in_second_hot = np.mean((second >= 10) & (second < 20))
    # 0.9 from the hot set plus 0.1 * 10 % from the uniform part = 0.91
    assert abs(in_first_hot - 0.91) < 0.01 and abs(in_second_hot - 0.91) < 0.01
