"""Guest frame kinds (``PhysMem.kind``) and the frame of the shared zero page.

The guest's frame allocator and fault path, the compiled access loops, the cluster VMM and the
host (which pins the zero page) agree on these values.
"""

from __future__ import annotations

FREE, ANON, PAGECACHE, ZERO, KERNEL, BALLOON = 0, 1, 2, 3, 4, 5
"""BALLOON: a frame the guest's balloon driver holds for the host (pinned, never mapped)."""
ZERO_GFN = 0
