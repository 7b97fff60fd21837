"""Compiled guest reclaim: ``balance_pgdat``, ``do_try_to_free_pages`` and the LRU batch scans
of Linux 5.15 mm/vmscan.c over frame-indexed arrays (numba, ``cache=True``).

These kernels do, page for page, what the readable reference does (:mod:`pfsim.guest.shrink`,
:mod:`pfsim.guest.rmap`, and the kswapd and direct-reclaim loops of
:mod:`pfsim.guest.reclaim`); ``tests/test_reclaim_differential.py`` runs scenarios through
both and compares every counter and the final state.  The LRU lists are the reference's own
arrays (:class:`pfsim.guest.lru.LruLists`: per list a queue of (frame, stamp) entries oldest
first, and per frame its list and the stamp of its one valid entry), so both engines keep the
lists in the same order by construction.

One call does a whole kswapd pass (``kswapd_pass``) or one direct reclaim
(``direct_reclaim``): isolation (``isolate_lru_pages``, SWAP_CLUSTER_MAX pages at a time), the
reverse-map walk (the per-frame hint, or a pass over every live address space for pages mapped
more than once), the accessed-bit test and clear (``page_referenced``), swap-slot allocation
(``add_to_swap``), unmapping (``try_to_unmap``: swap entries or none), shadow entries
(``workingset_eviction``) and freeing.  What Python objects must do is logged, in the order the
reference does it, and replayed by the caller after the call (no simulated time passes inside
one): the TLB-shootdown interrupts of the address spaces unmapped (``R_RESYNC``), the write
requests per batch (``R_WRITE``: swap or file, with the frames the device reads, which the host
sees as DMA reads), and the file pages dropped from the page cache.  A broken invariant stops
the call with an error code (``E_*``) that the caller turns into an InvariantViolation.

``shrink_inactive_batch`` and ``shrink_active_batch`` run one batch each: with
``sim.check_invariants`` the reference's Python loops drive them so the invariants are checked
after every batch, as on the reference engine.

State travels as two tuples: ``a`` (:func:`state_arrays`: the frame, swap and LRU arrays) and
``mms`` (typed lists of each address space's ``gfn``, ``state`` and ``vflags`` arrays, indexed
by the reverse map's address-space number).  Scalars that Python keeps as attributes travel in
``s`` (``S_*``) and come back in it.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, types
from numba.typed import List

from pfsim.machine.frames import FREE, KERNEL, ZERO
from pfsim.machine.pte import PTE_ACCESSED, PTE_PRESENT, PTE_SWAP, VM_EXEC

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = 0, 1, 2, 3

# the scalars array ``s``
S_AGE = 0  # nonresident_age
S_ANON_COST = 1
S_FILE_COST = 2
S_SNAP_ANON = 3  # refault_snapshot
S_SNAP_FILE = 4
S_ACT_ANON = 5  # stats workingset_activate_anon now
S_ACT_FILE = 6
S_KSWAPD_FAILURES = 7
S_NEXT_STAMP = 8  # LruLists' next stamp
S_SWAP_NFREE = 9
S_SWAPPINESS = 10
S_WMARK_HIGH = 11
S_HAS_SWAP = 12
S_SWAP_NSLOTS = 13
S_NMMS = 14  # address spaces in ``mms``
NSCALARS = 15

# counters (the order of pfsim.guest.scan_control.COUNTERS)
C_PGSCAN_KSWAPD, C_PGSCAN_DIRECT, C_PGSTEAL_KSWAPD, C_PGSTEAL_DIRECT, C_PGREFILL = 0, 1, 2, 3, 4
C_PGACTIVATE, C_PGDEACTIVATE = 5, 6

# scan_control ``sc``
SC_KSWAPD = 0
SC_NR_TO_RECLAIM = 1
SC_PRIORITY = 2
SC_NR_SCANNED = 3
SC_NR_RECLAIMED = 4
SC_WORK = 5
SC_MAY_DEACT_ANON = 6
SC_MAY_DEACT_FILE = 7
SC_FORCE_DEACT = 8
SC_SKIPPED_DEACT = 9
SC_CACHE_TRIM = 10
SC_FILE_IS_TINY = 11
NSC = 12

# replay log rows: (kind, x, y, z)
R_RESYNC = 0  # x: address space unmapped from (its TLB shootdown)
R_WRITE = 1  # x: 1 file / 0 swap, y: first frame in the written-frames log, z: pages
R_DROP = 2  # x: file id, y: page (left the page cache), z: shadow age; w: workingset bit

# error codes (return value ``err[0]``; ``err[1]`` the frame)
E_OK = 0
E_ON_LRU = 1  # a frame added to an LRU list while on one
E_STILL_MAPPED = 2  # a reclaimed frame still has mappings
E_BAD_PUT = 3  # put on a free frame
E_REFCOUNT = 4  # more present PTEs map a frame than it has references

_jit = njit(cache=True, nogil=True)
_inline = njit(cache=True, nogil=True, inline="always")
"""For the helpers called per page: a call passes the state tuple by value and counts a
reference on each of its arrays, which would cost more than the helper's work."""


@_jit
def new_table_lists():
    """Empty typed lists for the address spaces' ``gfn``, ``state`` and ``vflags`` arrays
    (made and filled by cached compiled functions: typed lists built from Python would
    compile their methods at every start)."""
    return (List.empty_list(types.int64[::1]), List.empty_list(types.uint8[::1]),
            List.empty_list(types.uint8[::1]))


@_jit
def table_lists_append(lists, gfn, state, vflags):
    lists[0].append(gfn)
    lists[1].append(state)
    lists[2].append(vflags)


def new_scan_control(kswapd: bool, nr_to_reclaim: int) -> np.ndarray:
    sc = np.zeros(NSC, dtype=np.int64)
    sc[SC_KSWAPD] = kswapd
    sc[SC_NR_TO_RECLAIM] = nr_to_reclaim
    sc[SC_PRIORITY] = DEF_PRIORITY
    return sc


Log = namedtuple("Log", "rows frames n err")
"""What the kernels leave for Python: replay rows (kind, x, y, z, w), the frames written,
``n`` = (rows used, frames used), ``err`` = (error code, frame)."""


def new_log(rows: int, frames: int) -> Log:
    return Log(np.zeros((rows, 5), dtype=np.int64), np.zeros(frames, dtype=np.int64),
               np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64))


Arrays = namedtuple("Arrays", [
    "which1", "stamp", "nr", "qf", "qs", "qpos",  # LruLists (qf, qs: the four queues)
    "referenced", "workingset", "dirty", "file_id1", "file_page", "rmap_mm1", "rmap_slot",
    "pos1",  # Reclaim's per-frame arrays
    "refcount", "kind", "free_stack", "nfree",  # PhysMem
    "slot1", "cache", "count", "shadow", "shadow_ws", "free_slots",  # GuestSwap
    "rss_delta",  # per address space: PTEs unmapped (Python subtracts them from rss)
])
"""The arrays the kernels work on (the reference's own, not copies)."""


# ---------------------------------------------------------------------------- small helpers


@_inline
def _log_row(log_rows, n, kind, x, y, z, w):
    i = n[0]
    if i < log_rows.shape[0]:
        log_rows[i, 0] = kind
        log_rows[i, 1] = x
        log_rows[i, 2] = y
        log_rows[i, 3] = z
        log_rows[i, 4] = w
    n[0] = i + 1  # the caller sizes the log for the worst case


@_inline
def _compact(which1, stamp, frames, stamps, qpos, lru, tail):
    """Compact queue ``lru`` (``frames``, ``stamps``) in place, dropping stale entries;
    returns its new tail."""
    j = 0
    for i in range(qpos[lru, 0], tail):
        f = frames[i]
        if which1[f] == lru + 1 and stamp[f] == stamps[i]:
            frames[j] = f
            stamps[j] = stamps[i]
            j += 1
    qpos[lru, 0] = 0
    return j


@_inline
def _lru_add_one(a, s, frame, lru, err):
    """``LruLists.add`` of one frame at the head of ``lru``."""
    which1 = a.which1
    if which1[frame] != 0:
        err[0] = E_ON_LRU
        err[1] = frame
        return
    q = a.qpos
    frames = a.qf[lru]
    stamps = a.qs[lru]
    tail = q[lru, 1]
    if tail >= frames.shape[0]:
        tail = _compact(which1, a.stamp, frames, stamps, q, lru, tail)
    stamp = s[S_NEXT_STAMP]
    s[S_NEXT_STAMP] = stamp + 1
    which1[frame] = lru + 1
    a.stamp[frame] = stamp
    a.nr[lru] += 1
    frames[tail] = frame
    stamps[tail] = stamp
    q[lru, 1] = tail + 1


@_inline
def _isolate(a, lru, n, out):
    """``isolate_lru_pages``: up to ``n`` frames from the tail of ``lru`` into ``out``."""
    q = a.qpos
    frames = a.qf[lru]
    stamps = a.qs[lru]
    which1 = a.which1
    head = q[lru, 0]
    tail = q[lru, 1]
    got = 0
    while got < n and head < tail:
        f = frames[head]
        if which1[f] == lru + 1 and a.stamp[f] == stamps[head]:
            out[got] = f
            got += 1
        head += 1
    q[lru, 0] = head
    for i in range(got):
        which1[out[i]] = 0
    a.nr[lru] -= got
    return got


@_inline
def _put(a, frame, err):
    """``PhysMem.put`` with its ``on_free`` (reclaim's ``_freed``)."""
    kind = a.kind[frame]
    if kind == ZERO or kind == KERNEL:
        return
    if kind == FREE or a.refcount[frame] <= 0:
        err[0] = E_BAD_PUT
        err[1] = frame
        return
    a.refcount[frame] -= 1
    if a.refcount[frame] == 0:
        a.kind[frame] = FREE
        nfree = a.nfree
        stacked = nfree[0] - (a.kind.shape[0] - nfree[1])
        a.free_stack[stacked] = frame
        nfree[0] += 1
        if a.which1[frame] != 0:
            a.nr[a.which1[frame] - 1] -= 1
            a.which1[frame] = 0
        a.referenced[frame] = False
        a.workingset[frame] = False
        a.dirty[frame] = False
        a.file_id1[frame] = 0


@_inline
def _release_slot(a, s, slot):
    a.shadow[slot] = -1
    a.free_slots[s[S_SWAP_NFREE]] = slot
    s[S_SWAP_NFREE] += 1


@_inline
def _delete_from_cache(a, s, frame):
    """``GuestSwap.delete_from_cache``: returns the slot."""
    slot = a.slot1[frame] - 1
    a.cache[slot] = -1
    a.slot1[frame] = 0
    if a.count[slot] == 0:
        _release_slot(a, s, slot)
    return slot


# ---------------------------------------------------------------------------- reverse map


@_jit
def _rmap(a, s, mms, order, frames, nf, grp, err):
    """``Reclaim._rmap``: every present PTE mapping one of ``frames[:nf]``, as groups (one
    address space each, in the reference's order: hint owners ascending, then the live
    address spaces in process order); group g is entries [grp[g, 1], grp[g, 2]) of
    (``pte_of``, ``idx_of``), address space ``grp[g, 0]``.  Returns (groups, entries, mm_of,
    pte_of, idx_of): each mapping holds a frame reference, so the references of the frames
    bound the entries."""
    gfns, states, _vflags, alive = mms
    pos = a.pos1
    ng = 0
    ne = 0
    has_swap = s[S_HAS_SWAP] != 0
    rest = np.zeros(nf, dtype=np.bool_)
    single = np.zeros(nf, dtype=np.bool_)
    any_rest = False
    for i in range(nf):
        f = frames[i]
        cache_ref = a.file_id1[f] > 0
        if has_swap and a.slot1[f] > 0:
            cache_ref = True
        mapcount = a.refcount[f] - (1 if cache_ref else 0)
        if mapcount == 1:
            single[i] = True
        elif mapcount > 1:
            rest[i] = True
            any_rest = True
    most = nf
    for i in range(nf):
        if single[i] or rest[i]:
            most += a.refcount[frames[i]]
    mm_of = np.empty(most, dtype=np.int64)
    pte_of = np.empty(most, dtype=np.int64)
    idx_of = np.empty(most, dtype=np.int64)
    # the hint: owners in ascending order
    nmms = s[S_NMMS]
    for owner in range(nmms):
        start = ne
        hit_any = False
        for i in range(nf):
            if not single[i]:
                continue
            f = frames[i]
            if a.rmap_mm1[f] - 1 != owner:
                continue
            if not alive[owner]:
                continue
            slot = a.rmap_slot[f]
            g = gfns[owner]
            if slot < g.shape[0] and g[slot] == f and (states[owner][slot] & PTE_PRESENT) != 0:
                mm_of[ne] = owner
                pte_of[ne] = slot
                idx_of[ne] = i
                ne += 1
                single[i] = False  # resolved
                hit_any = True
        if hit_any:
            grp[ng, 0] = owner
            grp[ng, 1] = start
            grp[ng, 2] = ne
            ng += 1
    for i in range(nf):
        if single[i]:  # unresolved hint
            rest[i] = True
            any_rest = True
    if any_rest:
        for i in range(nf):
            if rest[i]:
                pos[frames[i]] = i + 1
        for k in range(order.shape[0]):
            m = order[k]
            g = gfns[m]
            st = states[m]
            start = ne
            for slot in range(g.shape[0]):
                f = g[slot]
                if f > 0 and pos[f] > 0 and (st[slot] & PTE_PRESENT) != 0:
                    if ne == most:  # more PTEs map the frame than it has references
                        err[0] = E_REFCOUNT
                        err[1] = f
                        for j in range(nf):
                            pos[frames[j]] = 0
                        return 0, 0, mm_of, pte_of, idx_of
                    mm_of[ne] = m
                    pte_of[ne] = slot
                    idx_of[ne] = pos[f] - 1
                    ne += 1
            if ne > start:
                grp[ng, 0] = m
                grp[ng, 1] = start
                grp[ng, 2] = ne
                ng += 1
        for i in range(nf):
            if rest[i]:
                pos[frames[i]] = 0
    return ng, ne, mm_of, pte_of, idx_of


@_inline
def _page_referenced(mms, nf, ne, mm_of, pte_of, idx_of, refs, vmexec):
    """``page_referenced``: accessed PTEs per frame (their bits cleared), and VM_EXEC."""
    _gfns, states, vflags, _alive = mms
    for i in range(nf):
        refs[i] = 0
        vmexec[i] = False
    for e in range(ne):
        m = mm_of[e]
        slot = pte_of[e]
        st = states[m]
        if (st[slot] & PTE_ACCESSED) != 0:
            i = idx_of[e]
            refs[i] += 1
            if (vflags[m][slot] & VM_EXEC) != 0:
                vmexec[i] = True
            st[slot] = st[slot] & np.uint8(~PTE_ACCESSED & 0xFF)


# ---------------------------------------------------------------------------- the batches


@_jit
def _buffers(a, mms, s):
    """Scratch for the batches of one call: the isolated frames, the reverse map's groups."""
    return (np.zeros(SWAP_CLUSTER_MAX, dtype=np.int64),
            np.zeros((2 * s[S_NMMS] + 2, 3), dtype=np.int64))


@_inline
def _note_cost(a, s, file, pages):
    """``lru_note_cost``."""
    if file:
        s[S_FILE_COST] += pages
    else:
        s[S_ANON_COST] += pages
    total = a.nr[0] + a.nr[1] + a.nr[2] + a.nr[3]
    if s[S_FILE_COST] + s[S_ANON_COST] > total // 4:
        s[S_FILE_COST] //= 2
        s[S_ANON_COST] //= 2


@_jit
def _shrink_active(a, s, mms, order, count, lru, sc, stats, log, buf):
    """``shrink_active_list``: deactivate all but referenced executable file pages."""
    frames, grp = buf
    err = log.err
    nf = _isolate(a, lru, count, frames)
    if nf == 0:
        return
    sc[SC_WORK] += nf
    stats[C_PGREFILL] += nf
    ng, ne, mm_of, pte_of, idx_of = _rmap(a, s, mms, order, frames, nf, grp, err)
    if err[0] != E_OK:
        return
    refs = np.zeros(nf, dtype=np.int64)
    vmexec = np.zeros(nf, dtype=np.bool_)
    _page_referenced(mms, nf, ne, mm_of, pte_of, idx_of, refs, vmexec)
    file = lru >= LRU_INACTIVE_FILE
    stay = np.zeros(nf, dtype=np.bool_)
    nstay = 0
    for i in range(nf):
        stay[i] = file and refs[i] > 0 and vmexec[i]
        if stay[i]:
            nstay += 1
        else:
            a.workingset[frames[i]] = True
    for i in range(nf):
        if stay[i]:
            _lru_add_one(a, s, frames[i], lru, err)
    s[S_AGE] += nstay  # move_pages_to_lru: activations age the nonresident clock
    for i in range(nf):
        if not stay[i]:
            _lru_add_one(a, s, frames[i], lru - 1, err)
    stats[C_PGDEACTIVATE] += nf - nstay


@_jit
def _shrink_inactive(a, s, mms, order, count, lru, sc, stats, log, buf):
    """``shrink_inactive_list`` → ``shrink_page_list``; returns the pages freed."""
    frames, grp = buf
    err = log.err
    nf = _isolate(a, lru, count, frames)
    if nf == 0:
        return 0
    kswapd = sc[SC_KSWAPD] != 0
    sc[SC_NR_SCANNED] += nf
    sc[SC_WORK] += nf
    stats[C_PGSCAN_KSWAPD if kswapd else C_PGSCAN_DIRECT] += nf
    file = lru >= LRU_INACTIVE_FILE
    has_swap = s[S_HAS_SWAP] != 0
    ng, ne, mm_of, pte_of, idx_of = _rmap(a, s, mms, order, frames, nf, grp, err)
    if err[0] != E_OK:
        return 0
    refs = np.zeros(nf, dtype=np.int64)
    vmexec = np.zeros(nf, dtype=np.bool_)
    _page_referenced(mms, nf, ne, mm_of, pte_of, idx_of, refs, vmexec)
    # page_check_references
    activate = np.zeros(nf, dtype=np.bool_)
    keep = np.zeros(nf, dtype=np.bool_)
    reclaim = np.zeros(nf, dtype=np.bool_)
    for i in range(nf):
        f = frames[i]
        was = a.referenced[f]  # TestClearPageReferenced
        used = refs[i] > 0
        a.referenced[f] = used  # SetPageReferenced when used
        activate[i] = used and (was or refs[i] > 1 or (vmexec[i] and file))
        keep[i] = used and not activate[i]
        reclaim[i] = not used
        if file and reclaim[i] and was and a.dirty[f]:  # PAGEREF_RECLAIM_CLEAN
            keep[i] = True
            reclaim[i] = False
    slots = np.full(nf, -1, dtype=np.int64)
    written = np.zeros(nf, dtype=np.bool_)
    if not file:
        for i in range(nf):
            if not reclaim[i]:
                continue
            f = frames[i]
            slot = a.slot1[f] - 1 if has_swap else -1
            if slot < 0:  # add_to_swap
                slot = -1
                if has_swap and s[S_SWAP_NFREE] > 0:
                    s[S_SWAP_NFREE] -= 1
                    slot = a.free_slots[s[S_SWAP_NFREE]]
                if slot < 0:  # no swap space: activate_locked
                    reclaim[i] = False
                    activate[i] = True
                    continue
                a.cache[slot] = f
                a.slot1[f] = slot + 1
                a.refcount[f] += 1
                written[i] = True
            slots[i] = slot
    else:
        for i in range(nf):
            written[i] = reclaim[i] and a.dirty[frames[i]]
    # try_to_unmap through the reverse map, one address space (group) at a time
    gfns, states, _vflags, _alive = mms
    for gi in range(ng):
        m = grp[gi, 0]
        took = 0
        for e in range(grp[gi, 1], grp[gi, 2]):
            i = idx_of[e]
            if not reclaim[i]:
                continue
            slot = pte_of[e]
            if file:
                states[m][slot] = 0
                gfns[m][slot] = -1
            else:
                states[m][slot] = PTE_SWAP
                gfns[m][slot] = -2 - slots[i]
                a.count[slots[i]] += 1
            a.refcount[frames[i]] -= 1
            took += 1
        if took:
            a.rss_delta[m] -= took
            _log_row(log.rows, log.n, R_RESYNC, m, 0, 0, 0)
    # pageout: one write request per batch (replayed by the caller)
    nwritten = 0
    for i in range(nf):
        if written[i]:
            nwritten += 1
    if nwritten:
        first = log.n[1]
        for i in range(nf):
            if written[i]:
                if log.n[1] < log.frames.shape[0]:
                    log.frames[log.n[1]] = frames[i]
                log.n[1] += 1
                a.dirty[frames[i]] = False
        _log_row(log.rows, log.n, R_WRITE, 1 if file else 0, first, nwritten, 0)
    # __remove_mapping: shadow entries, then the frames are freed
    nreclaimed = 0
    for i in range(nf):
        if not reclaim[i]:
            continue
        f = frames[i]
        if a.refcount[f] != 1:
            err[0] = E_STILL_MAPPED
            err[1] = f
            return nreclaimed
        age = s[S_AGE]
        s[S_AGE] = age + 1  # workingset_eviction: workingset_age_nonresident
        if file:
            _log_row(log.rows, log.n, R_DROP, a.file_id1[f] - 1, a.file_page[f], age,
                     1 if a.workingset[f] else 0)
        else:
            slot = _delete_from_cache(a, s, f)
            a.shadow[slot] = age
            a.shadow_ws[slot] = a.workingset[f]
        _put(a, f, err)
        nreclaimed += 1
    # putback; an activated page in the swap cache gives its slot up when swap is over half
    # full (try_to_free_swap; a page on an LRU list is never being read in)
    if not file and has_swap and s[S_SWAP_NFREE] * 2 < s[S_SWAP_NSLOTS]:
        for i in range(nf):
            if activate[i]:
                f = frames[i]
                slot = a.slot1[f] - 1
                if slot >= 0 and a.count[slot] == 0:
                    _delete_from_cache(a, s, f)
                    _put(a, f, err)
    nact = 0
    for i in range(nf):
        if activate[i]:
            _lru_add_one(a, s, frames[i], lru + 1, err)
            nact += 1
    stats[C_PGACTIVATE] += nact
    s[S_AGE] += nact
    for i in range(nf):
        if keep[i] and not activate[i]:
            _lru_add_one(a, s, frames[i], lru, err)
    stats[C_PGSTEAL_KSWAPD if kswapd else C_PGSTEAL_DIRECT] += nreclaimed
    _note_cost(a, s, file, nwritten)
    return nreclaimed


# ---------------------------------------------------------------------------- shrink_node


@_inline
def _isqrt(n):
    r = np.int64(np.sqrt(np.float64(n)))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@_inline
def _inactive_is_low(a, inactive_lru):
    inactive = a.nr[inactive_lru]
    active = a.nr[inactive_lru + 1]
    gb = (inactive + active) >> 18
    ratio = _isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


@_jit
def _get_scan_count(a, s, sc, scan):
    """``get_scan_count``."""
    swappiness = s[S_SWAPPINESS]
    may_swap = s[S_HAS_SWAP] != 0 and s[S_SWAP_NFREE] > 0
    priority = sc[SC_PRIORITY]
    balance = 3  # 0 file, 1 anon, 2 equal, 3 fract
    ap = 0
    fp = 0
    denominator = 1
    if not may_swap:
        balance = 0
    elif priority == 0 and swappiness:
        balance = 2
    elif sc[SC_FILE_IS_TINY]:
        balance = 1
    elif sc[SC_CACHE_TRIM]:
        balance = 0
    else:
        total_cost = s[S_ANON_COST] + s[S_FILE_COST]
        anon_cost = total_cost + s[S_ANON_COST]
        file_cost = total_cost + s[S_FILE_COST]
        total_cost = anon_cost + file_cost
        ap = swappiness * (total_cost + 1) // (anon_cost + 1)
        fp = (200 - swappiness) * (total_cost + 1) // (file_cost + 1)
        denominator = ap + fp
    for lru in range(4):
        scan[lru] = a.nr[lru] >> priority
    if balance == 3:
        for lru in range(4):
            frac = fp if lru >= LRU_INACTIVE_FILE else ap
            scan[lru] = scan[lru] * frac // denominator if denominator else 0
    elif balance == 0:
        scan[LRU_INACTIVE_ANON] = 0
        scan[LRU_ACTIVE_ANON] = 0
    elif balance == 1:
        scan[LRU_INACTIVE_FILE] = 0
        scan[LRU_ACTIVE_FILE] = 0


@_jit
def _shrink_list(a, s, mms, order, lru, count, sc, stats, log, buf):
    if lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:
        may = sc[SC_MAY_DEACT_FILE] if lru == LRU_ACTIVE_FILE else sc[SC_MAY_DEACT_ANON]
        if may:
            _shrink_active(a, s, mms, order, count, lru, sc, stats, log, buf)
        else:
            sc[SC_SKIPPED_DEACT] = 1
        return 0
    return _shrink_inactive(a, s, mms, order, count, lru, sc, stats, log, buf)


@_jit
def _shrink_lruvec(a, s, mms, order, sc, stats, log, buf):
    """``shrink_lruvec``."""
    nr = np.zeros(4, dtype=np.int64)
    _get_scan_count(a, s, sc, nr)
    targets = nr.copy()
    nr_to_reclaim = sc[SC_NR_TO_RECLAIM]
    nr_reclaimed = 0
    scan_adjusted = sc[SC_KSWAPD] == 0 and sc[SC_PRIORITY] == DEF_PRIORITY
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in range(4):
            if nr[lru]:
                count = min(nr[lru], SWAP_CLUSTER_MAX)
                nr[lru] -= count
                nr_reclaimed += _shrink_list(a, s, mms, order, lru, count, sc, stats, log, buf)
                if log.err[0] != E_OK:
                    return
        if nr_reclaimed < nr_to_reclaim or scan_adjusted:
            continue
        nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
        nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
        if not nr_file or not nr_anon:
            break
        if nr_file > nr_anon:
            scan_target = targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1
            small = LRU_INACTIVE_ANON
            percentage = nr_anon * 100 // scan_target
        else:
            scan_target = targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1
            small = LRU_INACTIVE_FILE
            percentage = nr_file * 100 // scan_target
        nr[small] = 0
        nr[small + 1] = 0
        big = LRU_INACTIVE_FILE if small == LRU_INACTIVE_ANON else LRU_INACTIVE_ANON
        for lru in (big, big + 1):
            scanned = targets[lru] - nr[lru]
            nr[lru] = targets[lru] * (100 - percentage) // 100
            nr[lru] -= min(nr[lru], scanned)
        scan_adjusted = True
    sc[SC_NR_RECLAIMED] += nr_reclaimed
    if s[S_HAS_SWAP] and _inactive_is_low(a, LRU_INACTIVE_ANON):
        _shrink_active(a, s, mms, order, SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc, stats, log, buf)


@_jit
def _shrink_node(a, s, mms, order, sc, stats, log, buf):
    """``shrink_node``."""
    if sc[SC_FORCE_DEACT]:
        sc[SC_MAY_DEACT_ANON] = 1
        sc[SC_MAY_DEACT_FILE] = 1
    else:
        sc[SC_MAY_DEACT_ANON] = int(s[S_ACT_ANON] != s[S_SNAP_ANON]
                                    or _inactive_is_low(a, LRU_INACTIVE_ANON))
        sc[SC_MAY_DEACT_FILE] = int(s[S_ACT_FILE] != s[S_SNAP_FILE]
                                    or _inactive_is_low(a, LRU_INACTIVE_FILE))
    sc[SC_CACHE_TRIM] = int((a.nr[LRU_INACTIVE_FILE] >> sc[SC_PRIORITY]) != 0
                            and not sc[SC_MAY_DEACT_FILE])
    free = a.nfree[0]
    file = a.nr[LRU_ACTIVE_FILE] + a.nr[LRU_INACTIVE_FILE]
    anon = a.nr[LRU_INACTIVE_ANON]
    sc[SC_FILE_IS_TINY] = int(file + free <= s[S_WMARK_HIGH] and not sc[SC_MAY_DEACT_ANON]
                              and (anon >> sc[SC_PRIORITY]) != 0)
    before = sc[SC_NR_RECLAIMED]
    _shrink_lruvec(a, s, mms, order, sc, stats, log, buf)
    if sc[SC_NR_RECLAIMED] > before:
        s[S_KSWAPD_FAILURES] = 0


# ---------------------------------------------------------------------------- entry points


@_jit
def kswapd_pass(a, s, mms, order, stats, log):
    """One ``balance_pgdat`` pass (``Reclaim._balance_pgdat``): returns (pages freed, pages
    of work)."""
    buf = _buffers(a, mms, s)
    priority = DEF_PRIORITY
    reclaimed = 0
    work = 0
    nr_to_reclaim = max(s[S_WMARK_HIGH], SWAP_CLUSTER_MAX)
    while a.nfree[0] <= s[S_WMARK_HIGH] and priority >= 1:
        sc = np.zeros(NSC, dtype=np.int64)
        sc[SC_KSWAPD] = 1
        sc[SC_NR_TO_RECLAIM] = nr_to_reclaim
        sc[SC_PRIORITY] = priority
        if s[S_HAS_SWAP] and _inactive_is_low(a, LRU_INACTIVE_ANON):  # age_active_anon
            _shrink_active(a, s, mms, order, SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc, stats,
                           log, buf)
        _shrink_node(a, s, mms, order, sc, stats, log, buf)
        if log.err[0] != E_OK:
            break
        reclaimed += sc[SC_NR_RECLAIMED]
        work += sc[SC_WORK]
        if sc[SC_NR_SCANNED] >= sc[SC_NR_TO_RECLAIM] or sc[SC_NR_RECLAIMED] == 0:
            priority -= 1
    return reclaimed, work


@_jit
def direct_reclaim(a, s, mms, order, stats, log):
    """``do_try_to_free_pages`` (``Reclaim.try_to_free_pages`` without its bookkeeping):
    returns (pages freed, pages of work)."""
    buf = _buffers(a, mms, s)
    sc = np.zeros(NSC, dtype=np.int64)
    sc[SC_NR_TO_RECLAIM] = SWAP_CLUSTER_MAX
    while True:
        for priority in range(DEF_PRIORITY, -1, -1):
            sc[SC_PRIORITY] = priority
            sc[SC_NR_SCANNED] = 0
            _shrink_node(a, s, mms, order, sc, stats, log, buf)
            if log.err[0] != E_OK:
                return sc[SC_NR_RECLAIMED], sc[SC_WORK]
            if sc[SC_NR_RECLAIMED] >= sc[SC_NR_TO_RECLAIM]:
                break
        if sc[SC_NR_RECLAIMED] or not sc[SC_SKIPPED_DEACT] or sc[SC_FORCE_DEACT]:
            break
        sc[SC_FORCE_DEACT] = 1
        sc[SC_SKIPPED_DEACT] = 0
    return sc[SC_NR_RECLAIMED], sc[SC_WORK]


@_jit
def shrink_inactive_batch(a, s, mms, order, count, lru, sc, stats, log):
    """One ``shrink_inactive_list`` batch (Python drives the loops): pages freed."""
    return _shrink_inactive(a, s, mms, order, count, lru, sc, stats, log, _buffers(a, mms, s))


@_jit
def shrink_active_batch(a, s, mms, order, count, lru, sc, stats, log):
    """One ``shrink_active_list`` batch (Python drives the loops)."""
    _shrink_active(a, s, mms, order, count, lru, sc, stats, log, _buffers(a, mms, s))


# ---------------------------------------------------------------------------- swap-in

C_REFAULT_ANON, C_ACTIVATE_ANON, C_RESTORE_ANON = 9, 11, 13


@_jit
def swapin_done(a, s, slots, frames, stats, log):
    """A swap read completed (``Reclaim._swapin_done`` without a host, its waiters left to
    the caller): per page, freed if every PTE holding its slot went away meanwhile, else
    ``workingset_refault`` on the slot's shadow entry and onto the anon LRU."""
    err = log.err
    for k in range(slots.shape[0]):
        slot = slots[k]
        f = frames[k]
        if a.count[slot] == 0 and a.refcount[f] == 1:
            _delete_from_cache(a, s, f)
            _put(a, f, err)
            continue
        lru = LRU_INACTIVE_ANON
        eviction = a.shadow[slot]
        if eviction >= 0:
            stats[C_REFAULT_ANON] += 1
            distance = s[S_AGE] - eviction
            size = a.nr[LRU_ACTIVE_FILE] + a.nr[LRU_INACTIVE_FILE]
            if s[S_HAS_SWAP] and s[S_SWAP_NFREE] > 0:
                size += a.nr[LRU_ACTIVE_ANON]
            if distance <= size:
                s[S_AGE] += 1
                stats[C_ACTIVATE_ANON] += 1
                if a.shadow_ws[slot]:
                    a.workingset[f] = True
                    _note_cost(a, s, False, 1)  # lru_note_cost_page
                    stats[C_RESTORE_ANON] += 1
                lru = LRU_ACTIVE_ANON
            a.shadow[slot] = -1
        _lru_add_one(a, s, f, lru, err)


@_jit
def scan_added(a, s, slots, gfn, popped, mm1, err):
    """After a run of the compiled access loop (``Reclaim.after_scan``): the frames it
    allocated, ``popped`` in order, are noted in the reverse map at the slot of ``slots`` that
    now maps each (``page_add_new_anon_rmap``, address space ``mm1 - 1``) and added, in that
    order, at the head of the inactive anon list (``lru_cache_add_inactive_or_unevictable``)."""
    pos1 = a.pos1
    for i in range(popped.shape[0]):
        pos1[popped[i]] = i + 1
    for j in range(slots.shape[0]):
        slot = slots[j]
        g = gfn[slot]
        if g > 0 and pos1[g] > 0:
            a.rmap_mm1[g] = mm1
            a.rmap_slot[g] = slot
    for i in range(popped.shape[0]):
        pos1[popped[i]] = 0
    _lru_add_run(a.which1, a.stamp, a.nr, a.qf[LRU_INACTIVE_ANON], a.qs[LRU_INACTIVE_ANON],
                 a.qpos, s, popped, LRU_INACTIVE_ANON, err)


@_jit
def _lru_add_run(which1, stamp, nr, frames, stamps, qpos, s, popped, lru, err):
    """``_lru_add_one`` of each of ``popped`` in order, the arrays passed one by one."""
    tail = qpos[lru, 1]
    next_stamp = s[S_NEXT_STAMP]
    for i in range(popped.shape[0]):
        frame = popped[i]
        if which1[frame] != 0:
            err[0] = E_ON_LRU
            err[1] = frame
            break
        if tail >= frames.shape[0]:
            tail = _compact(which1, stamp, frames, stamps, qpos, lru, tail)
        which1[frame] = lru + 1
        stamp[frame] = next_stamp
        nr[lru] += 1
        frames[tail] = frame
        stamps[tail] = next_stamp
        tail += 1
        next_stamp += 1
    qpos[lru, 1] = tail
    s[S_NEXT_STAMP] = next_stamp
