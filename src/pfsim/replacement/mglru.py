"""MGLRU, the multi-generational LRU (``CONFIG_LRU_GEN``), as in ``mm/vmscan.c`` (``lru_gen_*``,
``inc_max_seq``, ``try_to_inc_min_seq``, ``should_run_aging``, ``sort_folio``,
``lru_gen_look_around``), ``include/linux/mm_inline.h`` (``lru_gen_add_folio``) and
``mm/swap.c`` (``folio_add_lru``) of Linux 6.6, for anonymous pages mapped by one PTE.

Pages are grouped in generations numbered by sequence numbers from ``min_seq`` (oldest) to
``max_seq`` (youngest), ``MIN_NR_GENS`` = 2 to ``MAX_NR_GENS`` = 4 of them, one list each
(``lrugen->folios[gen]``, ``gen = seq % MAX_NR_GENS``). What the kernel does, and what is kept:

- An access to a resident page sets its PTE's accessed ("young") bit; nothing moves.
- A faulting page is added to the youngest generation: ``folio_add_lru`` marks a page added in
  a fault active (``lru_gen_in_fault``), and ``lru_gen_add_folio`` puts active pages in
  ``max_seq``. It is young (the access that faulted is retried).
- **Aging** (``try_to_inc_max_seq``): a page-table walk test-and-clears the young bit of every
  mapped page and moves each young page to generation ``max_seq`` by relabelling it
  (``folio_update_gen``: the page stays on its list until eviction sorts it), then
  ``inc_max_seq`` opens a new, empty youngest generation. It runs when ``should_run_aging``
  says so: fewer than ``MIN_NR_GENS + 1`` generations ("out of cold folios"), or exactly that
  many with more than half of the pages in the youngest generation or fewer than a quarter in
  the oldest (``young * MIN_NR_GENS > total``, ``old * (MIN_NR_GENS + 2) < total``), as kswapd's
  ``lru_gen_age_node`` does before reclaiming.
- **Eviction** (``evict_folios``) takes pages from the tail of the oldest generation's list.
  ``try_to_inc_min_seq`` first retires oldest generations whose list is empty while more than
  ``MIN_NR_GENS`` remain. ``sort_folio`` moves a page relabelled by the walk to the head of its
  generation's list; a page found young by the rmap walk (``folio_referenced`` ->
  ``lru_gen_look_around``) has its bit cleared and goes to the head of ``max_seq`` (a rejected
  folio is never put back in the oldest generation); any other page is evicted.

Pseudocode, from ``max_seq = MIN_NR_GENS + 1``, ``min_seq = 0`` (``lru_gen_init_lruvec``)::

    for x in trace:
        if resident[x]: hit; young[x] = 1
        else:
            fault
            if used == c: EVICT_ONE()
            x -> head of list[max_seq]; gen[x] = max_seq; young[x] = 1
    EVICT_ONE(): loop:
        if SHOULD_RUN_AGING(): AGE()
        while list[min_seq] is empty and min_seq + 2 <= max_seq: min_seq += 1
        if list[min_seq] is empty: continue               # aging will run
        t = tail of list[min_seq]
        if gen[t] != min_seq: t -> head of list[gen[t]]   # promoted by the walk
        elif young[t]: young[t] = 0; gen[t] = max_seq; t -> head of list[max_seq]
        else: evict t; return
    AGE(): for every resident page p (walked oldest list first, tail to head):
               if young[p]: young[p] = 0; gen[p] = max_seq
           max_seq += 1

Not modelled: reclaim in batches and its priorities (direct reclaim skips optional aging at
``DEF_PRIORITY``), look-around's promotion of young neighbours in the same page table
(``lru_gen_look_around`` scans up to ``MIN_LRU_BATCH`` nearby PTEs: it needs virtual
addresses, which dense page ids do not keep), tiers and the refault PID controller (they act
on file pages accessed through file descriptors), the Bloom filters that skip page tables, and
``min_ttl_ms`` thrashing prevention.
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
)

MIN_NR_GENS, MAX_NR_GENS = 2, 4
_MIN_SEQ, _MAX_SEQ = 1, 2
_COUNTS = 3  # pages labelled with each generation (lrugen->nr_pages), MAX_NR_GENS slots
_LISTS = _COUNTS + MAX_NR_GENS
_OUT = -1  # gen[] of a page that is not resident


class MglruPolicy(Policy):
    """Multi-generational LRU: aging relabels young pages, eviction scans the oldest generation."""

    name = "mglru"
    page_arrays = {"newer": (np.int32, -1), "older": (np.int32, -1), "gen": (np.int64, _OUT),
                   "young": (np.uint8, 0)}
    n_state = _LISTS + MAX_NR_GENS * SLOTS

    def _setup(self) -> None:
        init_lists(self.state, _LISTS, MAX_NR_GENS)
        self.state[_MIN_SEQ] = 0
        self.state[_MAX_SEQ] = MIN_NR_GENS + 1

    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        _mglru_kernel(ids, self.frames, self.newer, self.older, self.gen, self.young,
                      self.state, hits)


@njit(cache=True, nogil=True, inline="always")
def _at(seq):
    return _LISTS + SLOTS * (seq % MAX_NR_GENS)


@njit(cache=True, nogil=True, inline="always")
def _should_run_aging(state):
    min_seq = state[_MIN_SEQ]
    max_seq = state[_MAX_SEQ]
    if min_seq + MIN_NR_GENS > max_seq:
        return True
    if min_seq + MIN_NR_GENS < max_seq:
        return False
    total = 0
    for seq in range(min_seq, max_seq + 1):
        total += state[_COUNTS + seq % MAX_NR_GENS]
    young = state[_COUNTS + max_seq % MAX_NR_GENS]
    old = state[_COUNTS + (max_seq - MIN_NR_GENS) % MAX_NR_GENS]
    return young * MIN_NR_GENS > total or old * (MIN_NR_GENS + 2) < total


@njit(cache=True, nogil=True, inline="always")
def _age(state, newer, older, gen, young):
    max_seq = state[_MAX_SEQ]
    for seq in range(state[_MIN_SEQ], max_seq + 1):
        page = state[_at(seq) + TAIL]
        while page != -1:
            if young[page]:
                young[page] = 0
                state[_COUNTS + gen[page] % MAX_NR_GENS] -= 1
                state[_COUNTS + max_seq % MAX_NR_GENS] += 1
                gen[page] = max_seq
            page = newer[page]
    state[_MAX_SEQ] = max_seq + 1


@njit(cache=True, nogil=True, inline="always")
def _evict_one(state, newer, older, gen, young):
    while True:
        if _should_run_aging(state):
            _age(state, newer, older, gen, young)
        min_seq = state[_MIN_SEQ]
        while state[_at(min_seq) + LENGTH] == 0 and min_seq + MIN_NR_GENS <= state[_MAX_SEQ]:
            min_seq += 1
        state[_MIN_SEQ] = min_seq
        at = _at(min_seq)
        if state[at + LENGTH] == 0:
            continue
        page = pop_oldest(state, at, newer, older)
        if gen[page] != min_seq:  # sort_folio: promoted by the walk
            push_newest(state, _at(gen[page]), page, newer, older)
        elif young[page]:  # referenced: look-around promotes it to max_seq
            young[page] = 0
            max_seq = state[_MAX_SEQ]
            state[_COUNTS + min_seq % MAX_NR_GENS] -= 1
            state[_COUNTS + max_seq % MAX_NR_GENS] += 1
            gen[page] = max_seq
            push_newest(state, _at(max_seq), page, newer, older)
        else:
            state[_COUNTS + min_seq % MAX_NR_GENS] -= 1
            gen[page] = _OUT
            return


@njit(cache=True, nogil=True)
def _mglru_kernel(ids, frames, newer, older, gen, young, state, hits):
    record = hits.size > 0
    faults = state[0]
    used = 0
    for k in range(MAX_NR_GENS):
        used += state[_LISTS + SLOTS * k + LENGTH]
    for i in range(ids.size):
        page = ids[i]
        if gen[page] != _OUT:
            young[page] = 1
            if record:
                hits[i] = 1
            continue
        faults += 1
        if used == frames:
            _evict_one(state, newer, older, gen, young)
        else:
            used += 1
        max_seq = state[_MAX_SEQ]
        push_newest(state, _at(max_seq), page, newer, older)
        state[_COUNTS + max_seq % MAX_NR_GENS] += 1
        gen[page] = max_seq
        young[page] = 1
    state[0] = faults
