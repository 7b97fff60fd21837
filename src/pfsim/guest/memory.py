"""Guest physical memory: frames with reference counts and a free stack.

Frame kinds (FREE, ANON, PAGECACHE, ZERO, KERNEL) are in :mod:`pfsim.machine.frames`.
Frame 0 is the shared zero page; the first ``kernel_reserved`` bytes belong to the kernel.
A frame's ``refcount`` counts its mappings plus one for the page cache when it holds a file
page; it returns to the free stack at zero.
"""

from __future__ import annotations

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.machine.frames import ANON, FREE, KERNEL, PAGECACHE, ZERO, ZERO_GFN


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
        # the free stack pops low frame numbers first (deterministic, readable in tests)
        self.free_stack = np.arange(nframes - 1, reserved - 1, -1, dtype=np.int32)
        self.nfree = np.array([nframes - reserved], dtype=np.int64)
        """Free-stack height as a one-element array, so compiled code can pop frames in place."""
        self.allocated_total = 0

    @property
    def free_frames(self) -> int:
        return int(self.nfree[0])

    @property
    def user_frames(self) -> int:
        return int(np.count_nonzero((self.kind == ANON) | (self.kind == PAGECACHE)))

    def alloc(self, kind: int) -> int:
        """Take a free frame for ``kind`` (ANON or PAGECACHE) with refcount 1; -1 when none."""
        n = int(self.nfree[0])
        if n == 0:
            return -1
        n -= 1
        self.nfree[0] = n
        gfn = int(self.free_stack[n])
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
            n = int(self.nfree[0])
            self.free_stack[n] = gfn
            self.nfree[0] = n + 1

    def put_many(self, gfns: np.ndarray) -> int:
        """:meth:`put` of each of ``gfns`` in order, vectorized (teardown of a whole range).

        A frame is freed by its last reference, so freed frames join the free stack in the
        order of their last occurrence in ``gfns``, as one :meth:`put` after another would
        leave them.  Returns how many of ``gfns`` were user frames (not the zero page)."""
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
        n = int(self.nfree[0])
        self.free_stack[n:n + frames.size] = frames
        self.nfree[0] = n + frames.size
        return int(gfns.size)

    def check(self) -> None:
        """Frames allocated + free == all user frames; free frames have no references."""
        free = self.kind == FREE
        if int(np.count_nonzero(free)) != self.free_frames:
            raise InvariantViolation("free-stack size differs from frames marked free")
        if np.any(self.refcount[free] != 0) or np.any(self.refcount[~free] <= 0):
            raise InvariantViolation("frame reference counts inconsistent with allocation")
