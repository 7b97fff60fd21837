"""Unmapping pages from a page-table copy: the release rules of ``vmm_remove_vseg`` (§6.3).

For every mapped entry of a vseg in one copy, the entry is reset and the page is released:

* FILE: never (it belongs to the file mapper; the copy's reference on it is dropped);
* CODE, STACK (private): by the copy that maps it;
* DATA, ANON, REMOTE (public): by the reference copy only;

and "released" means: if forks are still pending on the page, one is consumed instead (the
other sharer keeps the page); otherwise the page is freed.  The reference applies the
pending-fork test to DATA; applying it to every type is a modelling choice [I] that settles
§13 (7): freeing a stack page a fork child still maps, or never freeing a COW page, would
both break the frame accounting (docs/clusters.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.cluster.gpt import MAPPED, ProcessGpt
from pfsim.cluster.memory import ClusterMem
from pfsim.cluster.topology import PRIVATE_TYPES
from pfsim.guest.memory import PAGECACHE

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
    """Reset the mapped ``slots`` of ``copy`` and release their pages; returns pages freed."""
    mem = vmm.mem
    freed = 0
    is_ref = copy == gpt.ref
    for slot in slots.tolist():
        if not gpt.state[copy, slot] & MAPPED:
            continue
        frame = int(gpt.gfn[copy, slot])
        if mem.kind[frame] == PAGECACHE:
            mem.put(frame)
        elif int(gpt.vtype[slot]) in PRIVATE_TYPES or is_ref:
            freed += release_page(mem, frame)
        gpt.state[copy, slot] = 0
        gpt.gfn[copy, slot] = -1
    return freed


def release_vseg(vmm: ClusterVmm, gpt: ProcessGpt, copy: int, v: int) -> int:
    """``vmm_remove_vseg`` of vseg ``v`` in ``copy`` (the caller unregisters it)."""
    return release_entries(vmm, gpt, copy, gpt.mapped_slots(copy, v))


def release_copy(vmm: ClusterVmm, gpt: ProcessGpt, copy: int) -> None:
    """``vmm_destroy``: remove every vseg of ``copy``, then free its page tables."""
    release_entries(vmm, gpt, copy, gpt.mapped_slots(copy))
    gpt.vsl[copy, :] = 0
    for region in np.nonzero(gpt.pt2[copy] >= 0)[0].tolist():
        vmm.mem.put(int(gpt.pt2[copy, region]))
        gpt.pt2[copy, region] = -1
