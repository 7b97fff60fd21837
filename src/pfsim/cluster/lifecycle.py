"""fork, munmap and exec on ALMOS-MKH page-table copies (trunk/kernel/kern/process.c, mm/vmm.c).

* :func:`almos_fork` follows ``process_make_fork``: the child's owner and reference
  cluster Y is chosen (``place_fork`` or the DQDT); ``vmm_fork_copy`` registers the parent's
  reference vsegs except stacks in the child's VSL and copies the mapped entries of every
  type but CODE (FILE without COW), each copied page gaining one pending fork;
  ``thread_user_fork`` gives the child a copy of the forking thread's stack, COW in both;
  ``vmm_set_cow`` makes every writable DATA/ANON/REMOTE page COW in every parent copy.
* :func:`almos_munmap` is ``vmm_global_delete_vseg``: the vseg leaves every copy, the pages
  are released by the rules of ``vmm_remove_vseg`` (public pages by the reference only).
* :func:`almos_exec` resets the address space to empty code and data vsegs (``process_make_exec``,
  ``vmm_user_reset``).

Each returns the CPU time charged to the calling thread (ns).  RPCs (PROCESS_MAKE_FORK,
VMM_SET_COW, VMM_REMOVE_VSEG) are counted on the calling thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.cluster.costs import K_FORK, K_FORK_PAGE, K_HOP, K_PTE_OP, K_REMOTE_OP, K_RPC
from pfsim.cluster.gpt import ATTR_MASK, COW, MAPPED, WRITABLE, ProcessGpt
from pfsim.cluster.memory import PAGETABLE
from pfsim.cluster.release import release_copy, release_entries, release_vseg
from pfsim.cluster.topology import ANON, CODE, DATA, FILE, REMOTE, STACK, TYPE_CODES, remote_cost
from pfsim.guest.process import Process
from pfsim.machine.frames import PAGECACHE

if TYPE_CHECKING:
    from pfsim.cluster.vmm import ClusterVmm
    from pfsim.guest.executor import TaskExec


def _rc(vmm: ClusterVmm, base: int, a: int, b: int) -> int:
    distance = int(vmm.topology.distance[a, b])
    return remote_cost(int(vmm.costs[base]), int(vmm.costs[K_HOP]), distance)


def dqdt_cluster(vmm: ClusterVmm) -> int:
    """The cluster with the fewest live threads (lowest index on ties)."""
    loads = [sum(vmm.load[cpu] for cpu in vmm.topology.vcpus_of(c)) for c in range(vmm.topology.n)]
    return min(range(vmm.topology.n), key=lambda c: (loads[c], c))


def _ensure_pt2(vmm: ClusterVmm, gpt: ProcessGpt, copy: int, slots: np.ndarray) -> bool:
    """Allocate the PT2s ``slots`` need in ``copy`` (in the copy's bank); False if short."""
    regions = gpt.in_address_order(np.unique(gpt.region[slots]))
    missing = [int(r) for r in regions if gpt.pt2[copy, r] < 0]
    if len(missing) > vmm.mem.nfree2d[copy]:
        return False
    for region in missing:
        gpt.pt2[copy, region] = vmm.mem.alloc_in(copy, PAGETABLE)
    return True


def _copy_entries(vmm: ClusterVmm, src: ProcessGpt, src_copy: int, dst: ProcessGpt, dst_copy: int,
                  slots: np.ndarray, cow: bool, t: int) -> None:
    """``hal_gpt_pte_copy`` of mapped ``slots``: COW and not writable when ``cow`` and the
    source is writable (or already COW); every COW-copied page gains a pending fork."""
    mem = vmm.mem
    for slot in slots.tolist():
        attr = int(src.state[src_copy, slot]) & ATTR_MASK
        frame = int(src.gfn[src_copy, slot])
        if cow:
            if attr & (WRITABLE | COW):
                attr = (attr | COW) & ~WRITABLE
            mem.forks[frame] += 1
        elif mem.kind[frame] == PAGECACHE:
            mem.get(frame)
        dst.state[dst_copy, slot] = attr
        dst.gfn[dst_copy, slot] = frame
        dst.vis[dst_copy, slot] = t


def _set_cow(gpt: ProcessGpt, copy: int, slots: np.ndarray, t: int) -> int:
    """``hal_gpt_set_cow``: COW set and WRITABLE cleared on every mapped entry; returns how
    many entries were rewritten."""
    mapped = slots[(gpt.state[copy, slots] & MAPPED) != 0]
    gpt.state[copy, mapped] = (gpt.state[copy, mapped] | COW) & ~np.uint8(WRITABLE)
    gpt.vis[copy, mapped] = np.maximum(gpt.vis[copy, mapped], t)
    return int(mapped.size)


def almos_fork(vmm: ClusterVmm, cpu: int, texec: TaskExec, child: Process, place: int | None,
               t: int) -> int:
    """``process_make_fork`` of ``texec``'s process into ``child``; -1 when the child's
    cluster has no frame left for its page tables (the fork fails)."""
    parent = texec.process
    pg: ProcessGpt = parent.vmm
    here = vmm.topology.cluster_of(cpu)
    ref = pg.ref
    target = place if place is not None else dqdt_cluster(vmm)
    cg = ProcessGpt(child.mm, vmm.topology, target)
    cg.vcxy[:] = pg.vcxy  # anon/remote placement is intrinsic to the vseg (vseg_init_from_ref)
    cg.mapper_frame[:] = pg.mapper_frame
    child.mm.gfn[:] = -1
    child.mm.state[:] = 0
    child.mm.rss = 0
    counters = texec.counters
    costs = vmm.costs
    cost = 0
    if target != here:  # RPC_PROCESS_MAKE_FORK
        cost += _rc(vmm, K_RPC, here, target)
        counters.rpcs += 1
    # what the child inherits: public vsegs of the parent's reference VSL, and this stack
    inherited: list[tuple[int, np.ndarray, int, bool]] = []  # (vseg, slots, source copy, cow)
    for v, vma in enumerate(pg.vsegs):
        typ = TYPE_CODES[vma.type]
        if not pg.vsl[ref, v] or typ == STACK:
            continue
        slots = np.zeros(0, dtype=np.int64) if typ == CODE else pg.mapped_slots(ref, v)
        inherited.append((v, slots, ref, typ != FILE))
    stack_v = -1
    if texec.stack is not None:
        stack_v = pg.vseg_index(texec.stack.name)
        inherited.append((stack_v, pg.mapped_slots(here, stack_v), here, True))
    every = np.concatenate([slots for _, slots, _, _ in inherited]) if inherited else np.zeros(0)
    if every.size and not _ensure_pt2(vmm, cg, target, every.astype(np.int64)):
        return -1
    for v, slots, source, cow in inherited:
        cg.vsl[target, v] = 1
        _copy_entries(vmm, pg, source, cg, target, slots, cow, t)
        cost += slots.size * (int(costs[K_FORK_PAGE]) + _rc(vmm, K_REMOTE_OP, target, source))
    cg.copy_exists[target] = True
    child.vmm = cg
    child.cluster = target
    # thread_user_fork: the parent's local stack entries become COW too
    if stack_v >= 0:
        rewritten = _set_cow(pg, here, pg.slots(stack_v), t)
        cost += rewritten * (int(costs[K_PTE_OP]) + _rc(vmm, K_REMOTE_OP, target, here))
    # vmm_set_cow(parent reference): every copy, every writable public vseg
    if ref != target:  # RPC_VMM_SET_COW
        cost += _rc(vmm, K_RPC, target, ref)
        counters.rpcs += 1
    for v, vma in enumerate(pg.vsegs):
        public = TYPE_CODES[vma.type] in (DATA, ANON, REMOTE)
        if not public or not vma.writable or not pg.vsl[ref, v]:
            continue
        slots = pg.slots(v)
        for copy in range(pg.n):
            if pg.copy_exists[copy]:
                rewritten = _set_cow(pg, copy, slots, t)
                cost += rewritten * (int(costs[K_PTE_OP]) + _rc(vmm, K_REMOTE_OP, ref, copy))
    # the child's main thread lives in the child's cluster, with its stack registered there
    vmm.place_thread(child.threads[0], target)
    return int(costs[K_FORK]) + cost


def almos_munmap(vmm: ClusterVmm, cpu: int, texec: TaskExec, name: str) -> int:
    """``vmm_global_delete_vseg`` of vseg ``name``: every copy, pages released by the rules."""
    gpt: ProcessGpt = texec.process.vmm
    here = vmm.topology.cluster_of(cpu)
    v = gpt.vseg_index(name)
    cost = 0
    for copy in range(gpt.n):
        if not gpt.copy_exists[copy]:
            continue
        entries = gpt.mapped_slots(copy, v).size
        if copy != here:  # RPC_VMM_REMOVE_VSEG
            cost += _rc(vmm, K_RPC, here, copy)
            texec.counters.rpcs += 1
        cost += entries * int(vmm.costs[K_PTE_OP])
        release_vseg(vmm, gpt, copy, v)
        gpt.vsl[copy, v] = 0
    return cost


def almos_exec(vmm: ClusterVmm, cpu: int, texec: TaskExec) -> int:
    """exec(): the copies of clusters without the caller are destroyed; the reference and
    the caller's copy are emptied; code and data are registered afresh in the reference,
    the caller's stack in its cluster (nothing mapped)."""
    gpt: ProcessGpt = texec.process.vmm
    here = vmm.topology.cluster_of(cpu)
    ref = gpt.ref
    for task in texec.process.threads:
        if task is not texec.task:
            vmm.unplace(task)
    cost = 0
    for copy in range(gpt.n):
        if not gpt.copy_exists[copy]:
            continue
        cost += gpt.mapped_slots(copy).size * int(vmm.costs[K_PTE_OP])
        if copy in (ref, here):
            release_entries(vmm, gpt, copy, gpt.mapped_slots(copy))
            gpt.vsl[copy, :] = 0
        else:
            release_copy(vmm, gpt, copy)
            gpt.copy_exists[copy] = False
    for v, vma in enumerate(gpt.vsegs):
        if vma.type in ("code", "data"):
            gpt.vsl[ref, v] = 1
    if texec.stack is not None:
        gpt.vsl[here, gpt.vseg_index(texec.stack.name)] = 1
    return cost
