"""The layout of the host's memory arrays for one VM, and where a guest frame's contents are.

:class:`pfsim.hypervisor.hostmem.HostMemory` owns the arrays; the compiled access loop
(:mod:`pfsim.machine.scan`), the resident reclaim policies and the compiled core read and update
them in place.  Per guest frame (gfn) the host keeps where its contents are:

=========  ==================================================================
NEVER      never touched: the first access is a host minor fault (zeroed page)
RESIDENT   in a host frame and mapped in the EPT: guest accesses run freely
SWAPCACHE  in a host frame (read ahead from swap) but not mapped: minor fault
SWAPPED    only on the swap device: a major fault that reads it back
INIO       being read from swap; faults on it wait for that read
=========  ==================================================================
"""

from __future__ import annotations

NEVER, RESIDENT, SWAPCACHE, SWAPPED, INIO = 0, 1, 2, 3, 4

# NOTE: perf: the arrays the compiled loop needs are packed into a few 2-D arrays (each
# numba argument costs ~0.35 us of dispatch); HostMemory's attributes are row views.
B_EPT, B_WHERE, B_DIRTY, B_REF = 0, 1, 2, 3  # rows of gfn_bits (uint8, per gfn)
L_HFN, L_LRU_PREV, L_LRU_NEXT = 0, 1, 2  # rows of gfn_links (int32, per gfn)
F_GFN, F_FREE, F_RING = 0, 1, 2  # rows of frames (int32, per host frame)
# slots of small (int64).  S_NFREE counts the free host frames: the S_NSTACK frames on the free
# stack (row F_FREE) plus every frame at or above S_HWM, never used yet and on no stack.
(S_NFREE, S_LRU_HEAD, S_LRU_TAIL, S_RING_HEAD, S_RING_SIZE, S_INSERT, S_TOUCH,
 S_FIRST_TOUCH, S_NSTACK, S_HWM, S_GFN_HWM) = range(11)
SMALL_FIELDS = 11

# NOTE: memory: every per-gfn and per-frame array is allocated zeroed (``np.zeros``: calloc,
# whose pages the kernel maps on first write), so a VM costs memory for the gfns and frames it
# uses, not for its size (a 1 TiB guest touching 1 GiB).  Hence no array relies on a -1 fill:
# frames are handed out lowest first from the S_HWM watermark (the order a full free stack
# would give), an entry is read only once written (S_GFN_HWM bounds the gfns ever backed, for
# the end-of-run checks), and the swap slot of a gfn is stored one-based (0: no slot).
