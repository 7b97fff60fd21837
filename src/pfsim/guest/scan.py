"""Compiled per-access loop: the simulator's hot path.

:func:`run_accesses` runs a task's pre-translated access stream against the page table
(flat ``uint8`` PTE bits per slot) and resolves the common faults in place, exactly as the
Python fault path would (:mod:`pfsim.guest.fault` is the reference):

* first read of anonymous memory → the shared zero page (``zero_page`` cost, minor fault);
* first write, or write after the zero page → a new zeroed frame (``anon_page``, minor);
* write to a write-protected private anonymous page we own alone → reuse (``cow_reuse``,
  minor, ``cow_reuses`` + 1).

Anything else (file pages, access errors, shared pages to copy, no free frame, fetches,
outside every VMA) stops the loop at that access and returns to Python.

With a host (``host`` true) every access also needs its frame mapped in the EPT; an access
to an unmapped gfn stops the loop with STOP_EPT (the host handles the violation), and each
access updates the host's per-gfn dirty bit and the reclaim policy's bookkeeping (CLOCK's
referenced bit, LRU's move-to-front).  A frame the fast path would hand out must be backed
by the host too, else the fault goes to Python.  Every fault costs
``entry`` plus its handler; the access then completes (``think``).  Faults handled here are
logged (index, completion time) so a segment cut short by an interrupt can tell how many
accesses were done by a given time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.guest.memory import ANON, ZERO_GFN
from pfsim.guest.mm import PTE_EXEC, PTE_PRESENT, PTE_WRITE, PTE_ZERO, VM_ANON, VM_EXEC, VM_WRITE
from pfsim.hypervisor.reclaim.resident import TOUCH_CLOCK, TOUCH_LRU, lru_move_to_front

# indices of the int64 ``costs`` array
COST_ENTRY, COST_ZERO_PAGE, COST_ANON_PAGE, COST_COW_REUSE = 0, 1, 2, 3
# indices of the int64 ``out`` array
OUT_TIME, OUT_MIN_FLT, OUT_COW_REUSES, OUT_ALLOCATED, OUT_RSS, OUT_NLOG = 0, 1, 2, 3, 4, 5
OUT_REASON, OUT_GFN = 6, 7
OUT_SIZE = 8
# why the loop stopped (OUT_REASON)
STOP_LIMIT, STOP_FAULT, STOP_EPT = 0, 1, 2


@njit(cache=True, nogil=True)
def run_accesses(slots: np.ndarray, writes: np.ndarray, start: int, stop: int, t0: int,
                 think: int, t_limit: int, state: np.ndarray, gfn: np.ndarray,
                 vflags: np.ndarray, refcount: np.ndarray, kind: np.ndarray,
                 free_stack: np.ndarray, nfree: np.ndarray, costs: np.ndarray,
                 zero_page: bool, fast: bool, fetch: bool, out: np.ndarray,
                 log_index: np.ndarray, log_time: np.ndarray, host: bool, ept: np.ndarray,
                 hdirty: np.ndarray, href: np.ndarray, touch: int, lru_prev: np.ndarray,
                 lru_next: np.ndarray, lru_ends: np.ndarray) -> int:
    """Run accesses ``[start, stop)`` from time ``t0`` until one needs the Python fault path.

    Args:
        slots, writes: the stream (slot per access, -1 outside every VMA; store flags).
        think: CPU time of one access (ns); ``t_limit``: no access starts that would end later.
        state, gfn, vflags: the address space's PTE bits, frames and VMA flags per slot.
        refcount, kind, free_stack, nfree: guest frames (``nfree`` is a 1-element array).
        costs: fault costs (ns) indexed by COST_*; ``zero_page``: map the zero page on reads.
        fast: resolve the common faults here (off: every fault returns to Python).
        fetch: instruction fetches (never resolved here).
        out: receives OUT_* (end time, counts, stop reason); ``log_index``/``log_time``: fault log.
        host, ept, hdirty, href, touch, lru_*: the host's EPT and reclaim bookkeeping.

    Returns:
        index of the first access left undone: a fault for Python if ``< stop`` and time was
        left, else where the time or the stream ran out.
    """
    t = t0
    nlog = 0
    cap = log_index.shape[0]
    base = PTE_PRESENT | (PTE_EXEC if fetch else 0)
    entry = costs[COST_ENTRY]
    reason = STOP_LIMIT
    i = start
    while i < stop:
        if t + think > t_limit:
            break
        slot = slots[i]
        if slot < 0:
            reason = STOP_FAULT
            break
        store = writes[i]
        need = base | (PTE_WRITE if store else 0)
        pte = state[slot]
        if (pte & need) == need and host:
            g = gfn[slot]
            if ept[g] == 0:
                reason = STOP_EPT
                out[OUT_GFN] = g
                break
            if store:
                hdirty[g] = 1
            if touch == TOUCH_CLOCK:
                href[g] = 1
            elif touch == TOUCH_LRU:
                lru_move_to_front(lru_prev, lru_next, lru_ends, g)
        if (pte & need) != need:
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
            if (pte & PTE_PRESENT) == 0:
                if pte != 0:  # outside the VMA (stack room)
                    break
                if not store and zero_page:
                    state[slot] = PTE_PRESENT | PTE_ZERO | exec_bit
                    gfn[slot] = ZERO_GFN
                    t += entry + costs[COST_ZERO_PAGE]
                else:
                    n = nfree[0]
                    if n == 0:
                        break
                    frame = free_stack[n - 1]
                    if host and ept[frame] == 0:
                        break
                    n -= 1
                    nfree[0] = n
                    kind[frame] = ANON
                    refcount[frame] = 1
                    gfn[slot] = frame
                    state[slot] = full if (vf & VM_WRITE) else PTE_PRESENT | exec_bit
                    out[OUT_ALLOCATED] += 1
                    out[OUT_RSS] += 1
                    t += entry + costs[COST_ANON_PAGE]
            elif pte & PTE_ZERO:
                n = nfree[0]
                if n == 0:
                    break
                frame = free_stack[n - 1]
                if host and ept[frame] == 0:
                    break
                n -= 1
                nfree[0] = n
                kind[frame] = ANON
                refcount[frame] = 1
                gfn[slot] = frame
                state[slot] = full
                out[OUT_ALLOCATED] += 1
                out[OUT_RSS] += 1
                t += entry + costs[COST_ANON_PAGE]
            else:
                frame = gfn[slot]
                if kind[frame] != ANON or refcount[frame] != 1:
                    break
                if host and ept[frame] == 0:
                    break
                state[slot] = full
                out[OUT_COW_REUSES] += 1
                t += entry + costs[COST_COW_REUSE]
            out[OUT_MIN_FLT] += 1
            if host:  # the re-executed access touches the page (and the zeroing did)
                g = gfn[slot]
                if store or (state[slot] & PTE_WRITE and not (state[slot] & PTE_ZERO)):
                    hdirty[g] = 1
                if touch == TOUCH_CLOCK:
                    href[g] = 1
                elif touch == TOUCH_LRU:
                    lru_move_to_front(lru_prev, lru_next, lru_ends, g)
            reason = STOP_LIMIT
            t += think
            log_index[nlog] = i
            log_time[nlog] = t
            nlog += 1
            i += 1
            continue
        t += think
        i += 1
    out[OUT_TIME] = t
    out[OUT_NLOG] = nlog
    out[OUT_REASON] = reason if i < stop else STOP_LIMIT
    return i


@njit(cache=True, nogil=True)
def done_by(now: int, t0: int, think: int, pos0: int, end: int, log_index: np.ndarray,
            log_time: np.ndarray, nlog: int) -> int:
    """Accesses of a segment (from ``pos0`` at ``t0``, stopping at ``end``) completed by ``now``."""
    base_i = pos0
    base_t = t0
    next_fault = end
    for k in range(nlog):
        if log_time[k] <= now:
            base_i = log_index[k] + 1
            base_t = log_time[k]
        else:
            next_fault = log_index[k]
            break
    more = (now - base_t) // think if now > base_t else 0
    return min(base_i + more, next_fault) - pos0
