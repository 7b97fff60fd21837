"""Linux's two-list LRU: an inactive and an active list with second chance, as in
``mm/vmscan.c`` and ``mm/swap.c`` of Linux 6.6 (the classic LRU, ``CONFIG_LRU_GEN`` off), for
anonymous pages mapped by one page table entry.

What the kernel does, and what is kept here:

- An access to a resident page sets the accessed ("young") bit of its PTE, in hardware; no list
  moves (``folio_mark_accessed`` in ``mm/swap.c`` is for ``read()``-style accesses, not mapped
  ones).
- A faulting page is added to the head of the **inactive** list (``folio_add_lru`` ->
  ``lru_add_fn``; new anonymous pages start inactive since 5.9), young: the access that
  faulted sets the accessed bit when it is retried.
- Reclaim (``shrink_lruvec``) first deactivates from the active list's tail while
  ``inactive_is_low()``: ``inactive * inactive_ratio < active``, ``inactive_ratio =
  int_sqrt(10 * gb)`` where ``gb`` is the gigabytes on both lists (1 below 1 GiB).
  ``shrink_active_list`` clears the young bit (``folio_referenced``) and moves the page to the
  inactive head whether it was referenced or not (only executable file pages get another trip
  on the active list); ``PG_referenced`` is left set.
- ``shrink_inactive_list`` takes pages from the inactive tail; ``folio_check_references``:
  young (test-and-cleared) and ``PG_referenced`` (test-and-cleared) ->
  ``FOLIOREF_ACTIVATE`` (to the active head, ``PG_referenced`` set); young only ->
  ``PG_referenced`` set, ``FOLIOREF_KEEP`` (back to the inactive head: the second chance); not
  young -> ``FOLIOREF_RECLAIM`` (evicted).

Pseudocode, with ``c`` frames of 4 KiB (``PAGE_SHIFT`` 12 for ``gb``)::

    for x in trace:
        if resident[x]: hit; young[x] = 1
        else:
            fault
            if used == c: RECLAIM_ONE()
            x -> inactive head; young[x] = 1; referenced[x] = 0
    RECLAIM_ONE(): loop:
        if inactive * ratio < active: t = active tail -> inactive head; young[t] = 0
        t = inactive tail; was_young, young[t] = young[t], 0
        was_referenced, referenced[t] = referenced[t], 0
        if was_young:
            referenced[t] = 1
            t -> active head if was_referenced else inactive head
        else: evict t; return

Not modelled: the kernel reclaims in batches of ``SWAP_CLUSTER_MAX`` (32) pages against the
zone watermarks where this frees one frame per fault; the per-CPU ``folio_batch`` that delays
list insertion; file pages and the anon/file balance (``get_scan_count``); refault
activation by shadow entries (``mm/workingset.c``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pfsim.replacement.base import Policy
from pfsim.replacement.lists import LENGTH, SLOTS, init_lists, pop_oldest, push_newest

_NONE, _INACTIVE, _ACTIVE = 0, 1, 2
_YOUNG, _REFERENCED = 1, 2  # bits of ``flags``: PTE accessed bit, PG_referenced
_LISTS = 1
_AT_INACTIVE, _AT_ACTIVE = _LISTS, _LISTS + SLOTS
PAGE_SHIFT = 12


def inactive_ratio_table(frames: int) -> np.ndarray:
    """``inactive_ratio`` for every total of list pages up to ``frames``, indexed by
    ``(inactive + active) >> (30 - PAGE_SHIFT)`` (gigabytes): ``int_sqrt(10 * gb)``, 1 for 0."""
    gigabytes = frames >> (30 - PAGE_SHIFT)
    return np.array([1] + [math.isqrt(10 * gb) for gb in range(1, gigabytes + 1)],
                    dtype=np.int64)


class LinuxPolicy(Policy):
    """Linux's classic inactive/active LRU with the referenced-bit second chance."""

    name = "linux"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, -1), "where": (np.uint8, _NONE),
                   "flags": (np.uint8, 0)}
    n_state = _LISTS + 2 * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, 2)
        self.ratios = inactive_ratio_table(self.frames)

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _linux_kernel(ids, self.frames, self.ratios, self.newer, self.older, self.where,
                      self.flags, self.state, hits)


@njit(cache=True, nogil=True, inline="always")
def _reclaim_one(state, ratios, newer, older, where, flags):
    while True:
        inactive = state[_AT_INACTIVE + LENGTH]
        active = state[_AT_ACTIVE + LENGTH]
        if inactive * ratios[(inactive + active) >> (30 - PAGE_SHIFT)] < active:
            t = pop_oldest(state, _AT_ACTIVE, newer, older)  # shrink_active_list
            flags[t] = flags[t] & _REFERENCED
            push_newest(state, _AT_INACTIVE, t, newer, older)
            where[t] = _INACTIVE
        t = pop_oldest(state, _AT_INACTIVE, newer, older)  # shrink_inactive_list
        f = flags[t]
        if f & _YOUNG:
            flags[t] = _REFERENCED
            if f & _REFERENCED:
                push_newest(state, _AT_ACTIVE, t, newer, older)
                where[t] = _ACTIVE
            else:
                push_newest(state, _AT_INACTIVE, t, newer, older)
        else:
            flags[t] = 0
            where[t] = _NONE
            return


@njit(cache=True, nogil=True)
def _linux_kernel(ids, frames, ratios, newer, older, where, flags, state, hits):
    record = hits.size > 0
    faults = state[0]
    for i in range(ids.size):
        page = ids[i]
        if where[page] != _NONE:
            flags[page] |= _YOUNG
            if record:
                hits[i] = 1
            continue
        faults += 1
        if state[_AT_INACTIVE + LENGTH] + state[_AT_ACTIVE + LENGTH] == frames:
            _reclaim_one(state, ratios, newer, older, where, flags)
        push_newest(state, _AT_INACTIVE, page, newer, older)
        where[page] = _INACTIVE
        flags[page] = _YOUNG
    state[0] = faults
