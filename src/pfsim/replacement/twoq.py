"""2Q (Johnson and Shasha, "2Q: A Low Overhead High Performance Buffer Management Replacement
Algorithm", VLDB 1994, the "full version" of section 2.2).

A page seen once waits in the FIFO A1in; if it is requested again only after A1in has pushed
it out (its id then sits in the ghost FIFO A1out), it has proved itself and enters the LRU list
Am. Hits in A1in change nothing (correlated references). With ``c`` frames, ``Kin = c / 4`` and
``Kout = c / 2`` (the paper's recommended 25 % and 50 %)::

    for x in trace:
        if x in Am: hit; move x to Am's MRU end
        elif x in A1in: hit
        else:
            fault
            if |A1in| + |Am| == c:             # memory full: reclaim a frame
                if |A1in| > Kin:
                    y = A1in's oldest; A1out gets y (dropping its oldest id when it holds Kout)
                else: evict Am's LRU page
            if x in A1out: remove x from A1out; x -> Am's MRU end
            else: x -> A1in's newest end

Conventions as libCacheSim's ``TwoQ`` (``cache/eviction/TwoQ.c``): ``Kin`` and ``Kout`` are
truncated (``int(c * 0.25)``, ``int(c * 0.5)``), A1in is over its share only when strictly
larger than ``Kin``. libCacheSim refuses to cache anything when ``Kin`` is 0 (fewer than 4
frames); here A1in then simply passes every page on to A1out.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy
from pfsim.replacement.lists import (
    LENGTH,
    SLOTS,
    init_lists,
    pop_oldest,
    push_newest,
    to_newest,
    unlink,
)

_NONE, _IN, _MAIN, _OUT = 0, 1, 2, 3  # where a page is: nowhere, A1in, Am, A1out
_LISTS = 1
_AT_IN, _AT_MAIN, _AT_OUT = (_LISTS + SLOTS * k for k in range(3))
KIN_RATIO, KOUT_RATIO = 0.25, 0.5


class TwoQPolicy(Policy):
    """2Q: a FIFO probation queue, a ghost FIFO of its evictions, and an LRU main list."""

    name = "2q"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, -1), "where": (np.uint8, _NONE)}
    n_state = _LISTS + 3 * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, 3)
        self.kin = int(self.frames * KIN_RATIO)
        self.kout = int(self.frames * KOUT_RATIO)

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _twoq_kernel(ids, self.frames, self.kin, self.kout, self.newer, self.older, self.where,
                     self.state, hits)


@njit(cache=True, nogil=True)
def _twoq_kernel(ids, frames, kin, kout, newer, older, where, state, hits):
    record = hits.size > 0
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        w = where[page]
        if w == _MAIN or w == _IN:
            if record:
                hits[i] = 1
            if w == _MAIN:
                to_newest(state, _AT_MAIN, page, newer, older)
            continue
        faults += 1
        if w == _OUT:
            unlink(state, _AT_OUT, page, newer, older)  # before the reclaim, as libCacheSim
            from_out = True
        else:
            from_out = False
        if state[_AT_IN + LENGTH] + state[_AT_MAIN + LENGTH] == frames:
            if state[_AT_IN + LENGTH] > kin:
                victim = pop_oldest(state, _AT_IN, newer, older)
                if kout > 0:
                    if state[_AT_OUT + LENGTH] == kout:
                        where[pop_oldest(state, _AT_OUT, newer, older)] = _NONE
                    push_newest(state, _AT_OUT, victim, newer, older)
                    where[victim] = _OUT
                else:
                    where[victim] = _NONE
            else:
                where[pop_oldest(state, _AT_MAIN, newer, older)] = _NONE
        if from_out:
            push_newest(state, _AT_MAIN, page, newer, older)
            where[page] = _MAIN
        else:
            push_newest(state, _AT_IN, page, newer, older)
            where[page] = _IN
    state[0] = faults

