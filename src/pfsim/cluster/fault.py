"""ALMOS-MKH exception handling for the MMU faults of user threads (the Python reference).

:meth:`AlmosFaults.exception` dispatches one refused access as ``hal_mmu_exception`` does
(hal_exception.c): an unmapped entry goes to :meth:`AlmosFaults.page_fault`
(``vmm_handle_page_fault``, its steps in order, docs/clusters.md), a write to a mapped
read-only entry to :meth:`AlmosFaults.cow` (``vmm_handle_cow``), a fetch from a
non-executable page and a user access to a kernel address end in USER_ERROR.  The handler
does not compare the access with the vseg rights (the MMU does): a store to an unmapped code
page is first mapped read-only, then the re-executed store raises the write violation.
Outcomes are NON_FATAL (re-execute), USER_ERROR (the process is terminated) and KERNEL_PANIC
(the faulting core halts).

The compiled loop (:mod:`pfsim.cluster.scan`) resolves the common page faults with the same
steps and costs; this module stays the reference for them and handles everything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pfsim.cluster.costs import (
    K_COPY_FILL,
    K_COW_REUSE,
    K_ENTRY,
    K_FILE_MAP,
    K_HOP,
    K_PT2_ALLOC,
    K_PTE_OP,
    K_REMOTE_OP,
    K_REMOTE_PAGE,
    K_RPC,
    K_SIGNAL,
    K_VSEG_COPY,
    K_VSL_LOOKUP,
    K_ZERO_FILL,
    SW_QUEUELOCK,
    SW_RPC,
)
from pfsim.cluster.gpt import (
    ATTR_MASK,
    COW,
    COW_COPIES,
    COW_REUSES,
    EXECUTABLE,
    FALSE_COST,
    FALSE_NR,
    GLOBAL_COST,
    GLOBAL_NR,
    LOCAL_COST,
    LOCAL_NR,
    MAPPED,
    OLDRO,
    REMOTE_SET,
    WRITABLE,
    ProcessGpt,
)
from pfsim.cluster.locks import (
    HandlerClock,
    held,
    pte_lock,
    pte_release,
    record_hold,
    vsl_read,
    vsl_write,
)
from pfsim.cluster.memory import PAGETABLE
from pfsim.cluster.topology import CODE, DATA, FILE, PRIVATE_TYPES, remote_cost
from pfsim.guest.fault import Access, Action, FaultResult
from pfsim.guest.mm import TASK_SIZE_MAX
from pfsim.guest.pagecache import ReadRequest
from pfsim.machine.frames import ANON, PAGECACHE
from pfsim.machine.trace_records import K_LOCK_WAIT
from pfsim.units import PAGE_SHIFT

if TYPE_CHECKING:
    from pfsim.cluster.vmm import ClusterVmm
    from pfsim.guest.executor import TaskExec

NON_FATAL, USER_ERROR, KERNEL_PANIC = "NON_FATAL", "USER_ERROR", "KERNEL_PANIC"
_FALSE, _LOCAL, _GLOBAL = "false", "local", "global"
_NR = {_FALSE: (FALSE_NR, FALSE_COST), _LOCAL: (LOCAL_NR, LOCAL_COST),
       _GLOBAL: (GLOBAL_NR, GLOBAL_COST)}


class _Outcome:
    """What a handler decided: outcome, fault class, and the I/O to wait for."""

    __slots__ = ("outcome", "kind", "request", "reason")

    def __init__(self, outcome: str, kind: str | None = None, request: ReadRequest | None = None,
                 reason: str = "") -> None:
        self.outcome = outcome
        self.kind = kind
        self.request = request
        self.reason = reason


class AlmosFaults:
    """Exception handling of one VM's ALMOS-MKH VMM.

    Args:
        vmm: the VM's cluster VMM (topology, memory, costs, switches, outcome counts).
    """

    def __init__(self, vmm: ClusterVmm) -> None:
        self.vmm = vmm
        self.kernel = vmm.kernel
        self.mem = vmm.mem
        self.c = vmm.costs
        self.dist = vmm.topology.distance
        self.switches = vmm.config

    def _remote(self, base: int, distance: int) -> int:
        return remote_cost(int(self.c[base]), int(self.c[K_HOP]), distance)

    # ------------------------------------------------------------- dispatch (hal_mmu_exception)

    def exception(self, cpu: int, texec: TaskExec, access: Access, t: int) -> FaultResult:
        """Handle the MMU exception ``access`` raised at time ``t`` on vCPU ``cpu``."""
        local = self.vmm.topology.cluster_of(cpu)
        counters = texec.counters
        counters.pgfault += 1
        recorder = self.kernel.executor.recorder
        on_wait = None
        if recorder.on:
            def on_wait(start: int, end: int, lock: int) -> None:
                recorder.add(start, K_LOCK_WAIT, cpu, texec.task.tid, end=end, aux=lock)
        clock = HandlerClock(t + int(self.c[K_ENTRY]), counters, t, on_wait)
        if access.addr >= TASK_SIZE_MAX:  # PRIVILEGE_VIOLATION: no handler
            outcome = _Outcome(USER_ERROR, reason="privilege violation")
            return self._finish(texec, access, clock, outcome, cpu, t)
        gpt: ProcessGpt = texec.process.vmm
        slot = texec.process.mm.slot_of(access.addr)
        pte = gpt.visible(local, slot, t) if slot >= 0 else 0
        if not pte & MAPPED:
            result = self.page_fault(local, texec, gpt, slot, access.addr >> PAGE_SHIFT, clock)
        elif access.write and not pte & WRITABLE:
            result = self.cow(local, texec, gpt, slot, access.addr >> PAGE_SHIFT, clock)
        elif access.fetch and not pte & EXECUTABLE:
            result = _Outcome(USER_ERROR, reason="fetch from a non-executable page")
        else:
            result = _Outcome(NON_FATAL)  # resolved meanwhile: the access goes through
        return self._finish(texec, access, clock, result, cpu, t, slot)

    def _finish(self, texec: TaskExec, access: Access, clock: HandlerClock, result: _Outcome,
                cpu: int, t: int, slot: int = -1) -> FaultResult:
        counters = texec.counters
        if result.request is not None:  # mapper miss: sleep on the read, then fault again
            texec.tried_slot = slot
            return FaultResult(Action.WAIT_IO, clock.t - t, request=result.request)
        self.vmm.outcomes[result.outcome] += 1
        if result.outcome == NON_FATAL:
            if result.kind is not None or result.reason == "cow":
                if texec.tried_slot == slot and slot >= 0:
                    counters.maj_flt += 1
                else:
                    counters.min_flt += 1
            texec.tried_slot = -1
            return FaultResult(Action.RETRY, clock.t - t)
        texec.tried_slot = -1
        detail: dict[str, Any] = {"outcome": result.outcome, "reason": result.reason,
                                  "address": hex(access.addr), "tid": texec.task.tid, "vcpu": cpu}
        if result.outcome == USER_ERROR and access.user:
            counters.user_errors += 1
            counters.segv += 1
            detail["signal"] = "SIGSEGV"
            return FaultResult(Action.SIGSEGV, clock.t - t + int(self.c[K_SIGNAL]), detail=detail)
        if result.outcome == USER_ERROR and access.fixup:  # a kernel copy: the call fails
            counters.efault += 1
            return FaultResult(Action.EFAULT, clock.t - t, detail=detail)
        counters.kernel_panics += 1
        self.vmm.outcomes[result.outcome] -= 1
        self.vmm.outcomes[KERNEL_PANIC] += 1
        detail["outcome"] = KERNEL_PANIC
        return FaultResult(Action.HALT, clock.t - t, detail=detail)

    # ------------------------------------------------------------------ vmm_get_vseg

    def lookup(self, local: int, gpt: ProcessGpt, v: int, clock: HandlerClock) -> bool:
        """Find vseg ``v`` (-1: no vseg) in the local VSL, copying it from the reference on a
        miss; False when the address is illegal."""
        queuelock = bool(self.c[SW_QUEUELOCK])
        vsl_read(gpt, local, clock, int(self.c[K_VSL_LOOKUP]), queuelock)
        if v >= 0 and gpt.vsl[local, v]:
            return True
        ref = gpt.ref
        if local == ref:
            return False
        distance = int(self.dist[local, ref])
        if self.c[SW_RPC]:  # RPC_VMM_GET_VSEG: the reference's server thread searches
            clock.t += self._remote(K_RPC, distance)
            clock.counters.rpcs += 1
            vsl_read(gpt, ref, clock, int(self.c[K_VSL_LOOKUP]), queuelock)
        else:
            hold = int(self.c[K_VSL_LOOKUP]) + self._remote(K_REMOTE_OP, distance)
            vsl_read(gpt, ref, clock, hold, queuelock)
        if v < 0 or not gpt.vsl[ref, v]:
            return False
        vsl_write(gpt, local, clock, int(self.c[K_VSEG_COPY]))
        gpt.vsl[local, v] = 1
        return True

    # ------------------------------------------------------------------ GPT helpers (hal_gpt.c)

    def _pt2(self, gpt: ProcessGpt, copy: int, slot: int, clock: HandlerClock, local: int) -> bool:
        """``hal_gpt_lock_pte`` step 1: the PT2 of ``slot``'s region in ``copy`` exists, or the
        CAS winner allocates it in the copy's cluster; losers spin until the PTD1 is written."""
        region = int(gpt.region[slot])
        if gpt.pt2[copy, region] >= 0:
            clock.spin_pt2(held(gpt.pt2_acq, gpt.pt2_rel, (copy, region), clock.t))
            return True
        distance = int(self.dist[local, copy])
        start = clock.t
        clock.t += int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP, distance)
        frame = self.mem.alloc_in(copy, PAGETABLE)
        if frame < 0:
            return False
        clock.t += int(self.c[K_PT2_ALLOC]) + self._remote(K_REMOTE_PAGE, distance)
        clock.t += int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP, distance)
        gpt.pt2[copy, region] = frame
        record_hold(gpt.pt2_acq, gpt.pt2_rel, (copy, region), start, clock.t)
        return True

    def _lock(self, gpt: ProcessGpt, copy: int, slot: int, clock: HandlerClock, local: int) -> int:
        """Lock a PTE of ``copy`` (-1 when its PT2 cannot be allocated)."""
        if not self._pt2(gpt, copy, slot, clock, local):
            return -1
        op = int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP, int(self.dist[local, copy]))
        return pte_lock(gpt, copy, slot, clock, op)

    def _unlock(self, gpt: ProcessGpt, copy: int, slot: int, start: int, clock: HandlerClock,
                local: int) -> None:
        op = int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP, int(self.dist[local, copy]))
        pte_release(gpt, copy, slot, start, clock, op)

    def _set(self, gpt: ProcessGpt, copy: int, slot: int, attr: int, frame: int, start: int,
             clock: HandlerClock, local: int) -> None:
        """``hal_gpt_set_pte``: write ppn and attributes (this releases the lock)."""
        if self.mem.kind[frame] == PAGECACHE:
            self.mem.get(frame)  # each copy mapping a mapper page holds a reference
        self._unlock(gpt, copy, slot, start, clock, local)
        gpt.state[copy, slot] = attr
        gpt.gfn[copy, slot] = frame
        gpt.vis[copy, slot] = clock.t
        gpt.raised[copy, slot] = clock.raised

    # ------------------------------------------------------------------ vmm_handle_page_fault

    def page_fault(self, local: int, texec: TaskExec, gpt: ProcessGpt, slot: int, vpn: int,
                   clock: HandlerClock) -> _Outcome:
        """``vmm_handle_page_fault`` steps 1-5 (docs/clusters.md) for ``vpn`` faulting in cluster
        ``local``."""
        start = clock.t
        v = int(gpt.slot_vseg[slot]) if slot >= 0 else -1
        if not self.lookup(local, gpt, v, clock):
            return _Outcome(USER_ERROR, reason="address in no vseg")
        ref = gpt.ref
        a_local = self._lock(gpt, local, slot, clock, local)
        if a_local < 0:
            return self._no_memory(_Outcome(KERNEL_PANIC, reason="PT2 allocation failed"), False)
        if gpt.state[local, slot] & MAPPED:  # step 3: mapped by a thread of this cluster
            self._unlock(gpt, local, slot, a_local, clock, local)
            if gpt.vis[local, slot] > clock.t:  # its mapper ran ahead of us: visible from now
                gpt.vis[local, slot] = clock.t
            return self._count(texec, gpt, local, _FALSE, clock.t - start)
        typ = int(gpt.vtype[slot])
        attr = int(gpt.attr[v])
        if typ in PRIVATE_TYPES or local == ref:  # step 4: the local path
            frame = self.one_ppn(local, texec, gpt, v, slot, vpn, clock)
            if not isinstance(frame, int):
                self._unlock(gpt, local, slot, a_local, clock, local)
                return self._failed(frame)
            self._set(gpt, local, slot, attr, frame, a_local, clock, local)
            return self._count(texec, gpt, local, _LOCAL, clock.t - start)
        # step 5: the reference path
        self._unlock(gpt, local, slot, a_local, clock, local)
        a_ref = self._lock(gpt, ref, slot, clock, local)
        if a_ref < 0:
            return self._no_memory(_Outcome(KERNEL_PANIC, reason="PT2 allocation failed"), False)
        a_local = self._lock(gpt, local, slot, clock, local)
        if gpt.state[ref, slot] & MAPPED:  # 5d: false fault, copy the reference entry
            self._set(gpt, local, slot, int(gpt.state[ref, slot]) & ATTR_MASK,
                      int(gpt.gfn[ref, slot]), a_local, clock, local)
            self._unlock(gpt, ref, slot, a_ref, clock, local)
            return self._count(texec, gpt, local, _FALSE, clock.t - start)
        frame = self.one_ppn(local, texec, gpt, v, slot, vpn, clock)  # 5e: true fault
        if not isinstance(frame, int):
            self._unlock(gpt, local, slot, a_local, clock, local)
            self._unlock(gpt, ref, slot, a_ref, clock, local)
            return self._failed(frame)
        self._set(gpt, ref, slot, attr | REMOTE_SET, frame, a_ref, clock, local)
        self._set(gpt, local, slot, attr, frame, a_local, clock, local)
        return self._count(texec, gpt, local, _GLOBAL, clock.t - start)

    def _count(self, texec: TaskExec, gpt: ProcessGpt, local: int, kind: str,
               cost: int) -> _Outcome:
        nr, cost_index = _NR[kind]
        counters = texec.counters
        setattr(counters, f"{kind}_pgfault_nr", getattr(counters, f"{kind}_pgfault_nr") + 1)
        setattr(counters, f"{kind}_pgfault_cost", getattr(counters, f"{kind}_pgfault_cost") + cost)
        gpt.copy_counters[local, nr] += 1
        gpt.copy_counters[local, cost_index] += cost
        return _Outcome(NON_FATAL, kind)

    def _failed(self, what: ReadRequest | None) -> _Outcome:
        if what is not None:
            return _Outcome(NON_FATAL, request=what)
        return self._no_memory(_Outcome(KERNEL_PANIC, reason="no free page in the target cluster"),
                               False)

    def _no_memory(self, outcome: _Outcome, cow: bool) -> _Outcome:
        """Memory exhaustion: 2020 KERNEL_PANIC, 2018 USER_ERROR; COW per cow_oom_policy."""
        if cow:
            if self.switches.cow_oom_policy == "kill_process":
                outcome.outcome = USER_ERROR
        elif self.switches.oom_rule == "2018":
            outcome.outcome = USER_ERROR
        return outcome

    # ------------------------------------------------ pages (vmm_page_allocate, vmm_get_one_ppn)

    def target(self, gpt: ProcessGpt, v: int, typ: int, vpn: int, local: int) -> int:
        """``vmm_page_allocate``'s cluster for page ``vpn`` of vseg ``v``."""
        if typ in PRIVATE_TYPES:
            return local
        if typ == DATA:
            index = self.vmm.topology.distrib_index(vpn)
            if index < self.vmm.topology.n:
                return index
            return int(self.vmm.rng.integers(self.vmm.topology.n))  # empty cluster: random
        return int(gpt.vcxy[v])

    def one_ppn(self, local: int, texec: TaskExec, gpt: ProcessGpt, v: int, slot: int, vpn: int,
                clock: HandlerClock) -> int | ReadRequest | None:
        """``vmm_get_one_ppn``: the page to map (allocated and initialised, or the file
        mapper's); a ReadRequest when the mapper must first read it from disk; None when no
        page is free in the target cluster."""
        vma = gpt.vsegs[v]
        typ = int(gpt.vtype[slot])
        source = -1
        if vma.file is not None and (typ == FILE or typ in (CODE, DATA)):
            page = vma.file_page(vpn << PAGE_SHIFT)
            if page < vma.file.npages:
                if not vma.file.cached(page):
                    request = vma.file.pending.get(page)
                    if request is None:
                        request = self.kernel.start_read(texec, vma.file, page, self.vmm.ra_pages)
                    return request
                source = int(vma.file.frame[page])
                if typ != FILE:
                    gpt.mapper_frame[slot] = source
        if typ == FILE:
            clock.t += int(self.c[K_FILE_MAP]) + self._remote(
                K_REMOTE_OP, int(self.dist[local, self.mem.bank_of(source)]))
            return source
        where = self.target(gpt, v, typ, vpn, local)
        frame = self.mem.alloc_in(where, ANON)
        if frame < 0:
            return None
        distance = int(self.dist[local, where])
        if self.c[SW_RPC] and distance:  # RPC_PMEM_GET_PAGES
            clock.t += self._remote(K_RPC, distance)
            clock.counters.rpcs += 1
        if source >= 0:
            source_distance = int(self.dist[local, self.mem.bank_of(source)])
            clock.t += (int(self.c[K_COPY_FILL]) + self._remote(K_REMOTE_PAGE, distance)
                        + self._remote(K_REMOTE_PAGE, source_distance))
        else:
            clock.t += int(self.c[K_ZERO_FILL]) + self._remote(K_REMOTE_PAGE, distance)
        gpt.placement[v, where] += 1
        return frame

    # ------------------------------------------------------------------ vmm_handle_cow

    def cow(self, local: int, texec: TaskExec, gpt: ProcessGpt, slot: int, vpn: int,
            clock: HandlerClock) -> _Outcome:
        """A write to a mapped, non-writable entry: copy-on-write or a genuine error."""
        v = int(gpt.slot_vseg[slot])
        if not self.lookup(local, gpt, v, clock):
            return _Outcome(USER_ERROR, reason="address in no vseg")
        typ = int(gpt.vtype[slot])
        private = typ in PRIVATE_TYPES
        copy = local if private else gpt.ref
        start = self._lock(gpt, copy, slot, clock, local)
        if start < 0:
            return self._no_memory(_Outcome(KERNEL_PANIC, reason="PT2 allocation failed"), True)
        old = int(gpt.state[copy, slot])
        if not (old & MAPPED and old & COW):  # step 4: a genuine write to a read-only page...
            self._unlock(gpt, copy, slot, start, clock, local)
            if old & MAPPED and old & WRITABLE:  # ...or a COW race's loser (ALMOS-MKH scenario 23)
                self.vmm.cow_races += 1
                if not self.switches.cow_race_is_user_error:
                    return _Outcome(NON_FATAL, reason="cow")
                return _Outcome(USER_ERROR, reason="write to a page whose COW another thread "
                                "resolved (cow_race_is_user_error)")
            return _Outcome(USER_ERROR, reason="write to a read-only page")
        page = int(gpt.gfn[copy, slot])
        page_bank = self.mem.bank_of(page)
        clock.t += int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP,
                                                        int(self.dist[local, page_bank]))
        counters = texec.counters
        if self.mem.forks[page] > 0:  # step 5: forks pending, allocate and copy
            where = self.target(gpt, v, typ, vpn, local)
            frame = self.mem.alloc_in(where, ANON)
            if frame < 0:
                self._unlock(gpt, copy, slot, start, clock, local)
                outcome = _Outcome(KERNEL_PANIC, reason="no page for a COW copy")
                return self._no_memory(outcome, True)
            self.mem.forks[page] -= 1
            distance = int(self.dist[local, where])
            if self.c[SW_RPC] and distance:
                clock.t += self._remote(K_RPC, distance)
                counters.rpcs += 1
            clock.t += (int(self.c[K_COPY_FILL]) + self._remote(K_REMOTE_PAGE, distance)
                        + self._remote(K_REMOTE_PAGE, int(self.dist[local, page_bank])))
            gpt.placement[v, where] += 1
            counters.cow_copies += 1
            gpt.copy_counters[local, COW_COPIES] += 1
        else:  # no fork pending: the last sharer regains write access
            frame = page
            clock.t += int(self.c[K_COW_REUSE])
            counters.cow_reuses += 1
            gpt.copy_counters[local, COW_REUSES] += 1
        new_attr = (old | WRITABLE) & ~COW & ATTR_MASK
        if private:  # step 7: the local GPT only
            self._unlock(gpt, copy, slot, start, clock, local)
            gpt.state[copy, slot] = new_attr | OLDRO
            gpt.gfn[copy, slot] = frame
            gpt.vis[copy, slot] = clock.t
        else:
            self.global_update(local, gpt, slot, new_attr, frame, start, clock)
        return _Outcome(NON_FATAL, reason="cow")

    def global_update(self, local: int, gpt: ProcessGpt, slot: int, attr: int, frame: int,
                      ref_start: int, clock: HandlerClock) -> None:
        """``vmm_global_update_pte``: rewrite the entry in every copy that maps it (or every
        copy with a PT2 for it, with cow_update_unmapped_copies); the reference entry's lock
        is released by its rewrite.  Every copy sees the new entry at the same time."""
        ref = gpt.ref
        writer = local
        if self.c[SW_RPC] and local != ref:  # RPC_VMM_GLOBAL_UPDATE_PTE: the reference writes
            clock.t += self._remote(K_RPC, int(self.dist[local, ref]))
            clock.counters.rpcs += 1
            writer = ref
        region = int(gpt.region[slot])
        everywhere = self.switches.cow_update_unmapped_copies
        copies = [ref] + [c for c in range(gpt.n) if c != ref and gpt.copy_exists[c]]
        for c in copies:
            mapped = bool(gpt.state[c, slot] & MAPPED)
            if not mapped and not (everywhere and gpt.pt2[c, region] >= 0):
                continue
            clock.t += int(self.c[K_PTE_OP]) + self._remote(K_REMOTE_OP, int(self.dist[writer, c]))
            old_frame = int(gpt.gfn[c, slot])
            if mapped and old_frame >= 0 and self.mem.kind[old_frame] == PAGECACHE:
                self.mem.put(old_frame)
            flags = (OLDRO if mapped else 0) | (REMOTE_SET if c != writer else 0)
            gpt.state[c, slot] = attr | flags
            gpt.gfn[c, slot] = frame
        for c in copies:
            if gpt.gfn[c, slot] == frame and gpt.state[c, slot] & MAPPED:
                gpt.vis[c, slot] = clock.t
        record_hold(gpt.lock_acq, gpt.lock_rel, (ref, slot), ref_start, clock.t)
