"""Compiled per-access loop: the simulator's hot path, over the guest's and the host's tables.

It sits in the machine layer because it touches both sides of the VM at every access: the
guest executor runs it, the host's resident reclaim policies choose its per-access bookkeeping
(``TOUCH_*``, ``INSERT_*``) and share its list primitives, and the compiled core calls it.

:func:`run_accesses` runs a task's pre-translated access stream against the page table
(flat ``uint8`` PTE bits per slot) and resolves the common faults in place, exactly as the
Python fault path would (:mod:`pfsim.guest.fault` is the reference):

* first read of anonymous memory → the shared zero page (``zero_page`` cost, minor fault);
* first write, or write after the zero page → a new zeroed frame (``anon_page``, minor);
* write to a write-protected private anonymous page we own alone → reuse (``cow_reuse``,
  minor, ``cow_reuses`` + 1).

Anything else (file pages, access errors, shared pages to copy, no free frame, fetches,
outside every VMA) stops the loop at that access and returns to Python.  Every fault costs
``entry`` plus its handler; the access then completes (``think``).

With a host (``host`` true) every access also needs its frame mapped in the EPT.  A frame the
host has never backed is backed here (an EPT violation with a host first-touch fault: the
vCPU stalls ``first_touch`` ns, or until the host frame's writeback ends); any other unmapped
gfn stops the loop with STOP_EPT for the Python host.  Each access updates the host's dirty
bit and the reclaim policy's bookkeeping (CLOCK's referenced bit, LRU's move-to-front).

Every completed access sets the PTE's accessed bit (``PTE_ACCESSED``, as the x86 MMU sets
_PAGE_ACCESSED); the guest's page reclaim reads and clears it (:mod:`pfsim.guest.reclaim`).

Accesses that cost more than ``think`` (a fault, a host stall) are logged (index, completion
time) so a segment cut short by an interrupt can tell how many accesses were done by a time;
the log also holds what the trace needs of each (:func:`pfsim.machine.trace_records.
record_fault_log`): when it began, when its handling ended, its ``FF_*`` class, its frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.machine.frames import ANON, ZERO_GFN
from pfsim.machine.latency import MINOR
from pfsim.machine.latency import record as record_latency
from pfsim.machine.hostmem_layout import (
    B_DIRTY,
    B_EPT,
    B_REF,
    B_WHERE,
    F_FREE,
    F_GFN,
    F_RING,
    L_HFN,
    L_LRU_NEXT,
    L_LRU_PREV,
    NEVER,
    RESIDENT,
    S_FIRST_TOUCH,
    S_INSERT,
    S_LRU_HEAD,
    S_GFN_HWM,
    S_HWM,
    S_NFREE,
    S_NSTACK,
    S_RING_HEAD,
    S_TOUCH,
)
from pfsim.machine.pte import (
    PTE_ACCESSED,
    PTE_EXEC,
    PTE_PRESENT,
    PTE_WRITE,
    PTE_ZERO,
    VM_ANON,
    VM_EXEC,
    VM_WRITE,
)

# NOTE: every compiled function the loop calls lives in this file: numba's on-disk cache
# (cache=True) is invalidated by changes to the caller's own source file only, so a callee
# kept elsewhere could silently stay stale in the cached machine code.

# per-access host bookkeeping (hsmall[S_TOUCH]) and frame-insertion rule (hsmall[S_INSERT])
TOUCH_NONE, TOUCH_CLOCK, TOUCH_LRU = 0, 1, 2
INSERT_NONE, INSERT_LRU, INSERT_FIFO = 0, 1, 2

@njit(cache=True, nogil=True)
def lru_move_to_front(prev: np.ndarray, nxt: np.ndarray, ends: np.ndarray, gfn: int) -> None:
    """Move ``gfn`` to the head if it is on the list (pinned pages are not); ``ends`` =
    [head, tail]."""
    head = ends[0]
    if head == gfn:
        return
    before = prev[gfn]
    if before == -1:  # not on the list: only the head has no predecessor
        return
    after = nxt[gfn]
    if before != -1:
        nxt[before] = after
    if after != -1:
        prev[after] = before
    else:
        ends[1] = before
    prev[gfn] = -1
    nxt[gfn] = head
    if head != -1:
        prev[head] = gfn
    ends[0] = gfn
    if ends[1] == -1:
        ends[1] = gfn


@njit(cache=True, nogil=True)
def lru_push_front(prev: np.ndarray, nxt: np.ndarray, ends: np.ndarray, gfn: int) -> None:
    """Put ``gfn`` (not on the list) at the head."""
    head = ends[0]
    prev[gfn] = -1
    nxt[gfn] = head
    if head != -1:
        prev[head] = gfn
    ends[0] = gfn
    if ends[1] == -1:
        ends[1] = gfn


@njit(cache=True, nogil=True)
def ring_push(ring: np.ndarray, small: np.ndarray, head_at: int, gfn: int) -> None:
    """Append ``gfn`` to the FIFO ring whose head and size are ``small[head_at:head_at+2]``."""
    cap = ring.shape[0]
    ring[(small[head_at] + small[head_at + 1]) % cap] = gfn
    small[head_at + 1] += 1


# indices of the int64 ``costs`` array
COST_ENTRY, COST_ZERO_PAGE, COST_ANON_PAGE, COST_COW_REUSE = 0, 1, 2, 3
# indices of the int64 ``out`` array
OUT_TIME, OUT_MIN_FLT, OUT_COW_REUSES, OUT_ALLOCATED, OUT_RSS, OUT_NLOG = 0, 1, 2, 3, 4, 5
OUT_REASON, OUT_GFN, OUT_EPT, OUT_STALL = 6, 7, 8, 9
OUT_SIZE = 10
# the fault log's rows (``log[LOG_*, k]``: the k-th access that cost more than its think)
LOG_INDEX, LOG_DONE, LOG_BEGIN, LOG_HANDLED, LOG_CLASS, LOG_GFN = range(6)
LOG_ROWS = 6
# LOG_CLASS: the guest fault resolved (FF_ZERO_PAGE, FF_ANON_PAGE, FF_COW_REUSE or 0 for none),
# plus FF_HOST_TOUCH when the host backed the frame on its first touch (an EPT violation)
FF_ZERO_PAGE, FF_ANON_PAGE, FF_COW_REUSE, FF_GUEST, FF_HOST_TOUCH = 1, 2, 3, 3, 4
# why the loop stopped (OUT_REASON)
STOP_LIMIT, STOP_FAULT, STOP_EPT = 0, 1, 2


@njit(cache=True, nogil=True)
def host_first_touch(g: int, t: int, hbits: np.ndarray, hlinks: np.ndarray, hframes: np.ndarray,
                     hfree_at: np.ndarray, hsmall: np.ndarray) -> int:
    """Back never-touched ``g`` with a free host frame; the vCPU's stall (ns), or -1 when no
    frame is free (the Python host must reclaim)."""
    n = hsmall[S_NFREE]
    if n == 0:
        return -1
    hsmall[S_NFREE] = n - 1
    stacked = hsmall[S_NSTACK]
    if stacked > 0:  # the last frame freed, else the lowest never used (HostMemory._pop_free)
        frame = hframes[F_FREE, stacked - 1]
        hsmall[S_NSTACK] = stacked - 1
    else:
        frame = hsmall[S_HWM]
        hsmall[S_HWM] = frame + 1
    if g >= hsmall[S_GFN_HWM]:
        hsmall[S_GFN_HWM] = g + 1
    hframes[F_GFN, frame] = g
    hlinks[L_HFN, g] = frame
    hbits[B_WHERE, g] = RESIDENT
    hbits[B_EPT, g] = 1
    hbits[B_DIRTY, g] = 1
    hbits[B_REF, g] = 0
    insert = hsmall[S_INSERT]
    if insert == INSERT_LRU:
        lru_push_front(hlinks[L_LRU_PREV], hlinks[L_LRU_NEXT], hsmall[S_LRU_HEAD:S_LRU_HEAD + 2], g)
    elif insert == INSERT_FIFO:
        ring_push(hframes[F_RING], hsmall, S_RING_HEAD, g)
    cost = hsmall[S_FIRST_TOUCH]
    ready = hfree_at[frame]
    return cost if ready <= t + cost else ready - t


@njit(cache=True, nogil=True)
def _touch(g: int, store: bool, hbits: np.ndarray, hlinks: np.ndarray, hsmall: np.ndarray) -> None:
    """The host-side bookkeeping of one access to ``g``."""
    if store:
        hbits[B_DIRTY, g] = 1
    touch = hsmall[S_TOUCH]
    if touch == TOUCH_CLOCK:
        hbits[B_REF, g] = 1
    elif touch == TOUCH_LRU:
        lru_move_to_front(hlinks[L_LRU_PREV], hlinks[L_LRU_NEXT], hsmall[S_LRU_HEAD:S_LRU_HEAD + 2], g)


@njit(cache=True, nogil=True)
def _backed(g: int, t: int, out: np.ndarray, hbits: np.ndarray, hlinks: np.ndarray,
            hframes: np.ndarray, hfree_at: np.ndarray, hsmall: np.ndarray) -> int:
    """Stall needed before gfn ``g`` can be used (0 if mapped), or -1: Python must handle it."""
    if hbits[B_EPT, g]:
        return 0
    if hbits[B_WHERE, g] != NEVER:
        return -1
    stall = host_first_touch(g, t, hbits, hlinks, hframes, hfree_at, hsmall)
    if stall >= 0:
        out[OUT_EPT] += 1
        out[OUT_STALL] += stall
    return stall


@njit(cache=True, nogil=True)
def run_accesses(slots: np.ndarray, writes: np.ndarray, start: int, stop: int, t0: int,
                 think: int, spent0: int, t_limit: int, state: np.ndarray, gfn: np.ndarray,
                 vflags: np.ndarray, refcount: np.ndarray, kind: np.ndarray,
                 free_stack: np.ndarray, nfree: np.ndarray, costs: np.ndarray,
                 zero_page: bool, fast: bool, fetch: bool, out: np.ndarray, log: np.ndarray,
                 host: bool, hbits: np.ndarray, hlinks: np.ndarray, hframes: np.ndarray,
                 hfree_at: np.ndarray, hsmall: np.ndarray, hist: np.ndarray) -> int:
    """Run accesses ``[start, stop)`` from time ``t0`` until one needs Python.

    Args:
        slots, writes: the stream (slot per access, -1 outside every VMA; store flags).
        think: CPU time of one access (ns); ``t_limit``: no access starts that would end later.
        spent0: ns of access ``start``'s think already run in earlier slices (a think longer
            than what is left of a slice is carried, as a compute unit is); the access makes
            its memory reference when the part that completes it runs.
        state, gfn, vflags: the address space's PTE bits, frames and VMA flags per slot.
        refcount, kind, free_stack, nfree: guest frames (``nfree``: [free frames, watermark],
            :class:`~pfsim.guest.memory.PhysMem`).
        costs: fault costs (ns) indexed by COST_*; ``zero_page``: map the zero page on reads.
        fast: resolve the common faults here (off: every fault returns to Python).
        fetch: instruction fetches (never resolved here).
        out: receives OUT_* (end time, counts, stop reason); ``log``: [LOG_ROWS, n] fault log
            (``LOG_*`` rows: the index, completion time, begin, end of handling, class and
            frame of each access that cost more than its think).
        host, hbits, hlinks, hframes, hfree_at, hsmall: the host's packed arrays
            (:mod:`pfsim.machine.hostmem_layout`).
        hist: latency histograms (:mod:`pfsim.machine.latency`): each minor fault resolved
            here adds its time (entry, handling, the host's first touch of a new frame).

    Returns:
        index of the first access left undone; ``out[OUT_REASON]`` says why.
    """
    t = t0
    nlog = 0
    cap = log.shape[1]
    base = PTE_PRESENT | (PTE_EXEC if fetch else 0)
    entry = costs[COST_ENTRY]
    reason = STOP_LIMIT
    i = start
    th = think - spent0  # this access's think still to run
    while i < stop:
        if t + th > t_limit:
            break
        slot = slots[i]
        if slot < 0:
            reason = STOP_FAULT
            break
        store = writes[i]
        need = base | (PTE_WRITE if store else 0)
        pte = state[slot]
        extra = 0
        cls = 0
        begin = t
        if (pte & need) == need:
            if (pte & PTE_ACCESSED) == 0:  # the MMU sets the accessed bit (reclaim clears it)
                state[slot] = pte | PTE_ACCESSED
            if host:
                g = gfn[slot]
                if hbits[B_EPT, g] == 0:
                    if nlog >= cap:
                        reason = STOP_EPT
                        out[OUT_GFN] = g
                        break
                    extra = _backed(g, t, out, hbits, hlinks, hframes, hfree_at, hsmall)
                    if extra < 0:
                        reason = STOP_EPT
                        out[OUT_GFN] = g
                        break
                    cls = FF_HOST_TOUCH
                _touch(g, store, hbits, hlinks, hsmall)
            if extra == 0:
                t += th
                th = think
                i += 1
                continue
        else:
            reason = STOP_FAULT
            if not fast or fetch or nlog >= cap:
                break
            vf = vflags[slot]
            if (vf & VM_ANON) == 0:
                break
            if store and (vf & VM_WRITE) == 0:
                break
            exec_bit = PTE_EXEC if (vf & VM_EXEC) else 0
            full = PTE_PRESENT | PTE_WRITE | exec_bit
            if (pte & PTE_PRESENT) == 0 and pte != 0:  # outside the VMA (stack room)
                break
            if (pte & PTE_PRESENT) == 0 and not store and zero_page:
                state[slot] = PTE_PRESENT | PTE_ZERO | exec_bit
                gfn[slot] = ZERO_GFN
                extra = entry + costs[COST_ZERO_PAGE]
                cls = FF_ZERO_PAGE
            elif (pte & PTE_PRESENT) == 0 or (pte & PTE_ZERO):
                n = nfree[0]
                if n == 0:
                    break
                stacked = n - (kind.shape[0] - nfree[1])  # PhysMem.alloc: freed frames first
                frame = free_stack[stacked - 1] if stacked > 0 else nfree[1]
                stall = 0
                cls = FF_ANON_PAGE
                if host:
                    if hbits[B_EPT, frame] == 0:
                        cls = FF_ANON_PAGE | FF_HOST_TOUCH
                    stall = _backed(frame, t, out, hbits, hlinks, hframes, hfree_at, hsmall)
                    if stall < 0:
                        break
                nfree[0] = n - 1
                if stacked <= 0:
                    nfree[1] = frame + 1
                kind[frame] = ANON
                refcount[frame] = 1
                gfn[slot] = frame
                if (pte & PTE_PRESENT) == 0 and (vf & VM_WRITE) == 0:
                    state[slot] = PTE_PRESENT | exec_bit
                else:
                    state[slot] = full
                out[OUT_ALLOCATED] += 1
                out[OUT_RSS] += 1
                extra = stall + entry + costs[COST_ANON_PAGE]
            else:
                frame = gfn[slot]
                if kind[frame] != ANON or refcount[frame] != 1:
                    break
                if host and hbits[B_EPT, frame] == 0:
                    break
                state[slot] = full
                out[OUT_COW_REUSES] += 1
                extra = entry + costs[COST_COW_REUSE]
                cls = FF_COW_REUSE
            out[OUT_MIN_FLT] += 1
            record_latency(hist, MINOR, extra)
            state[slot] |= PTE_ACCESSED  # the re-executed access
            reason = STOP_LIMIT
            if host:  # the re-executed access touches the page
                _touch(gfn[slot], store, hbits, hlinks, hsmall)
        t += extra + th
        th = think
        log[LOG_INDEX, nlog] = i
        log[LOG_DONE, nlog] = t
        log[LOG_BEGIN, nlog] = begin
        log[LOG_HANDLED, nlog] = begin + extra
        log[LOG_CLASS, nlog] = cls
        log[LOG_GFN, nlog] = gfn[slot]
        nlog += 1
        i += 1
    out[OUT_TIME] = t
    out[OUT_NLOG] = nlog
    out[OUT_REASON] = reason if i < stop else STOP_LIMIT
    return i


@njit(cache=True, nogil=True)
def done_by(now: int, t0: int, think: int, spent0: int, pos0: int, end: int, log: np.ndarray,
            nlog: int) -> tuple[int, int]:
    """Accesses of a segment (from ``pos0`` at ``t0``, its first access ``spent0`` ns into its
    think, stopping at ``end``) completed by ``now``, and the ns the next one has run when it
    is a plain access (its think is carried; a logged one, a fault, restarts)."""
    base_i = pos0
    base_t = t0 - spent0  # when the first access would have started, had it run in one go
    next_slow = end
    for k in range(nlog):
        if log[1, k] <= now:
            base_i = log[0, k] + 1
            base_t = log[1, k]
        else:
            next_slow = log[0, k]
            break
    more = (now - base_t) // think if now > base_t else 0
    if base_i + more >= next_slow:
        return next_slow - pos0, 0
    return base_i + more - pos0, now - base_t - more * think if now > base_t else 0
