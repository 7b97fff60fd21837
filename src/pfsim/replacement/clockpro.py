"""CLOCK-Pro (Jiang, Chen and Zhang, "CLOCK-Pro: An Effective Improvement of the CLOCK
Replacement", USENIX ATC 2005, section 4).

One clock holds hot pages, resident cold pages and non-resident cold pages still in their
*test period* (ids only). A cold page requested again during its test period has a reuse
distance shorter than the hot pages' and becomes hot. Three hands move the same way round the
clock; the list *head* is the slot just behind HANDhot, where pages are put. A reference bit
is set on hits. ``mc`` is the target number of resident cold pages, ``m - mc`` the most hot
pages; it grows by one when a cold page is re-requested in its test period and shrinks by one
when a test period ends without one. With ``m`` frames::

    for x in trace:
        if x is resident: hit; ref[x] = 1
        else: fault
            if m pages are resident: HANDcold until a page is freed
            if x is in the clock (non-resident, in test):
                mc = min(mc + 1, m); x -> head as hot, ref 0
                while hot > m - mc: HANDhot
            else: x -> head as resident cold, in test, ref 0
            while cold resident + non-resident > mc + m: HANDtest
    HANDcold (at a resident cold page p):
        if ref[p]: ref[p] = 0
            if in test: mc = min(mc + 1, m); p -> head as hot; while hot > m - mc: HANDhot
            else: p -> head, starting a new test period
        else: p leaves memory; stays in the clock (non-resident) if in test, else leaves it;
              the hand stops at the next resident cold page
    HANDhot (until it demotes one hot page, stopping at the next hot page):
        hot page with ref: ref = 0, passed;  hot page without: becomes cold (not in test)
        cold page in test: test ends (mc = max(mc - 1, 1) if not re-requested); a
        non-resident one leaves the clock
    HANDtest (at a cold page): its test period ends (as above); it stops at the next cold page

Conventions (the paper leaves them open): ``mc`` starts at ``m`` and stays within ``[1, m]``
(as the CLOCK-Pro implementations derived from Rik van Riel's and Sami Lehtinen's, among them
libCacheSim's ``ClockPro`` with ``init_ratio_cold=1``), and a test period ending on a resident
page whose bit is set does not shrink ``mc``. libCacheSim's ``ClockPro`` is not comparable
request by request: it refuses to cache a new page whenever the cold pages are at their target
(with its Python default ``init_ratio_cold=0.5`` a loop over ``m`` pages keeps only ``m/2``),
see ``tests/test_replacement_clockpro.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy

_ABSENT, _COLD, _HOT, _TEST = 0, 1, 2, 3  # TEST: non-resident cold page in its test period
_HAND_HOT, _HAND_COLD, _HAND_TEST, _N_COLD, _N_HOT, _N_TEST, _MC = 1, 2, 3, 4, 5, 6, 7


class ClockProPolicy(Policy):
    """CLOCK-Pro: hot and cold pages on one clock, cold pages tested for promotion."""

    name = "clockpro"
    page_arrays = {"nxt": (np.int32, -1), "prv": (np.int32, -1), "status": (np.uint8, _ABSENT),
                   "ref": (np.uint8, 0), "in_test": (np.uint8, 0)}
    n_state = 8

    def _setup(self) -> None:
        self.state[_HAND_HOT] = self.state[_HAND_COLD] = self.state[_HAND_TEST] = -1
        self.state[_MC] = self.frames

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _clockpro_kernel(ids, self.frames, self.nxt, self.prv, self.status, self.ref,
                         self.in_test, self.state, hits)


@njit(cache=True, nogil=True, inline="always")
def _take_out(state, page, nxt, prv):
    """Unlink ``page`` from the clock; hands on it move on to its successor."""
    after = nxt[page]
    if after == page:  # the only page
        for hand in (_HAND_HOT, _HAND_COLD, _HAND_TEST):
            state[hand] = -1
    else:
        for hand in (_HAND_HOT, _HAND_COLD, _HAND_TEST):
            if state[hand] == page:
                state[hand] = after
        before = prv[page]
        nxt[before] = after
        prv[after] = before
    nxt[page] = prv[page] = -1


@njit(cache=True, nogil=True, inline="always")
def _put_at_head(state, page, nxt, prv):
    """Insert ``page`` (not in the clock) just behind HANDhot."""
    hot = state[_HAND_HOT]
    if hot == -1:
        nxt[page] = prv[page] = page
        state[_HAND_HOT] = state[_HAND_COLD] = state[_HAND_TEST] = page
        return
    before = prv[hot]
    nxt[before] = page
    prv[page] = before
    nxt[page] = hot
    prv[hot] = page


@njit(cache=True, nogil=True, inline="always")
def _end_test(state, page, nxt, prv, status, ref, in_test):
    """The test period of cold ``page`` ends without promotion."""
    in_test[page] = 0
    if not ref[page] and state[_MC] > 1:
        state[_MC] -= 1
    if status[page] == _TEST:
        _take_out(state, page, nxt, prv)
        status[page] = _ABSENT
        state[_N_TEST] -= 1


@njit(cache=True, nogil=True)
def _run_hand_hot(state, nxt, prv, status, ref, in_test):
    """Move HANDhot until it demotes one hot page; it stops at the next hot page."""
    while True:
        page = state[_HAND_HOT]
        state[_HAND_HOT] = nxt[page]
        if status[page] == _HOT:
            if ref[page]:
                ref[page] = 0
            else:
                status[page] = _COLD
                state[_N_HOT] -= 1
                state[_N_COLD] += 1
                break
        elif in_test[page]:
            _end_test(state, page, nxt, prv, status, ref, in_test)
    while status[state[_HAND_HOT]] != _HOT and state[_N_HOT] > 0:
        page = state[_HAND_HOT]
        state[_HAND_HOT] = nxt[page]
        if in_test[page]:
            _end_test(state, page, nxt, prv, status, ref, in_test)


@njit(cache=True, nogil=True, inline="always")
def _promote(state, page, frames, nxt, prv, status, ref, in_test):
    """Cold ``page`` re-requested in its test period becomes hot at the head."""
    state[_MC] = min(state[_MC] + 1, frames)
    _take_out(state, page, nxt, prv)
    _put_at_head(state, page, nxt, prv)
    status[page] = _HOT
    ref[page] = 0
    in_test[page] = 0
    state[_N_HOT] += 1
    while state[_N_HOT] > frames - state[_MC]:
        _run_hand_hot(state, nxt, prv, status, ref, in_test)


@njit(cache=True, nogil=True)
def _run_hand_cold(state, frames, nxt, prv, status, ref, in_test):
    """Move HANDcold until it frees a frame; it stops at the next resident cold page."""
    while True:
        page = state[_HAND_COLD]
        if status[page] != _COLD:
            state[_HAND_COLD] = nxt[page]
            continue
        if ref[page]:
            ref[page] = 0
            state[_HAND_COLD] = nxt[page]
            if in_test[page]:
                state[_N_COLD] -= 1
                _promote(state, page, frames, nxt, prv, status, ref, in_test)
            else:
                in_test[page] = 1
                _take_out(state, page, nxt, prv)
                _put_at_head(state, page, nxt, prv)
            continue
        state[_HAND_COLD] = nxt[page]
        state[_N_COLD] -= 1
        if in_test[page]:
            status[page] = _TEST
            state[_N_TEST] += 1
        else:
            _take_out(state, page, nxt, prv)
            status[page] = _ABSENT
        break
    while status[state[_HAND_COLD]] != _COLD and state[_N_COLD] > 0:
        state[_HAND_COLD] = nxt[state[_HAND_COLD]]


@njit(cache=True, nogil=True)
def _clockpro_kernel(ids, frames, nxt, prv, status, ref, in_test, state, hits):
    record = hits.size > 0
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        st = status[page]
        if st == _COLD or st == _HOT:
            ref[page] = 1
            if record:
                hits[i] = 1
            continue
        faults += 1
        if state[_N_COLD] + state[_N_HOT] == frames:
            _run_hand_cold(state, frames, nxt, prv, status, ref, in_test)
        if status[page] == _TEST:  # still in the clock after the cold hand ran
            state[_N_TEST] -= 1
            _promote(state, page, frames, nxt, prv, status, ref, in_test)
        else:
            _put_at_head(state, page, nxt, prv)
            status[page] = _COLD
            ref[page] = 0
            in_test[page] = 1
            state[_N_COLD] += 1
        while state[_N_COLD] + state[_N_TEST] > state[_MC] + frames:
            _run_hand_test(state, nxt, prv, status, ref, in_test)
    state[0] = faults


@njit(cache=True, nogil=True)
def _run_hand_test(state, nxt, prv, status, ref, in_test):
    """End the test period of the cold page at HANDtest; it stops at the next cold page."""
    page = state[_HAND_TEST]
    while status[page] == _HOT:
        page = nxt[page]
    state[_HAND_TEST] = nxt[page]
    if in_test[page]:
        _end_test(state, page, nxt, prv, status, ref, in_test)
    page = state[_HAND_TEST]
    while page != -1 and status[page] == _HOT:
        page = nxt[page]
    state[_HAND_TEST] = page
