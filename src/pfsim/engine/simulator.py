"""The event loop: integer-nanosecond clock and a heap ordered by (time, priority, sequence).

An event is a callback and its arguments scheduled at an absolute time.  Ties at the same
time are broken by a named priority and then by the order events were scheduled, never by
chance or object identity, so a run is a pure function of its inputs.  Cancellation is
lazy: callers keep an epoch in the arguments and ignore stale events (the heap never needs
a search).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Order of events that fall on the same nanosecond (lower runs first)."""

    URGENT = 0  # interrupts, I/O completions: state changes others must see
    NORMAL = 1  # task execution boundaries
    LATE = 2  # end-of-run bookkeeping, samplers


class Simulator:
    """Clock plus event heap.

    Args:
        start_ns: initial clock value.

    The model schedules with :meth:`at` / :meth:`after` and the driver calls :meth:`run`.
    """

    __slots__ = ("_heap", "_now", "_seq", "_stopped", "events_processed")

    def __init__(self, start_ns: int = 0) -> None:
        self._heap: list[tuple[int, int, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._now = start_ns
        self._seq = 0
        self._stopped = False
        self.events_processed = 0

    @property
    def now(self) -> int:
        """Current simulated time in nanoseconds."""
        return self._now

    def at(self, time_ns: int, callback: Callable[..., Any], *args: Any,
           priority: int = Priority.NORMAL) -> None:
        """Schedule ``callback(*args)`` at absolute time ``time_ns`` (not in the past)."""
        if time_ns < self._now:
            raise ValueError(f"event scheduled in the past: {time_ns} < {self._now}")
        self._seq += 1
        heapq.heappush(self._heap, (time_ns, priority, self._seq, callback, args))

    def after(self, delay_ns: int, callback: Callable[..., Any], *args: Any,
              priority: int = Priority.NORMAL) -> None:
        """Schedule ``callback(*args)`` ``delay_ns`` nanoseconds from now."""
        self.at(self._now + delay_ns, callback, *args, priority=priority)

    def peek(self) -> int | None:
        """Time of the next event, or None when the heap is empty."""
        return self._heap[0][0] if self._heap else None

    def stop(self) -> None:
        """Make :meth:`run` return after the current event."""
        self._stopped = True

    def run(self, until_ns: int | None = None,
            progress: Callable[[int], None] | None = None,
            progress_every: int = 4096) -> int:
        """Process events in order until the heap is empty, ``stop()``, or ``until_ns``.

        Events at exactly ``until_ns`` are not run; the clock is left at ``until_ns``
        when the limit ends the run.

        Returns:
            the clock value when the run ended.
        """
        heap = self._heap
        pop = heapq.heappop
        self._stopped = False
        count = 0
        # NOTE: perf: the loop body is kept minimal; this is the only per-event cost.
        while heap and not self._stopped:
            if until_ns is not None and heap[0][0] >= until_ns:
                self._now = until_ns
                break
            time_ns, _prio, _seq, callback, args = pop(heap)
            self._now = time_ns
            callback(*args)
            count += 1
            if progress is not None and count % progress_every == 0:
                progress(self._now)
        self.events_processed += count
        return self._now

    @property
    def stopped(self) -> bool:
        """The last ``run`` ended by ``stop()`` (not by an empty heap or ``until_ns``)."""
        return self._stopped
