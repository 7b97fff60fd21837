"""LIRS, Low Inter-reference Recency Set (Jiang and Zhang, "LIRS: An Efficient Low
Inter-reference Recency Set Replacement Policy to Improve Buffer Cache Performance",
SIGMETRICS 2002, section 3.3).

Pages whose last two requests were close together (low inter-reference recency) are LIR and
stay resident; the others are HIR, and only ``Lhirs`` frames (1 % of memory, at least 1) hold
resident HIR pages, in the FIFO list Q. The stack S orders LIR pages and recently seen HIR pages
(resident or not) by recency; its bottom is always a LIR page ("stack pruning" removes HIR
pages from the bottom). With ``Llirs = c - Lhirs``::

    for x in trace:
        if x is LIR: hit; move x to the top of S; prune S if x was at the bottom
        elif x is resident HIR: hit
            if x in S: x becomes LIR (top of S, out of Q); DEMOTE()
            else: x to the top of S and the end of Q
        else: fault
            if memory is full: the front of Q is evicted (stays in S, if there, as non-resident)
            if fewer than Llirs pages are LIR: x becomes LIR (top of S)       # warm-up
            elif x in S: x becomes LIR (top of S); DEMOTE()
            else: x is resident HIR, at the top of S and the end of Q
    DEMOTE(): the LIR page at the bottom of S becomes resident HIR at the end of Q; prune S
    prune S: while the bottom of S is HIR: remove it from S (if not resident it is forgotten)

S is not bounded (the paper's definition; the per-page arrays hold it whatever its length).
libCacheSim's ``LIRS`` differs in two ways, which change a few hundredths of the miss count
(``tests/test_replacement_lirs.py`` measures it): it bounds S at twice the memory by
forgetting the non-resident HIR pages that left memory longest ago, and a hit on a resident HIR
page that is not in S demotes the bottom LIR page (evicting the front of Q to make room for it)
before re-inserting the page in S as HIR, so memory holds one LIR page fewer until the next
fault. With 1 frame (``Llirs = 0``) LIRS is LRU on Q.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy
from pfsim.replacement.lists import (
    LENGTH,
    SLOTS,
    TAIL,
    init_lists,
    pop_oldest,
    push_newest,
    to_newest,
    unlink,
)

_ABSENT, _LIR, _HIR, _HIR_OUT = 0, 1, 2, 3  # status: HIR_OUT is a non-resident HIR page in S
_LIR_COUNT = 1
_LISTS = 2
_AT_S, _AT_Q = _LISTS, _LISTS + SLOTS  # S: head = top; Q: head = end, tail = front
HIR_RATIO = 0.01


class LirsPolicy(Policy):
    """LIRS: LIR pages stay resident; a small FIFO of resident HIR pages takes the faults."""

    name = "lirs"
    page_arrays = {"s_newer": (np.int32, -1), "s_older": (np.int32, -1),
                   "q_newer": (np.int32, -1), "q_older": (np.int32, -1),
                   "status": (np.uint8, _ABSENT), "in_s": (np.uint8, 0)}
    n_state = _LISTS + 2 * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, 2)
        self.lhirs = max(1, int(self.frames * HIR_RATIO))

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _lirs_kernel(ids, self.frames, self.frames - self.lhirs, self.s_newer, self.s_older,
                     self.q_newer, self.q_older, self.status, self.in_s, self.state, hits)


@njit(cache=True, nogil=True, inline="always")
def _prune(state, s_newer, s_older, status, in_s):
    while state[_AT_S + LENGTH] > 0 and status[state[_AT_S + TAIL]] != _LIR:
        page = pop_oldest(state, _AT_S, s_newer, s_older)
        in_s[page] = 0
        if status[page] == _HIR_OUT:
            status[page] = _ABSENT


@njit(cache=True, nogil=True, inline="always")
def _to_top(state, page, s_newer, s_older, in_s):
    if in_s[page]:
        to_newest(state, _AT_S, page, s_newer, s_older)
    else:
        push_newest(state, _AT_S, page, s_newer, s_older)
        in_s[page] = 1


@njit(cache=True, nogil=True, inline="always")
def _demote(state, s_newer, s_older, q_newer, q_older, status, in_s):
    bottom = pop_oldest(state, _AT_S, s_newer, s_older)
    in_s[bottom] = 0
    status[bottom] = _HIR
    push_newest(state, _AT_Q, bottom, q_newer, q_older)
    state[_LIR_COUNT] -= 1
    _prune(state, s_newer, s_older, status, in_s)


@njit(cache=True, nogil=True)
def _lirs_kernel(ids, frames, llirs, s_newer, s_older, q_newer, q_older, status, in_s, state,
                 hits):
    record = hits.size > 0
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        st = status[page]
        if st == _LIR:
            if record:
                hits[i] = 1
            bottom = state[_AT_S + TAIL] == page
            to_newest(state, _AT_S, page, s_newer, s_older)
            if bottom:
                _prune(state, s_newer, s_older, status, in_s)
            continue
        if st == _HIR:
            if record:
                hits[i] = 1
            if in_s[page] and llirs > 0:
                to_newest(state, _AT_S, page, s_newer, s_older)
                unlink(state, _AT_Q, page, q_newer, q_older)
                status[page] = _LIR
                state[_LIR_COUNT] += 1
                _demote(state, s_newer, s_older, q_newer, q_older, status, in_s)
            else:
                _to_top(state, page, s_newer, s_older, in_s)
                to_newest(state, _AT_Q, page, q_newer, q_older)
            continue
        faults += 1
        if state[_LIR_COUNT] + state[_AT_Q + LENGTH] == frames:
            victim = pop_oldest(state, _AT_Q, q_newer, q_older)
            status[victim] = _HIR_OUT if in_s[victim] else _ABSENT
        if state[_LIR_COUNT] < llirs:
            _to_top(state, page, s_newer, s_older, in_s)
            status[page] = _LIR
            state[_LIR_COUNT] += 1
        elif status[page] == _HIR_OUT and llirs > 0:
            to_newest(state, _AT_S, page, s_newer, s_older)
            status[page] = _LIR
            state[_LIR_COUNT] += 1
            _demote(state, s_newer, s_older, q_newer, q_older, status, in_s)
        else:
            _to_top(state, page, s_newer, s_older, in_s)
            push_newest(state, _AT_Q, page, q_newer, q_older)
            status[page] = _HIR
    state[0] = faults
