"""Guest physical memory: frames with reference counts and a free stack.

Frame kinds (FREE, ANON, PAGECACHE, ZERO, KERNEL) are in :mod:`pfsim.machine.frames`.
Frame 0 is the shared zero page; the first ``kernel_reserved`` bytes belong to the kernel.
A frame's ``refcount`` counts its mappings plus one for the page cache when it holds a file
page; it returns to the free stack at zero.

Frames are handed out lowest first, so the frames at and above a *watermark* (``nfree[1]``) have
never been used: they are free without being on the stack, and the arrays are only written
below the watermark.  numpy's zeroed arrays are mapped lazily by the host kernel, so a 1 TiB
guest that uses 1 GiB holds about 1 GiB of frame bookkeeping in RAM, and the end-of-run check
reads only the frames below the watermark.  The pop order is the one of a stack initialised
with every frame (freed frames first, last freed first, then never-used frames upwards).
"""

from __future__ import annotations

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.machine.frames import ANON, FREE, KERNEL, PAGECACHE, ZERO, ZERO_GFN


PUT_BATCH = 1 << 16


class PhysMem:
    """Frames of one VM.

    Args:
        nframes: guest memory in 4 KiB frames.
        reserved: frames kept by the kernel (never handed to user memory).
    """

    def __init__(self, nframes: int, reserved: int) -> None:
        if reserved < 1 or reserved >= nframes:
            raise ValueError("reserved frames must leave room for user pages")
        self.nframes = nframes
        self.refcount = np.zeros(nframes, dtype=np.int32)
        self.kind = np.zeros(nframes, dtype=np.uint8)
        self.kind[:reserved] = KERNEL
        self.kind[ZERO_GFN] = ZERO
        self.refcount[:reserved] = 1
        # frames freed after use; never-used frames (from the watermark up) are not on it
        self.free_stack = np.zeros(nframes - reserved,
                                   dtype=np.int32 if nframes <= 1 << 31 else np.int64)
        self.nfree = np.array([nframes - reserved, reserved], dtype=np.int64)
        """[free frames, watermark] (an array, so compiled code updates them in place): the
        stack holds ``nfree[0] - (nframes - nfree[1])`` frames."""
        self.allocated_total = 0
        self.on_free = None
        """Called with the frames :meth:`put` and :meth:`put_many` free (page reclaim takes
        them off its LRU lists)."""

    @property
    def watermark(self) -> int:
        """Frames from here up have never been allocated (and are free)."""
        return int(self.nfree[1])

    def _stacked(self) -> int:
        """Frames on the free stack."""
        return int(self.nfree[0]) - (self.nframes - int(self.nfree[1]))

    @property
    def free_frames(self) -> int:
        return int(self.nfree[0])

    @property
    def user_frames(self) -> int:
        kind = self.kind[:self.watermark]
        return int(np.count_nonzero((kind == ANON) | (kind == PAGECACHE)))

    def alloc(self, kind: int) -> int:
        """Take a free frame for ``kind`` (ANON or PAGECACHE) with refcount 1; -1 when none."""
        n = int(self.nfree[0])
        if n == 0:
            return -1
        stacked = self._stacked()
        if stacked > 0:
            gfn = int(self.free_stack[stacked - 1])
        else:
            gfn = int(self.nfree[1])
            self.nfree[1] = gfn + 1
        self.nfree[0] = n - 1
        self.kind[gfn] = kind
        self.refcount[gfn] = 1
        self.allocated_total += 1
        return gfn

    def get(self, gfn: int) -> None:
        """One more reference (a new mapping of the frame)."""
        if self.kind[gfn] == FREE:
            raise InvariantViolation(f"reference to free frame {gfn}")
        self.refcount[gfn] += 1

    def put(self, gfn: int) -> None:
        """Drop a reference; the frame is freed at zero (the zero page is never freed)."""
        kind = self.kind[gfn]
        if kind in (ZERO, KERNEL):
            return
        if kind == FREE or self.refcount[gfn] <= 0:
            raise InvariantViolation(f"put on free frame {gfn}")
        self.refcount[gfn] -= 1
        if self.refcount[gfn] == 0:
            self.kind[gfn] = FREE
            self.free_stack[self._stacked()] = gfn
            self.nfree[0] += 1
            if self.on_free is not None:
                self.on_free(np.array([gfn]))

    def put_many(self, gfns: np.ndarray) -> int:
        """:meth:`put` of each of ``gfns`` in order, vectorized (teardown of a whole range).

        A frame is freed by its last reference, so freed frames join the free stack in the
        order of their last occurrence in ``gfns``, as one :meth:`put` after another would
        leave them.  Returns how many of ``gfns`` were user frames (not the zero page).
        A long run is done in pieces of :data:`PUT_BATCH` (the same as one piece after the
        other), so the temporaries of a teardown stay a few MiB."""
        if len(gfns) > PUT_BATCH:
            return sum(self.put_many(gfns[i:i + PUT_BATCH])
                       for i in range(0, len(gfns), PUT_BATCH))
        gfns = np.asarray(gfns, dtype=np.int64)
        gfns = gfns[(self.kind[gfns] != ZERO) & (self.kind[gfns] != KERNEL)]
        if gfns.size == 0:
            return 0
        backwards, first_back, counts = np.unique(gfns[::-1], return_index=True,
                                                  return_counts=True)
        if np.any(self.kind[backwards] == FREE) or np.any(self.refcount[backwards] < counts):
            bad = backwards[(self.kind[backwards] == FREE) | (self.refcount[backwards] < counts)]
            raise InvariantViolation(f"put on free frame {int(bad[0])}")
        self.refcount[backwards] -= counts.astype(self.refcount.dtype)
        last = gfns.size - 1 - first_back
        freed = self.refcount[backwards] == 0
        order = np.argsort(last[freed], kind="stable")
        frames = backwards[freed][order]
        self.kind[frames] = FREE
        n = self._stacked()
        self.free_stack[n:n + frames.size] = frames
        self.nfree[0] += frames.size
        if self.on_free is not None and frames.size:
            self.on_free(frames)
        return int(gfns.size)

    def check(self) -> None:
        """Frames allocated + free == all user frames; free frames have no references
        (O(frames below the watermark): the frames above it were never touched)."""
        used = self.watermark
        free = self.kind[:used] == FREE
        stacked = self.free_stack[:self._stacked()]
        if (int(np.count_nonzero(free)) + self.nframes - used != self.free_frames
                or stacked.size != np.count_nonzero(free)
                or (stacked.size and not np.all(free[stacked]))):
            raise InvariantViolation("free-stack size differs from frames marked free")
        refcount = self.refcount[:used]
        if np.any(refcount[free] != 0) or np.any(refcount[~free] <= 0):
            raise InvariantViolation("frame reference counts inconsistent with allocation")
