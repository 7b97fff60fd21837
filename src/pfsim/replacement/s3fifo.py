"""S3-FIFO (Yang, Zhang, Qiu, Yue and Vinayak, "FIFO queues are all you need for cache
eviction", SOSP 2023, algorithm 1).

Three FIFO queues: a small one S (10 % of the frames) where new pages are tried, the main one M
(the rest), and a ghost queue G of ids S evicted (as many ids as 90 % of the frames). A page
has a 2-bit hit counter, set to 0 when it enters a queue. With ``c`` frames::

    for x in trace:
        if x in S or M: hit; freq[x] = min(freq[x] + 1, 3)
        else:
            fault
            if x in G: remove x from G
            while |S| + |M| == c:                 # reclaim one frame
                if |M| > c - |S's share| or |S| == 0: EVICT_M()
                else: EVICT_S()
            x (freq 0) -> M if it was in G, or if nothing was ever evicted and S holds its
                          share (warm-up: the cold memory fills M too), else -> S
    EVICT_S(): repeat: t = S's oldest, out of S
                  if freq[t] >= 2: t (freq 0) -> M            # "quick demotion" spared it
                  else: t -> G (dropping G's oldest when full); a frame is free: stop
    EVICT_M(): repeat: t = M's oldest, out of M
                  if freq[t] >= 1: freq[t] -= 1; t -> M's newest end  (FIFO reinsertion)
                  else: t is evicted; stop

Conventions as libCacheSim's ``S3FIFO`` (``cache/eviction/S3FIFO.c``, its authors' code):
move-to-main threshold 2, the share of S and the ghost size truncated (``int(c * 0.1)``,
``int(c * 0.9)``), S is emptied first unless M is over its share, and the warm-up rule above (libCacheSim
since 2025). libCacheSim admits no page
into an S of fewer than 2 frames (``obj_size >= fifo size``), so it caches nothing below 20
frames; here S has at least one frame and always admits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy
from pfsim.replacement.lists import LENGTH, SLOTS, init_lists, pop_oldest, push_newest, unlink

_NONE, _SMALL, _MAIN, _GHOST = 0, 1, 2, 3
_EVICTED = 1  # state slot: 1 once anything was evicted
_LISTS = 2
_AT_SMALL, _AT_MAIN, _AT_GHOST = (_LISTS + SLOTS * k for k in range(3))
SMALL_RATIO, GHOST_RATIO, MOVE_TO_MAIN = 0.1, 0.9, 2


class S3FifoPolicy(Policy):
    """S3-FIFO: a small probation FIFO, a main FIFO with reinsertion, and a ghost FIFO."""

    name = "s3fifo"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, -1), "where": (np.uint8, _NONE),
                   "freq": (np.uint8, 0)}
    n_state = _LISTS + 3 * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, 3)
        self.small_share = max(1, int(self.frames * SMALL_RATIO))
        self.main_share = self.frames - self.small_share
        self.ghost_size = int(self.frames * GHOST_RATIO)

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _s3fifo_kernel(ids, self.frames, self.small_share, self.ghost_size, self.newer,
                       self.older, self.where, self.freq, self.state, hits)


@njit(cache=True, nogil=True, inline="always")
def _evict_small(state, ghost_size, newer, older, where, freq):
    while state[_AT_SMALL + LENGTH] > 0:
        t = pop_oldest(state, _AT_SMALL, newer, older)
        if freq[t] >= MOVE_TO_MAIN:
            freq[t] = 0
            push_newest(state, _AT_MAIN, t, newer, older)
            where[t] = _MAIN
        else:
            if ghost_size > 0:
                if state[_AT_GHOST + LENGTH] == ghost_size:
                    where[pop_oldest(state, _AT_GHOST, newer, older)] = _NONE
                push_newest(state, _AT_GHOST, t, newer, older)
                where[t] = _GHOST
            else:
                where[t] = _NONE
            return


@njit(cache=True, nogil=True, inline="always")
def _evict_main(state, newer, older, where, freq):
    while state[_AT_MAIN + LENGTH] > 0:
        t = pop_oldest(state, _AT_MAIN, newer, older)
        if freq[t] >= 1:
            freq[t] -= 1
            push_newest(state, _AT_MAIN, t, newer, older)
        else:
            where[t] = _NONE
            return


@njit(cache=True, nogil=True)
def _s3fifo_kernel(ids, frames, small_share, ghost_size, newer, older, where, freq, state, hits):
    record = hits.size > 0
    main_share = frames - small_share
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        w = where[page]
        if w == _SMALL or w == _MAIN:
            if record:
                hits[i] = 1
            if freq[page] < 3:
                freq[page] += 1
            continue
        faults += 1
        if w == _GHOST:
            unlink(state, _AT_GHOST, page, newer, older)
        while state[_AT_SMALL + LENGTH] + state[_AT_MAIN + LENGTH] >= frames:
            state[_EVICTED] = 1
            if state[_AT_MAIN + LENGTH] > main_share or state[_AT_SMALL + LENGTH] == 0:
                _evict_main(state, newer, older, where, freq)
            else:
                _evict_small(state, ghost_size, newer, older, where, freq)
        freq[page] = 0
        if w == _GHOST or (state[_EVICTED] == 0 and state[_AT_SMALL + LENGTH] >= small_share):
            push_newest(state, _AT_MAIN, page, newer, older)
            where[page] = _MAIN
        else:
            push_newest(state, _AT_SMALL, page, newer, older)
            where[page] = _SMALL
    state[0] = faults
