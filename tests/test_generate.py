"""The compiled stream generators against their definitions and against themselves run by
the interpreter (``py_func``: the same readable code without numba)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pfsim.workload import generate as g
from pfsim.workload.patterns import PatternStream


def _state(seed: int, npages: int) -> np.ndarray:
    stream = PatternStream("zipf", npages, np.random.default_rng(seed), 0.5)
    return stream.state


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1000, 4097])
def test_scatter_is_a_bijection_of_the_range(n):
    state = _state(n, n)
    pages = [g.scatter(r, n, state) for r in range(n)]
    assert sorted(pages) == list(range(n))


def test_scatter_differs_between_seeds():
    a = [g.scatter(r, 1000, _state(1, 1000)) for r in range(20)]
    b = [g.scatter(r, 1000, _state(2, 1000)) for r in range(20)]
    assert a != b


def test_splitmix64_first_outputs():
    """SplitMix64 seeded with 0: the reference outputs of Vigna's splitmix64.c (the
    generator's published test values)."""
    state = np.zeros(g.STATE_WORDS, dtype=np.int64)
    got = [int(g._next(state)) for _ in range(3)]
    assert got == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("alpha", [0.5, 0.99, 1.0, 1.5])
def test_zipf_ranks_follow_the_power_law(alpha):
    """Bounded Zipf over 50 ranks: the frequency of each of the first ranks is r**-alpha / H
    with H = sum of k**-alpha (within 5 standard deviations of 200,000 draws)."""
    n, draws = 50, 200_000
    stream = PatternStream("zipf", n, np.random.default_rng(7), 0.0, alpha=alpha)
    params = stream.params
    ranks = np.array([g.zipf_rank(stream.state, n, alpha, params[g.P_H_X1], params[g.P_H_N],
                                  params[g.P_S]) for _ in range(draws)])
    assert ranks.min() >= 1 and ranks.max() <= n
    harmonic = sum(k ** -alpha for k in range(1, n + 1))
    counts = np.bincount(ranks, minlength=n + 1)
    for r in (1, 2, 3, 10, 50):
        p = r ** -alpha / harmonic
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(counts[r] - draws * p) < 5 * sigma, (r, counts[r], draws * p)


@pytest.mark.parametrize("pattern", ["sequential", "uniform", "zipf", "hotcold"])
def test_compiled_and_interpreted_chunks_are_identical(pattern):
    """``fill`` compiled and ``fill.py_func`` (every helper still compiled) give the same
    pages and stores, and chunking does not change the stream."""
    a = PatternStream(pattern, 300, np.random.default_rng(3), 0.4, stride=4096 * 3,
                      phase=50)
    b = PatternStream(pattern, 300, np.random.default_rng(3), 0.4, stride=4096 * 3,
                      phase=50)
    pages_a, stores_a = a.next_chunk(500)
    pages_b = np.empty(500, dtype=np.int64)
    stores_b = np.empty(500, dtype=np.bool_)
    g.fill.py_func(b.state, b.iparams, b.params, pages_b[:123], stores_b[:123])
    g.fill.py_func(b.state, b.iparams, b.params, pages_b[123:], stores_b[123:])
    assert np.array_equal(pages_a, pages_b) and np.array_equal(stores_a, stores_b)
    assert pages_a.min() >= 0 and pages_a.max() < 300


def test_a_zipf_stream_over_a_terabyte_holds_no_table():
    """2**28 pages: the stream's arrays are a few words (the former CDF and permutation took
    40 bytes a page, 10 GiB here), and its pages fall in the range."""
    stream = PatternStream("zipf", 1 << 28, np.random.default_rng(1), 0.3, alpha=0.99)
    pages, _ = stream.next_chunk(10_000)
    assert pages.min() >= 0 and pages.max() < 1 << 28
    assert stream.state.nbytes + stream.params.nbytes + stream.iparams.nbytes < 1024
    # the most popular page (rank 1) gets about 1/H(2**28, 0.99) of the accesses, about 5 %
    assert 0.03 < np.bincount(pages).max() / 10_000 < 0.08
