"""SIEVE (Zhang, Yang, Yue, Vigfusson and Rashmi, "SIEVE is Simpler than LRU", NSDI 2024).

A FIFO queue that never moves a page on a hit: a hit only sets the page's ``visited`` bit. A
hand walks the queue from the oldest page towards the newest; a visited page has its bit
cleared and is passed over, the first page without the bit is evicted, and the hand stays
where it stopped (at the victim's newer neighbour), wrapping to the oldest page at the head.
New pages enter at the head (newest end) with the bit clear. Pseudocode::

    for page in trace:
        if resident[page]: hit; visited[page] = 1
        else:
            fault
            if used == frames:
                h = hand if hand is set else tail                 # tail: the oldest page
                while visited[h]: visited[h] = 0; h = newer(h) or tail
                hand = newer(h); unlink h; resident[h] = False
            else: used += 1
            push page at head; visited[page] = 0

Conventions as libCacheSim's ``Sieve`` (``cache/eviction/Sieve.c``): the bit is one bit
(``freq`` capped at 1), the hand starts at the tail and keeps its place between evictions.
The queue is a doubly linked list in two per-page arrays (``newer``, ``older``);
``older[page] == -2`` marks a page that is not resident.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy

_HEAD, _TAIL, _USED, _HAND = 1, 2, 3, 4
_OUT = -2


class SievePolicy(Policy):
    """SIEVE: FIFO order, a visited bit, and a hand that keeps its place."""

    name = "sieve"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, _OUT),
                   "visited": (np.uint8, 0)}
    n_state = 5

    def _setup(self) -> None:
        self.state[_HEAD] = self.state[_TAIL] = self.state[_HAND] = -1

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _sieve_kernel(ids, self.frames, self.newer, self.older, self.visited, self.state, hits)


@njit(cache=True, nogil=True)
def _sieve_kernel(ids, frames, newer, older, visited, state, hits):
    record = hits.size > 0
    head = state[_HEAD]
    tail = state[_TAIL]
    used = state[_USED]
    hand = state[_HAND]
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        if older[page] != _OUT:
            visited[page] = 1
            if record:
                hits[i] = 1
            continue
        faults += 1
        if used == frames:
            victim = hand if hand != -1 else tail
            while visited[victim]:
                visited[victim] = 0
                victim = newer[victim]
                if victim == -1:
                    victim = tail
            hand = newer[victim]
            before = newer[victim]
            after = older[victim]
            if before == -1:
                head = after
            else:
                older[before] = after
            if after == -1:
                tail = before
            else:
                newer[after] = before
            older[victim] = _OUT
            newer[victim] = -1
        else:
            used += 1
        visited[page] = 0
        newer[page] = -1
        older[page] = head
        if head == -1:
            tail = page
        else:
            newer[head] = page
        head = page
    state[0] = faults
    state[_HEAD] = head
    state[_TAIL] = tail
    state[_USED] = used
    state[_HAND] = hand
