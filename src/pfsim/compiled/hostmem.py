"""Compiled host memory: frames, reclaim policies, swap slots, the swap device and readahead.

Mirrors :class:`pfsim.hypervisor.hostmem.HostMemory`, the ``*Resident`` policies of
:mod:`pfsim.hypervisor.reclaim`, :class:`pfsim.hypervisor.swap.SwapDevice` and the swap half of
:class:`pfsim.hypervisor.host.Host` (``_write_back``, ``_swap_in``) over the same packed arrays
the access loop already updates (``hbits``, ``hlinks``, ``hframes``, ``hfree_at``, ``hsmall``).
Min-heaps (free swap slots, device queue slots) return the same minimum as Python's ``heapq``.
"""

from __future__ import annotations

import numpy as np
from pfsim.compiled.jit import core

from pfsim.compiled import state as S
from pfsim.compiled.sched import fail
from pfsim.hypervisor.reclaim.resident import lru_unlink
from pfsim.machine.hostmem_layout import (
    B_DIRTY,
    B_EPT,
    B_REF,
    B_WHERE,
    F_FREE,
    F_GFN,
    F_RING,
    INIO,
    L_HFN,
    L_LRU_NEXT,
    L_LRU_PREV,
    RESIDENT,
    S_LRU_HEAD,
    S_GFN_HWM,
    S_HWM,
    S_NFREE,
    S_NSTACK,
    S_RING_HEAD,
    SWAPCACHE,
    SWAPPED,
)
from pfsim.machine.scan import lru_push_front, ring_push
from pfsim.machine.trace_records import K_SWAP_IO, record
from pfsim.units import NS_PER_S, PAGE_SIZE

SPLITMIX64_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX64_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX64_MIX2 = np.uint64(0x94D049BB133111EB)


# ------------------------------------------------------------------ min-heaps of int64


@core
def minheap_push(a, n, value):
    """Push ``value`` onto the heap ``a[:n]``; returns the new size."""
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if a[parent] <= value:
            break
        a[i] = a[parent]
        i = parent
    a[i] = value
    return n + 1


@core
def minheap_pop(a, n):
    """Pop the minimum of ``a[:n]`` (n > 0); returns it (the size is now n - 1)."""
    top = a[0]
    n -= 1
    if n > 0:
        last = a[n]
        i = 0
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and a[child + 1] < a[child]:
                child += 1
            if a[child] >= last:
                break
            a[i] = a[child]
            i = child
        a[i] = last
    return top


# ------------------------------------------------------------------ policies


@core
def _evictable(m, gfn):
    if gfn < 0 or m.pinned[gfn]:
        return False
    where = m.hbits[B_WHERE, gfn]
    return where == RESIDENT or where == SWAPCACHE


@core
def policy_inserted(m, gfn):
    policy = m.cf[S.CF_POLICY]
    if policy == S.POLICY_LRU:
        lru_push_front(m.hlinks[L_LRU_PREV], m.hlinks[L_LRU_NEXT],
                       m.hsmall[S_LRU_HEAD:S_LRU_HEAD + 2], gfn)
    elif policy == S.POLICY_FIFO:
        ring_push(m.hframes[F_RING], m.hsmall, S_RING_HEAD, gfn)


@core
def splitmix64_next(rstate):
    """Advance the splitmix64 state held in ``rstate[0]`` and return the next draw."""
    z = rstate[0] + SPLITMIX64_GAMMA
    rstate[0] = z
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX64_MIX1
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX64_MIX2
    return z ^ (z >> np.uint64(31))


@core
def select_victims(m, count, victims):
    """Fill ``victims`` with up to ``count`` gfns chosen by the policy; returns how many."""
    policy = m.cf[S.CF_POLICY]
    limit = m.cf[S.CF_LIMIT]
    n = 0
    if policy == S.POLICY_LRU:
        prev = m.hlinks[L_LRU_PREV]
        nxt = m.hlinks[L_LRU_NEXT]
        ends = m.hsmall[S_LRU_HEAD:S_LRU_HEAD + 2]
        gfn = ends[1]
        while gfn != -1 and n < count:
            before = prev[gfn]
            if _evictable(m, gfn):
                lru_unlink(prev, nxt, ends, gfn)
                victims[n] = gfn
                n += 1
            gfn = before
    elif policy == S.POLICY_FIFO:
        ring = m.hframes[F_RING]
        cap = ring.shape[0]
        while m.hsmall[S_RING_HEAD + 1] > 0 and n < count:
            head = m.hsmall[S_RING_HEAD]
            gfn = ring[head]
            m.hsmall[S_RING_HEAD] = (head + 1) % cap
            m.hsmall[S_RING_HEAD + 1] -= 1
            if _evictable(m, gfn):
                victims[n] = gfn
                n += 1
            else:
                fail(m, S.ERR_INVARIANT, gfn)
                return n
    elif policy == S.POLICY_CLOCK:
        budget = 2 * limit + count
        while n < count and budget > 0:
            budget -= 1
            hand = m.hm[S.HM_HAND]
            gfn = m.hframes[F_GFN, hand]
            m.hm[S.HM_HAND] = (hand + 1) % limit
            if not _evictable(m, gfn):
                continue
            if m.hbits[B_REF, gfn]:
                m.hbits[B_REF, gfn] = 0
            else:
                victims[n] = gfn
                n += 1
    else:  # random
        for _attempt in range(64 * count + limit):
            if n == count:
                break
            draw = splitmix64_next(m.rstate)
            gfn = m.hframes[F_GFN, np.int64(draw % np.uint64(limit))]
            chosen = False
            for k in range(n):
                if victims[k] == gfn:
                    chosen = True
            if not chosen and _evictable(m, gfn):
                victims[n] = gfn
                n += 1
    return n


# ------------------------------------------------------------------ frames


@core
def reclaim(m, count, evicted):
    """``HostMemory.reclaim``: victims leave their frames; returns how many (in ``evicted``,
    the gfns; their former frames are ``evicted[count + i]``)."""
    n = select_victims(m, count, evicted)
    for i in range(n):
        gfn = evicted[i]
        if m.pinned[gfn] or not (m.hbits[B_WHERE, gfn] == RESIDENT
                                  or m.hbits[B_WHERE, gfn] == SWAPCACHE):
            fail(m, S.ERR_INVARIANT, gfn)
            return 0
        frame = m.hlinks[L_HFN, gfn]
        m.hframes[F_GFN, frame] = -1
        m.hlinks[L_HFN, gfn] = -1
        m.hbits[B_EPT, gfn] = 0
        m.hbits[B_WHERE, gfn] = SWAPPED
        m.hbits[B_REF, gfn] = 0
        stacked = m.hsmall[S_NSTACK]
        m.hframes[F_FREE, stacked] = frame
        m.hsmall[S_NSTACK] = stacked + 1
        m.hsmall[S_NFREE] += 1
        evicted[count + i] = frame
        m.hm[S.HM_EVICTIONS] += 1
    return n


@core
def pop_free_frame(m):
    """``HostMemory._pop_free``: the last frame freed, else the lowest never used."""
    m.hsmall[S_NFREE] -= 1
    stacked = m.hsmall[S_NSTACK]
    if stacked > 0:
        m.hsmall[S_NSTACK] = stacked - 1
        return m.hframes[F_FREE, stacked - 1]
    frame = m.hsmall[S_HWM]
    m.hsmall[S_HWM] = frame + 1
    return frame


@core
def take_frame(m, t):
    """``take_frame`` followed by the caller's ``_write_back`` of what was evicted."""
    if m.hsmall[S_NFREE] == 0:
        batch = m.cf[S.CF_BATCH]
        n = reclaim(m, batch, m.evicted)
        write_back(m, m.evicted, n, batch, t)
    if m.hsmall[S_NFREE] == 0:
        fail(m, S.ERR_INVARIANT, -2)
        return 0
    return pop_free_frame(m)


@core
def install(m, gfn, frame, where):
    if gfn >= m.hsmall[S_GFN_HWM]:
        m.hsmall[S_GFN_HWM] = gfn + 1
    m.hframes[F_GFN, frame] = gfn
    m.hlinks[L_HFN, gfn] = frame
    m.hbits[B_WHERE, gfn] = where
    policy_inserted(m, gfn)


@core
def map_new(m, gfn, frame):
    install(m, gfn, frame, RESIDENT)
    m.hbits[B_EPT, gfn] = 1
    m.hbits[B_DIRTY, gfn] = 1


@core
def map_cached(m, gfn):
    if m.hbits[B_WHERE, gfn] != SWAPCACHE:
        fail(m, S.ERR_INVARIANT, gfn)
        return
    if m.ra_flag[gfn]:
        m.ra_flag[gfn] = False
        m.hm[S.HM_RA_HITS] += 1
    m.hbits[B_WHERE, gfn] = RESIDENT
    m.hbits[B_EPT, gfn] = 1


# ------------------------------------------------------------------ swap device and slots


@core
def _latency(m):
    if not m.sw[S.SW_RANDOM_LATENCY]:
        return m.sw[S.SW_LATENCY]
    pos = m.sw[S.SW_LAT_POS]
    if pos >= m.sw[S.SW_LAT_LEN]:
        fail(m, S.ERR_CAPACITY, -3)
        return m.sw[S.SW_LATENCY]
    m.sw[S.SW_LAT_POS] = pos + 1
    return m.lat[pos]


@core
def swap_submit(m, t, npages, write):
    """``SwapDevice.submit``: the completion time of a request of ``npages`` pages."""
    qd = m.sw[S.SW_QD]
    start = max(t, minheap_pop(m.swq, qd))
    transfer = (npages * PAGE_SIZE * NS_PER_S) // max(1, m.sw[S.SW_BANDWIDTH])
    begin = max(start + _latency(m), m.sw[S.SW_CHANNEL_FREE])
    done = begin + transfer
    m.sw[S.SW_CHANNEL_FREE] = done
    minheap_push(m.swq, qd - 1, done)
    m.sw[S.SW_BUSY_UNTIL] = max(m.sw[S.SW_BUSY_UNTIL], done)
    if write:
        m.sw[S.SW_WRITES] += 1
        m.sw[S.SW_PAGES_WRITTEN] += npages
    else:
        m.sw[S.SW_READS] += 1
        m.sw[S.SW_PAGES_READ] += npages
    record(m.tr, m.trm, t, K_SWAP_IO, -1, -1, 0, npages, done, 1 if write else 0)
    return done


@core
def wrote_back(m, gfn):
    """The page has a fresh swap copy: the lowest free slot is reused first."""
    old = m.swap_slot1[gfn] - 1
    if old >= 0:
        m.slot_gfn[old] = -1
        m.hm[S.HM_NFREE_SLOTS] = minheap_push(m.free_slots, m.hm[S.HM_NFREE_SLOTS], old)
    if m.hm[S.HM_NFREE_SLOTS] > 0:
        slot = minheap_pop(m.free_slots, m.hm[S.HM_NFREE_SLOTS])
        m.hm[S.HM_NFREE_SLOTS] -= 1
    else:
        slot = m.hm[S.HM_NEXT_SLOT]
        m.hm[S.HM_NEXT_SLOT] = slot + 1
    m.slot_gfn[slot] = gfn
    m.swap_slot1[gfn] = slot + 1
    m.hbits[B_DIRTY, gfn] = 0
    m.hm[S.HM_SWAP_OUTS] += 1


@core
def write_back(m, evicted, n, count, t):
    """``Host._write_back``: dirty victims go to swap in one clustered write."""
    ndirty = 0
    for i in range(n):
        gfn = evicted[i]
        if m.hbits[B_DIRTY, gfn] or m.swap_slot1[gfn] == 0:
            ndirty += 1
    if ndirty == 0:
        return
    done = swap_submit(m, t, ndirty, True)
    for i in range(n):
        gfn = evicted[i]
        if m.hbits[B_DIRTY, gfn] or m.swap_slot1[gfn] == 0:
            m.hfree_at[evicted[count + i]] = done
            wrote_back(m, gfn)


# ------------------------------------------------------------------ swap-in


@core
def swapin_window(m, slot, max_pages):
    """``HostMemory.swapin_window`` (mm/swap_state.c ``__swapin_nr_pages``)."""
    hits = m.hm[S.HM_RA_HITS]
    m.hm[S.HM_RA_HITS] = 0
    pages = hits + 2
    if pages == 2:
        prev = m.hm[S.HM_PREV_OFFSET]
        if slot != prev + 1 and slot != prev - 1:
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    pages = min(pages, max_pages)
    pages = max(pages, m.hm[S.HM_PREV_WINDOW] // 2)
    m.hm[S.HM_PREV_WINDOW] = pages
    m.hm[S.HM_PREV_OFFSET] = slot
    return pages


@core
def start_swapin(m, gfn, frame):
    m.hframes[F_GFN, frame] = gfn
    m.hlinks[L_HFN, gfn] = frame
    m.hbits[B_WHERE, gfn] = INIO


@core
def swap_in(m, gfn, t, batch):
    """``Host._swap_in``: read ``gfn`` and its readahead cluster into ``batch`` (the gfns,
    from ``batch[1]``; ``batch[0]`` = count); returns the completion time."""
    frame = take_frame(m, t)
    start = max(t, m.hfree_at[frame])
    start_swapin(m, gfn, frame)
    batch[1] = gfn
    n = 1
    cluster = m.cf[S.CF_PAGE_CLUSTER]
    if cluster > 0:
        slot = m.swap_slot1[gfn] - 1
        window = swapin_window(m, slot, 1 << cluster)
        if window > 1:
            first = slot & ~(window - 1)
            for s in range(first, min(first + window, m.hm[S.HM_NEXT_SLOT])):
                other = m.slot_gfn[s]
                if not (other >= 0 and other != gfn and m.swap_slot1[other] == s + 1
                        and m.hbits[B_WHERE, other] == SWAPPED):
                    continue
                if m.hsmall[S_NFREE] == 0:
                    break
                extra = take_frame(m, t)
                start = max(start, m.hfree_at[extra])
                start_swapin(m, other, extra)
                n += 1
                batch[n] = other
    batch[0] = n
    m.hm[S.HM_READAHEAD] += n - 1
    return swap_submit(m, start, n, False)


@core
def finish_swapin(m, gfn, mapped):
    if m.hbits[B_WHERE, gfn] != INIO:
        fail(m, S.ERR_INVARIANT, gfn)
        return
    m.hbits[B_WHERE, gfn] = RESIDENT if mapped else SWAPCACHE
    m.hbits[B_EPT, gfn] = 1 if mapped else 0
    m.ra_flag[gfn] = not mapped
    m.hbits[B_DIRTY, gfn] = 0
    policy_inserted(m, gfn)
    m.hm[S.HM_SWAP_INS] += 1
