"""Access patterns over a range of pages, generated in compiled chunks.

A :class:`PatternStream` yields page offsets (0 .. npages-1, relative to the range's first
page) and store flags, chunk by chunk, from its own generator seeded from one named random
stream (:mod:`pfsim.workload.generate`): the sequence depends on the seed only, not on the
chunk sizes asked for.

Patterns:
    sequential  byte position ``k * stride`` wrapping at the end of the range
    uniform     each page equally likely
    zipf        page of popularity rank r with probability ~ 1 / r**alpha (bounded Zipf,
                rejection-inversion: O(1) memory); ranks are scattered over the range by a
                keyed bijection
    hotcold     with ``hot_probability`` a page of the hot set (``hot_fraction`` of the range),
                else any page; the hot set moves to the next block every ``phase`` accesses
    trace       the page ids of a recorded trace in request order (wrapping), modulo the range
"""

from __future__ import annotations

import numpy as np

from pfsim.units import PAGE_SIZE
from pfsim.workload import generate as g


class PatternStream:
    """Endless stream of (page offset, is_store) for one access step of one thread.

    Args:
        pattern: "sequential", "uniform", "zipf", "hotcold" or "trace" (``trace``: the dense
            page ids in request order).
        npages: pages in the range; ``offset_bytes`` is the range start within its page.
        rng: the thread-step's random generator (seeds the stream's own generator).
        write_ratio: probability that an access is a store.
    """

    def __init__(self, pattern: str, npages: int, rng: np.random.Generator, write_ratio: float,
                 *, length_bytes: int | None = None, stride: int = 64, alpha: float = 0.99,
                 hot_fraction: float = 0.1, hot_probability: float = 0.9, phase: int = 100_000,
                 offset_bytes: int = 0, trace: np.ndarray | None = None) -> None:
        self.pattern = pattern
        self.npages = npages
        self.write_ratio = write_ratio
        self.length_bytes = length_bytes if length_bytes is not None else npages * PAGE_SIZE
        self.hot_pages = max(1, int(round(npages * hot_fraction)))
        self._trace = trace  # trace pattern: dense page ids in request order
        if pattern == "trace" and (trace is None or trace.size == 0):
            raise ValueError("the trace pattern needs a non-empty array of page ids")
        self.state = np.zeros(g.STATE_WORDS, dtype=np.int64)
        self.state[g.S_RNG] = rng.integers(0, 1 << 63)
        half = 1
        while 1 << (2 * half) < npages:
            half += 1
        self.state[g.S_HALF_BITS] = half
        self.state[g.S_KEY0:] = rng.integers(0, 1 << 63, size=g.FEISTEL_ROUNDS)
        self.iparams = np.zeros(g.IPARAMS, dtype=np.int64)
        self.iparams[g.I_PATTERN] = g.PATTERNS[pattern]
        self.iparams[g.I_NPAGES] = npages
        self.iparams[g.I_STRIDE] = stride
        self.iparams[g.I_LENGTH] = self.length_bytes
        self.iparams[g.I_OFFSET] = offset_bytes
        self.iparams[g.I_HOT_PAGES] = self.hot_pages
        self.iparams[g.I_PHASE] = phase
        self.params = np.zeros(g.PARAMS, dtype=np.float64)
        self.params[g.P_WRITE_RATIO] = write_ratio
        self.params[g.P_ALPHA] = alpha
        self.params[g.P_HOT_PROBABILITY] = hot_probability
        if pattern == "zipf":
            self.params[g.P_H_X1:g.P_S + 1] = g.zipf_constants(npages, float(alpha))

    @property
    def generated(self) -> int:
        return int(self.state[g.S_GENERATED])

    def next_chunk(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` accesses: (page offsets as int64, stores as bool)."""
        if self._trace is not None and self.pattern == "trace":
            at = np.arange(self.generated, self.generated + n, dtype=np.int64) % self._trace.size
            pages = self._trace[at].astype(np.int64) % self.npages
        else:
            pages = np.empty(n, dtype=np.int64)
        stores = np.empty(n, dtype=np.bool_)
        g.fill(self.state, self.iparams, self.params, pages, stores)
        return pages, stores
