"""Page numbers to page-table slots in compiled code (the sparse tables of
:mod:`pfsim.guest.mm`): a binary search of the VMA starts, then a walk of the VMA's radix
directory (nodes of 512 entries, as an x86-64 table walk through PUD and PMD pages), with
the last VMA and leaf remembered (streams mostly stay in one VMA and one leaf)."""

from __future__ import annotations

import numpy as np
from numba import njit

LEAF_SHIFT = 9
"""Slots per leaf: 2**9, the 512 PTEs of one page-table page."""
FANOUT_SHIFT = 9
"""Entries per directory node: 2**9."""
KEY_SHIFT = 26
"""Bits of a leaf's number inside its VMA (2**26 leaves of 2 MiB: the 128 TiB of user space)."""
NO_VMA = -1
"""Slot of a page no VMA reserves."""
NO_LEAF = -2
"""Slot of a page whose leaf is not allocated yet."""


@njit(cache=True, nogil=True)
def translate(vpns: np.ndarray, base: int, starts: np.ndarray, ends: np.ndarray,
              keys_of: np.ndarray, roots: np.ndarray, depths: np.ndarray, nodes: np.ndarray,
              out: np.ndarray) -> int:
    """``out[i]``: the slot of page ``vpns[i] + base``, :data:`NO_VMA` or :data:`NO_LEAF`.

    Args:
        starts, ends, keys_of: the VMAs' reserved page ranges (sorted by start) and keys.
        roots, depths: by VMA key, its root node and directory levels.
        nodes: the directory nodes (leaf block numbers in the last level; -1: none).

    Returns:
        how many pages fell in leaves not allocated yet.
    """
    nv = len(starts)
    fanout = (1 << FANOUT_SHIFT) - 1
    missing = 0
    vma = -1
    key = -1
    last_leaf = np.int64(-1)
    block = np.int64(-1)
    for i in range(len(vpns)):
        v = vpns[i] + base
        if vma < 0 or v < starts[vma] or v >= ends[vma]:
            lo, hi = 0, nv
            while lo < hi:
                mid = (lo + hi) >> 1
                if starts[mid] <= v:
                    lo = mid + 1
                else:
                    hi = mid
            vma = lo - 1
            last_leaf = -1
            if vma < 0 or v >= ends[vma]:
                vma = -1
                out[i] = NO_VMA
                continue
            key = keys_of[vma]
        offset = v - starts[vma]
        leaf = offset >> LEAF_SHIFT
        if leaf != last_leaf:
            node = roots[key]
            level = depths[key] - 1
            while level >= 0 and node >= 0:
                node = nodes[node, (leaf >> (FANOUT_SHIFT * level)) & fanout]
                level -= 1
            block = node
            last_leaf = leaf
        if block < 0:
            out[i] = NO_LEAF
            missing += 1
        else:
            out[i] = (block << LEAF_SHIFT) | (offset & ((1 << LEAF_SHIFT) - 1))
    return missing
