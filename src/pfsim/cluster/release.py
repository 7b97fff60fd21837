"""Unmapping pages from a page-table copy: the release rules of ``vmm_remove_vseg``.

For every mapped entry of a vseg in one copy, the entry is reset and the page is released:

* FILE: never (it belongs to the file mapper; the copy's reference on it is dropped);
* CODE, STACK (private): by the copy that maps it;
* DATA, ANON, REMOTE (public): by the reference copy only;

and "released" means: if forks are still pending on the page, one is consumed instead (the
other sharer keeps the page); otherwise the page is freed.  ALMOS-MKH applies the
pending-fork test to DATA; applying it to every type is pfsim's modelling choice, which settles
an unverified point (the code frees CODE/STACK pages always, a vmm.h comment says "only when
not COW"): freeing a stack page a fork child still maps, or never freeing a COW page, would
both break the frame accounting (docs/clusters.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.cluster.gpt import MAPPED, ProcessGpt
from pfsim.cluster.memory import ClusterMem
from pfsim.cluster.topology import PRIVATE_TYPES
from pfsim.machine.frames import PAGECACHE

if TYPE_CHECKING:
    from pfsim.cluster.vmm import ClusterVmm


def release_page(mem: ClusterMem, frame: int) -> bool:
    """Consume a pending fork of ``frame`` or free it; True when it was freed."""
    if mem.forks[frame] > 0:
        mem.forks[frame] -= 1
        return False
    mem.put(frame)
    return True


def release_entries(vmm: ClusterVmm, gpt: ProcessGpt, copy: int, slots: np.ndarray) -> int:
    """Reset the mapped ``slots`` of ``copy`` and release their pages; returns pages freed.

    Vectorised form of :func:`release_page` per entry (a copy maps a user page at most once,
    so the per-frame updates do not collide)."""
    mem = vmm.mem
    slots = np.asarray(slots, dtype=np.int64)
    mapped = slots[(gpt.state[copy, slots] & MAPPED) != 0]
    frames = gpt.gfn[copy, mapped].astype(np.int64)
    cache = mem.kind[frames] == PAGECACHE
    np.subtract.at(mem.refcount, frames[cache], 1)  # the page cache keeps its own reference
    owner = ~cache & (np.isin(gpt.vtype[mapped], PRIVATE_TYPES) | (copy == gpt.ref))
    mine = frames[owner]
    pending = mem.forks[mine] > 0
    mem.forks[mine[pending]] -= 1
    mem.free_many(mine[~pending])
    gpt.state[copy, mapped] = 0
    gpt.gfn[copy, mapped] = -1
    return int(np.count_nonzero(~pending))


def release_vseg(vmm: ClusterVmm, gpt: ProcessGpt, copy: int, v: int) -> int:
    """``vmm_remove_vseg`` of vseg ``v`` in ``copy`` (the caller unregisters it)."""
    return release_entries(vmm, gpt, copy, gpt.mapped_slots(copy, v))


def release_copy(vmm: ClusterVmm, gpt: ProcessGpt, copy: int) -> None:
    """``vmm_destroy``: remove every vseg of ``copy``, then free its page tables."""
    release_entries(vmm, gpt, copy, gpt.mapped_slots(copy))
    gpt.vsl[copy, :] = 0
    for region in gpt.in_address_order(np.nonzero(gpt.pt2[copy] >= 0)[0]).tolist():
        vmm.mem.put(int(gpt.pt2[copy, region]))
        gpt.pt2[copy, region] = -1
