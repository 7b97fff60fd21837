"""The ALMOS-MKH invariants (INV-1..INV-7, listed in docs/clusters.md) as pure functions over the
model's state.

Each function takes the guest kernel (or parts of it), changes nothing, and raises
:class:`~pfsim.errors.InvariantViolation` with the offending process, copy, slot and frame.
:func:`check_all` runs them together (``ClusterVmm.check_invariants``); tests run it after every
simulator event.

"Now" matters for in-flight publications: an entry whose new value is not yet visible
(``vis > now``) is skipped by the coherence checks (INV-2 allows the transient).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.cluster.gpt import ATTR_MASK, COW, MAPPED, WRITABLE, ProcessGpt
from pfsim.cluster.memory import PAGETABLE, ClusterMem
from pfsim.cluster.topology import CODE, PRIVATE_TYPES
from pfsim.errors import InvariantViolation
from pfsim.machine.frames import ANON, FREE, PAGECACHE

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel


def _live(kernel: GuestKernel) -> list[tuple[str, ProcessGpt]]:
    return [(p.name, p.vmm) for p in kernel.processes if p.alive and p.vmm is not None]


def check_copies_match_reference(name: str, gpt: ProcessGpt, now: int) -> None:
    """INV-2: a public vpn mapped in a non-reference copy is mapped in the reference with the
    same frame and attributes (entries still in flight at ``now`` excepted)."""
    ref = gpt.ref
    public = ~np.isin(gpt.vtype, PRIVATE_TYPES)
    settled_ref = (gpt.vis[ref] <= now) & (gpt.lock_rel[ref] <= now)
    for copy in range(gpt.n):
        if copy == ref or not gpt.copy_exists[copy]:
            continue
        mapped = (gpt.state[copy] & MAPPED) != 0
        check = mapped & public & (gpt.vis[copy] <= now) & settled_ref
        slots = np.nonzero(check)[0]
        if not slots.size:
            continue
        ref_mapped = (gpt.state[ref, slots] & MAPPED) != 0
        same_frame = gpt.gfn[ref, slots] == gpt.gfn[copy, slots]
        same_attr = (gpt.state[ref, slots] & ATTR_MASK) == (gpt.state[copy, slots] & ATTR_MASK)
        bad = ~(ref_mapped & same_frame & same_attr)
        if bad.any():
            slot = int(slots[np.argmax(bad)])
            raise InvariantViolation(
                f"INV-2: {name} copy {copy} slot {slot} maps frame {gpt.gfn[copy, slot]} "
                f"attr {gpt.state[copy, slot]:#x}; reference maps {gpt.gfn[ref, slot]} "
                f"attr {gpt.state[ref, slot]:#x}")


def check_cow_never_writable(kernel: GuestKernel) -> None:
    """INV-4 and the fork rule: no entry is both WRITABLE and COW, and a page with forks
    pending is writable in no copy of any process."""
    mem: ClusterMem = kernel.mem  # type: ignore[assignment]
    for name, gpt in _live(kernel):
        both = (gpt.state & (WRITABLE | COW)) == (WRITABLE | COW)
        if both.any():
            copy, slot = (int(x) for x in np.argwhere(both)[0])
            raise InvariantViolation(f"INV-4: {name} copy {copy} slot {slot} is WRITABLE and COW")
        writable = (gpt.state & (MAPPED | WRITABLE)) == (MAPPED | WRITABLE)
        frames = gpt.gfn[writable]
        pending = frames[mem.forks[frames] > 0]
        if pending.size:
            raise InvariantViolation(f"{name}: frame {int(pending[0])} has "
                                     f"{int(mem.forks[pending[0]])} forks pending but is writable")
    if np.any(mem.forks < 0):
        raise InvariantViolation("INV-5: a pending-fork counter is negative")


def check_frames_conserved(kernel: GuestKernel) -> None:
    """Frames allocated = frames mapped + page tables + page cache; plus free = all user
    frames.  Every user page is mapped by some live copy, every mapped frame is allocated,
    and every frame with forks pending is mapped by at least forks + 1 processes' copies."""
    mem: ClusterMem = kernel.mem  # type: ignore[assignment]
    mapped_by = np.zeros(mem.nframes, dtype=np.int64)
    processes_mapping = np.zeros(mem.nframes, dtype=np.int64)
    pt2 = np.zeros(mem.nframes, dtype=np.bool_)
    for _name, gpt in _live(kernel):
        frames = gpt.gfn[(gpt.state & MAPPED) != 0]
        np.add.at(mapped_by, frames, 1)
        np.add.at(processes_mapping, np.unique(frames), 1)
        pt2[gpt.pt2[gpt.pt2 >= 0]] = True
    kinds = mem.kind
    if np.any(kinds[mapped_by > 0] == FREE):
        frame = int(np.nonzero((mapped_by > 0) & (kinds == FREE))[0][0])
        raise InvariantViolation(f"frame {frame} is mapped but free")
    orphans = (kinds == ANON) & (mapped_by == 0)
    if orphans.any():
        raise InvariantViolation(f"frame {int(np.argmax(orphans))} is allocated but mapped nowhere")
    tables = kinds == PAGETABLE
    if np.any(tables != pt2):
        frame = int(np.argmax(tables != pt2))
        raise InvariantViolation(f"frame {frame}: page-table kind and PT2 use disagree")
    user = (kinds == ANON) | (kinds == PAGECACHE) | tables | (kinds == FREE)
    counted = int(np.count_nonzero(kinds == ANON) + np.count_nonzero(kinds == PAGECACHE)
                  + np.count_nonzero(tables) + mem.free_frames)
    if counted != int(np.count_nonzero(user)):
        raise InvariantViolation("frames allocated + free differ from the user frames")
    shared = mem.forks > 0
    if np.any(processes_mapping[shared] < mem.forks[shared] + 1):
        frame = int(np.nonzero(shared & (processes_mapping < mem.forks + 1))[0][0])
        raise InvariantViolation(f"frame {frame} has {int(mem.forks[frame])} forks pending but "
                                 f"only {int(processes_mapping[frame])} processes map it")


def check_private_pages_local(name: str, gpt: ProcessGpt, bank: int, forked: bool) -> None:
    """INV-6 and the placement of ``vmm_page_allocate``: a private page (CODE; STACK unless the
    process is a fork child, whose stack starts as a copy of its parent's) mapped in copy ``c``
    lies in cluster ``c``'s bank."""
    private = np.isin(gpt.vtype, (CODE,) if forked else PRIVATE_TYPES)
    for copy in range(gpt.n):
        mapped = ((gpt.state[copy] & MAPPED) != 0) & private
        frames = gpt.gfn[copy, mapped]
        far = frames[frames // bank != copy]
        if far.size:
            raise InvariantViolation(f"{name}: private page in frame {int(far[0])} mapped in "
                                     f"copy {copy} lies in another cluster's bank")


def check_all(kernel: GuestKernel) -> None:
    """Every invariant (docs/clusters.md) that holds at any event boundary, for a kernel built
    with the cluster VMM (the flat VMM checks its reference counts itself:
    :meth:`pfsim.guest.flat_vmm.FlatVmm.check_invariants`; ``kernel.vmm.check_invariants()``
    runs the right checks for either)."""
    now = kernel.sim.now
    mem: ClusterMem = kernel.mem  # type: ignore[assignment]
    for process in kernel.processes:
        if process.alive and process.vmm is not None:
            check_copies_match_reference(process.name, process.vmm, now)
            check_private_pages_local(process.name, process.vmm, mem.bank,
                                      process.parent is not None)
    check_cow_never_writable(kernel)
    check_frames_conserved(kernel)
    mem.check()
