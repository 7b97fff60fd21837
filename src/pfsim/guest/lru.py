"""The four evictable LRU lists of the guest (Linux 5.15 ``enum lru_list``), as arrays.

Linux keeps each page on one doubly linked list of its lruvec: inactive or active, anonymous
or file.  New pages and pages put back go to the list's *head*; reclaim isolates pages from its
*tail* (mm/vmscan.c ``isolate_lru_pages``).  Here each list is a first-in first-out queue of
(frame, stamp) entries: appending is adding at the head, popping from the front is isolating
from the tail, so the order is Linux's.  A frame's list and the stamp of its one valid entry are
kept per frame (``which1``, ``stamp``); taking a frame off a list (it is freed, isolated, or
moves to another list) only changes ``which``, and the stale entry is skipped when reclaim
reaches it.  Every operation is vectorized over frames: no Python object per page.
"""

from __future__ import annotations

import numpy as np

from pfsim.errors import InvariantViolation

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = 0, 1, 2, 3
NR_LRU_LISTS = 4
NOT_ON_LRU = -1
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file")


def is_file_lru(lru: int) -> bool:
    return lru >= LRU_INACTIVE_FILE


def is_active_lru(lru: int) -> bool:
    return lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)


class _Queue:
    """One list's entries, oldest (Linux's tail) first."""

    def __init__(self) -> None:
        self.frames = np.zeros(256, dtype=np.int32)
        self.stamps = np.zeros(256, dtype=np.int64)
        self.head = 0
        self.tail = 0

    def append(self, frames: np.ndarray, stamps: np.ndarray, which1: np.ndarray,
               stamp_of: np.ndarray, lru: int) -> None:
        n = frames.size
        if self.tail + n > self.frames.size:
            self._compact(which1, stamp_of, lru, n)
        self.frames[self.tail:self.tail + n] = frames
        self.stamps[self.tail:self.tail + n] = stamps
        self.tail += n

    def reserve(self, size: int) -> None:
        """At least ``size`` entries of room in all (compiled reclaim compacts in place when
        it reaches the end, so a queue as long as the frames on all lists never overflows)."""
        if self.frames.size >= size:
            return
        n = self.tail - self.head
        frames = np.zeros(2 * size, dtype=np.int32)
        stamps = np.zeros(2 * size, dtype=np.int64)
        frames[:n] = self.frames[self.head:self.tail]
        stamps[:n] = self.stamps[self.head:self.tail]
        self.frames, self.stamps, self.head, self.tail = frames, stamps, 0, n

    def _compact(self, which1: np.ndarray, stamp_of: np.ndarray, lru: int, extra: int) -> None:
        """Drop stale entries and make room for ``extra`` more."""
        frames = self.frames[self.head:self.tail]
        stamps = self.stamps[self.head:self.tail]
        valid = (which1[frames] == lru + 1) & (stamp_of[frames] == stamps)
        frames, stamps = frames[valid], stamps[valid]
        size = max(256, 2 * (frames.size + extra))
        if size > self.frames.size or frames.size + extra > self.frames.size // 2:
            self.frames = np.zeros(max(size, self.frames.size), dtype=np.int32)
            self.stamps = np.zeros(max(size, self.stamps.size), dtype=np.int64)
        self.frames[:frames.size] = frames
        self.stamps[:frames.size] = stamps
        self.head, self.tail = 0, frames.size


class LruLists:
    """The lruvec of the guest's one memory node.

    Args:
        nframes: guest frames (the arrays are indexed by frame number).
    """

    def __init__(self, nframes: int) -> None:
        self.which1 = np.zeros(nframes, dtype=np.int8)
        """List of each frame + 1 (0: on none; zeros, so memory is written only for frames
        used)."""
        self.stamp = np.zeros(nframes, dtype=np.int64)
        self.nr = np.zeros(NR_LRU_LISTS, dtype=np.int64)
        """Pages on each list (``lruvec_page_state(NR_LRU_BASE + lru)``)."""
        self._queues = [_Queue() for _ in range(NR_LRU_LISTS)]
        self._next_stamp = 1

    @property
    def which(self) -> np.ndarray:
        """The list of every frame (NOT_ON_LRU when on none); a copy, for checks and tests."""
        return self.which1.astype(np.int64) - 1

    def add(self, frames: np.ndarray, lru: int) -> None:
        """Add ``frames`` (on no list) at the head of ``lru``, in order (the last one ends
        nearest the head: ``add_page_to_lru_list`` one after another)."""
        frames = np.asarray(frames, dtype=np.int32)
        if frames.size == 0:
            return
        if np.any(self.which1[frames] != 0):
            bad = int(frames[np.argmax(self.which1[frames] != 0)])
            raise InvariantViolation(f"frame {bad} added to an LRU list while on one")
        stamps = np.arange(self._next_stamp, self._next_stamp + frames.size, dtype=np.int64)
        self._next_stamp += frames.size
        self.which1[frames] = lru + 1
        self.stamp[frames] = stamps
        self.nr[lru] += frames.size
        self._queues[lru].append(frames, stamps, self.which1, self.stamp, lru)

    def remove(self, frames: np.ndarray) -> None:
        """Take ``frames`` off whatever list each is on (those on none are ignored)."""
        frames = np.asarray(frames, dtype=np.int64)
        if frames.size == 0:
            return
        lists = self.which1[frames]
        on = lists != 0
        if on.any():
            self.nr -= np.bincount(lists[on] - 1, minlength=NR_LRU_LISTS)
            self.which1[frames[on]] = 0

    def isolate(self, lru: int, n: int) -> np.ndarray:
        """``isolate_lru_pages``: take up to ``n`` pages from the tail of ``lru`` (oldest
        first); they are on no list until put back."""
        queue = self._queues[lru]
        taken: list[np.ndarray] = []
        want = n
        while want > 0 and queue.head < queue.tail:
            end = min(queue.tail, queue.head + max(2 * want, 64))
            frames = queue.frames[queue.head:end]
            stamps = queue.stamps[queue.head:end]
            valid = np.flatnonzero((self.which1[frames] == lru + 1) & (self.stamp[frames] == stamps))
            if valid.size >= want:
                valid = valid[:want]
                queue.head += int(valid[-1]) + 1
            else:
                queue.head = end
            got = frames[valid].copy()
            taken.append(got)
            want -= got.size
        if not taken:
            return np.zeros(0, dtype=np.int32)
        out = np.concatenate(taken)
        self.which1[out] = 0
        self.nr[lru] -= out.size
        return out

    def order(self, lru: int) -> np.ndarray:
        """The frames on ``lru``, oldest (Linux's tail) first."""
        queue = self._queues[lru]
        frames = queue.frames[queue.head:queue.tail]
        stamps = queue.stamps[queue.head:queue.tail]
        return frames[(self.which1[frames] == lru + 1) & (self.stamp[frames] == stamps)].copy()

    def check(self) -> None:
        """Each frame on a list has exactly one valid entry in that list's queue, and the
        list sizes match."""
        counts = np.zeros(self.which1.size, dtype=np.int64)
        for lru, queue in enumerate(self._queues):
            frames = queue.frames[queue.head:queue.tail]
            stamps = queue.stamps[queue.head:queue.tail]
            valid = (self.which1[frames] == lru + 1) & (self.stamp[frames] == stamps)
            np.add.at(counts, frames[valid], 1)
            if int(np.count_nonzero(self.which1 == lru + 1)) != int(self.nr[lru]):
                raise InvariantViolation(f"LRU list {LRU_NAMES[lru]} size differs from its count")
        on = self.which1 != 0
        if np.any(counts[on] != 1) or np.any(counts[~on] != 0):
            frame = int(np.argmax((counts != 1) & on | (counts != 0) & ~on))
            raise InvariantViolation(f"frame {frame} has {int(counts[frame])} valid LRU entries")
