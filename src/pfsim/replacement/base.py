"""The interface of a page-replacement policy replayed over a stream of dense page ids.

The model is demand paging with ``frames`` frames: a request for a resident page is a hit; any
other request is a fault that loads the page, first evicting one resident page chosen by the
policy when all frames are full. A policy object is one (policy, frame count) pair; it is fed
the trace chunk by chunk (:meth:`Policy.feed`), so several policies and sizes share one pass
over a trace, and its state carries over from one chunk to the next.

Every policy is a compiled kernel over a whole chunk (NOTE: perf: a per-request Python call
costs more than the policy itself: driving libCacheSim one request at a time from Python
reaches 0.89 M requests/s, its own C loop 3.7 M/s for LRU). Its state lives in arrays: per-page
arrays indexed by dense page id (:mod:`pfsim.replacement.pageids`), grown when new pages
appear, and per-frame arrays of at most ``frames`` entries, grown up to that size; the scalars
(list ends, hands, counters) sit in one ``int64`` array ``state`` whose slot 0 counts faults.

Adding a policy: write ``<name>.py`` with a :class:`Policy` subclass whose module docstring
gives the algorithm in pseudocode and its sources, add it to ``REGISTRY`` in ``__init__.py``
and a slow version to ``reference/`` for the differential tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

NO_RECORD = np.zeros(0, dtype=np.uint8)
FAULTS = 0  # slot of ``state`` counting faults

# Arrays are (dtype, fill value of new entries).
ArraySpec = dict[str, tuple[type, int]]


class Policy(ABC):
    """One policy at one frame count, fed dense page ids in trace order.

    Subclasses set ``name``, ``page_arrays`` / ``frame_arrays`` / ``n_state`` and implement
    :meth:`_feed` with a compiled kernel; an array named ``x`` in a spec is the attribute
    ``self.x``.
    """

    name: ClassVar[str]
    needs_future: ClassVar[bool] = False  # True: replays in finish(), holding the whole trace
    page_arrays: ClassVar[ArraySpec] = {}
    frame_arrays: ClassVar[ArraySpec] = {}
    n_state: ClassVar[int] = 1

    def __init__(self, frames: int, seed: int = 0) -> None:
        """Args: frames: memory size in frames (>= 1); seed: seed of random choices, if any."""
        if int(frames) < 1:
            raise ValueError(f"frames must be a positive number of frames, got {frames}")
        self.frames = int(frames)
        self.seed = int(seed)
        self.requests = 0
        self.state = np.zeros(self.n_state, dtype=np.int64)
        self._capacity = 0
        self._setup()
        self._grow(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(frames={self.frames}, seed={self.seed})"

    def _setup(self) -> None:
        """Initialise scalar state before the first chunk (default: nothing)."""

    @property
    def faults(self) -> int:
        """Faults so far (after :meth:`finish` for a policy that needs the future)."""
        return int(self.state[FAULTS])

    def feed(self, ids: np.ndarray, n_pages: int, hits: np.ndarray | None = None) -> None:
        """Replay the next chunk of dense page ids (``int32``, every id below ``n_pages``).

        ``hits``, if given, is a ``uint8`` array of ``ids.size`` entries set to 1 where the
        request was a hit (for a policy that needs the future: filled in by :meth:`finish`).
        """
        if n_pages > self._capacity:
            self._grow(n_pages)
        self._feed(ids, NO_RECORD if hits is None else hits)
        self.requests += int(ids.size)

    def finish(self) -> None:
        """End of the trace (a policy that needs the future replays here)."""

    @abstractmethod
    def _feed(self, ids: np.ndarray, hits: np.ndarray) -> None:
        """Run the kernel over ``ids``; set ``hits[i] = 1`` on hits unless ``hits`` is empty."""

    def _grow(self, n_pages: int) -> None:
        """Make the per-page arrays hold ``n_pages`` ids and the per-frame ones
        ``min(frames, n_pages)`` entries (geometric growth, new entries filled)."""
        capacity = max(n_pages, 2 * self._capacity, 1024)
        for spec, size in ((self.page_arrays, capacity),
                           (self.frame_arrays, min(self.frames, capacity))):
            for attr, (dtype, fill) in spec.items():
                old = getattr(self, attr, None)
                if old is not None and old.size == size:
                    continue
                new = np.full(size, fill, dtype=dtype)
                if old is not None:
                    new[:old.size] = old
                setattr(self, attr, new)
        self._capacity = capacity
