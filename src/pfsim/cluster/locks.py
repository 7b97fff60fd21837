"""PTE locks, PT2 creation and the vseg-list rwlock, in simulated time (Python reference).

A handler runs whole at its fault time and carries its own clock (:class:`HandlerClock`).
Handlers take locks in the order they run (fault time, then event order), like tickets: each
lock remembers its last hold ``[acq, rel)``, and a handler asking for it at time ``t < rel``
spins until ``rel``.  The waiter is delayed, never skipped, and the wait is CPU time on its
core (a thread spinning on a PTE lock keeps its core busy: it is not descheduled), counted in
the thread's ``*_waits`` and ``*_wait_ns``.  The compiled loop (:mod:`pfsim.cluster.scan`)
inlines the same rules.

The vseg-list lock follows remote_rwlock (trunk/kernel/libk/remote_rwlock.c): readers share
it and wait only for a holding writer; a writer waits for the writer and the readers.  With
``vsl_lock = "queuelock"`` every holder is exclusive.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Callable

from pfsim.cluster.gpt import ProcessGpt
from pfsim.guest.process import Counters
from pfsim.machine.trace_records import LOCK_PT2, LOCK_PTE, LOCK_RWLOCK


class HandlerClock:
    """The running time of one exception handler and the waits it pays.

    Args:
        t: start time (ns).
        counters: the faulting thread's counters (wait counts and times go there).
    """

    __slots__ = ("t", "counters", "raised", "on_wait")

    def __init__(self, t: int, counters: Counters, raised: int = 0,
                 on_wait: Callable[[int, int, int], None] | None = None) -> None:
        self.t = t
        self.counters = counters
        self.raised = raised
        """When the exception was raised (before its entry cost)."""
        self.on_wait = on_wait
        """Told (start, end, LOCK_*) of every wait, when the run is traced."""

    def spin_pte(self, until: int) -> None:
        if until > self.t:
            self.counters.pte_lock_waits += 1
            self.counters.pte_lock_wait_ns += until - self.t
            if self.on_wait is not None:
                self.on_wait(self.t, until, LOCK_PTE)
            self.t = until

    def spin_pt2(self, until: int) -> None:
        if until > self.t:
            self.counters.pt2_lock_waits += 1
            self.counters.pte_lock_wait_ns += until - self.t
            if self.on_wait is not None:
                self.on_wait(self.t, until, LOCK_PT2)
            self.t = until

    def wait_rwlock(self, until: int) -> None:
        if until > self.t:
            self.counters.rwlock_waits += 1
            self.counters.rwlock_wait_ns += until - self.t
            if self.on_wait is not None:
                self.on_wait(self.t, until, LOCK_RWLOCK)
            self.t = until


def held(acq: np.ndarray, rel: np.ndarray, index: tuple[int, int] | int, t: int) -> int:
    """When the lock's last holder releases it, if that is after ``t``; else 0."""
    return int(rel[index]) if rel[index] > t else 0


def record_hold(acq: np.ndarray, rel: np.ndarray, index: tuple[int, int] | int, start: int,
                end: int) -> None:
    """Remember the hold ``[start, end)`` unless a later-ending one is already recorded."""
    if end > rel[index]:
        acq[index] = start
        rel[index] = end


def pte_lock(gpt: ProcessGpt, copy: int, slot: int, clock: HandlerClock, op_ns: int) -> int:
    """``hal_gpt_lock_pte`` step 2: spin while held, then CAS (``op_ns``); returns the
    acquisition time (the caller records the hold when it releases)."""
    clock.spin_pte(held(gpt.lock_acq, gpt.lock_rel, (copy, slot), clock.t))
    start = clock.t
    clock.t += op_ns
    return start


def pte_release(gpt: ProcessGpt, copy: int, slot: int, start: int, clock: HandlerClock,
                op_ns: int) -> None:
    """Unlock (or set, which unlocks) the PTE: one more PTE operation, hold recorded."""
    clock.t += op_ns
    record_hold(gpt.lock_acq, gpt.lock_rel, (copy, slot), start, clock.t)


def vsl_read(gpt: ProcessGpt, copy: int, clock: HandlerClock, hold_ns: int,
             queuelock: bool) -> None:
    """Take ``copy``'s vseg-list lock to read for ``hold_ns``."""
    if queuelock:
        vsl_write(gpt, copy, clock, hold_ns)
        return
    clock.wait_rwlock(held(gpt.vsl_wr_acq, gpt.vsl_wr_rel, copy, clock.t))
    clock.t += hold_ns
    if clock.t > gpt.vsl_rd_rel[copy]:
        gpt.vsl_rd_rel[copy] = clock.t


def vsl_write(gpt: ProcessGpt, copy: int, clock: HandlerClock, hold_ns: int) -> None:
    """Take ``copy``'s vseg-list lock to write for ``hold_ns`` (waits for readers too)."""
    busy = held(gpt.vsl_wr_acq, gpt.vsl_wr_rel, copy, clock.t)
    if gpt.vsl_rd_rel[copy] > clock.t:
        busy = max(busy, int(gpt.vsl_rd_rel[copy]))
    clock.wait_rwlock(busy)
    start = clock.t
    clock.t += hold_ns
    record_hold(gpt.vsl_wr_acq, gpt.vsl_wr_rel, copy, start, clock.t)
