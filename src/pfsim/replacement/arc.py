"""ARC, the Adaptive Replacement Cache (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead
Replacement Cache", FAST 2003, figure 4).

Two LRU lists of resident pages, T1 (seen once recently) and T2 (seen at least twice), each
with a ghost list of pages it evicted (B1, B2: ids only, no frame). A target ``p`` for the size
of T1 moves towards whichever ghost list is being hit. With ``c`` frames::

    for x in trace:
        if x in T1 or T2: hit; move x to T2's MRU end                       # case I
        elif x in B1: p = min(p + max(|B2|/|B1|, 1), c); REPLACE(x); x -> T2 # case II
        elif x in B2: p = max(p - max(|B1|/|B2|, 1), 0); REPLACE(x); x -> T2 # case III
        else:                                                               # case IV
            if |T1| + |T2| == c:            # memory full
                if |T1| + |B1| == c:
                    if |B1| > 0: drop B1's LRU; REPLACE(x)
                    else: evict T1's LRU (no ghost)
                else:
                    if |T1|+|T2|+|B1|+|B2| == 2c and |B2| > 0: drop B2's LRU
                    REPLACE(x)
            x -> T1's MRU end
    REPLACE(x): if (|T1| > 0 and (|T1| > p or (x in B2 and |T1| == p))) or |T2| == 0:
                    T1's LRU -> B1's MRU end
                else: T2's LRU -> B2's MRU end

Conventions as libCacheSim's ``ARC`` (``cache/eviction/ARC.c``): ``p`` is a real number
(``float64``), replacement runs only when memory is full (the paper's ``|T1|+|T2|+|B1|+|B2| >=
c`` test is then always true), and REPLACE falls back to T1 when T2 is empty.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy
from pfsim.replacement.lists import LENGTH, SLOTS, init_lists, pop_oldest, push_newest, unlink

_NONE, _T1, _T2, _B1, _B2 = 0, 1, 2, 3, 4  # where a page is
_LISTS = 1  # state slot of the first list; list k (= where code) at _LISTS + SLOTS * (k - 1)
_AT_T1, _AT_T2, _AT_B1, _AT_B2 = (_LISTS + SLOTS * k for k in range(4))


class ArcPolicy(Policy):
    """ARC: recency list T1 and frequency list T2 sized by a target moved by ghost hits."""

    name = "arc"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, -1), "where": (np.uint8, _NONE)}
    n_state = _LISTS + 4 * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, 4)
        self.target = np.zeros(1, dtype=np.float64)  # p

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _arc_kernel(ids, self.frames, self.newer, self.older, self.where, self.state,
                    self.target, hits)


@njit(cache=True, nogil=True, inline="always")
def _replace(state, newer, older, where, p, in_b2):
    t1 = state[_AT_T1 + LENGTH]
    if (t1 > 0 and (t1 > p or (t1 == p and in_b2))) or state[_AT_T2 + LENGTH] == 0:
        victim = pop_oldest(state, _AT_T1, newer, older)
        push_newest(state, _AT_B1, victim, newer, older)
        where[victim] = _B1
    else:
        victim = pop_oldest(state, _AT_T2, newer, older)
        push_newest(state, _AT_B2, victim, newer, older)
        where[victim] = _B2


@njit(cache=True, nogil=True)
def _arc_kernel(ids, frames, newer, older, where, state, target, hits):
    record = hits.size > 0
    p = target[0]
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        w = where[page]
        if w == _T1 or w == _T2:
            if record:
                hits[i] = 1
            unlink(state, _AT_T1 if w == _T1 else _AT_T2, page, newer, older)
            push_newest(state, _AT_T2, page, newer, older)
            where[page] = _T2
            continue
        faults += 1
        b1 = state[_AT_B1 + LENGTH]
        b2 = state[_AT_B2 + LENGTH]
        if w == _B1:
            p = min(p + max(b2 / b1, 1.0), frames)
            unlink(state, _AT_B1, page, newer, older)
        elif w == _B2:
            p = max(p - max(b1 / b2, 1.0), 0.0)
            unlink(state, _AT_B2, page, newer, older)
        t1 = state[_AT_T1 + LENGTH]
        t2 = state[_AT_T2 + LENGTH]
        if t1 + t2 == frames:
            if w != _NONE:
                _replace(state, newer, older, where, p, w == _B2)
            elif t1 + b1 >= frames:
                if b1 > 0:
                    where[pop_oldest(state, _AT_B1, newer, older)] = _NONE
                    _replace(state, newer, older, where, p, False)
                else:
                    where[pop_oldest(state, _AT_T1, newer, older)] = _NONE
            else:
                if t1 + t2 + b1 + b2 >= 2 * frames and b2 > 0:
                    where[pop_oldest(state, _AT_B2, newer, older)] = _NONE
                _replace(state, newer, older, where, p, False)
        if w == _NONE:
            push_newest(state, _AT_T1, page, newer, older)
            where[page] = _T1
        else:
            push_newest(state, _AT_T2, page, newer, older)
            where[page] = _T2
    state[0] = faults
    target[0] = p
