"""Compiled access loop of the ALMOS-MKH cluster VMM (the hot path of clustered runs).

:func:`run_cluster_accesses` runs one thread's access stream against the page-table copy of
its cluster (row ``local`` of the process's :class:`~pfsim.cluster.gpt.ProcessGpt` arrays):

* every access to a page held by another cluster's bank costs ``remote_access`` (plus
  ``hop`` per extra hop) on top of ``think`` and is counted as a remote access;
* with ``fast``, the common page faults are resolved here with exactly the steps, locks and
  costs of :meth:`pfsim.cluster.fault.AlmosFaults.page_fault` (the reference): false faults
  (step 3 and 5d), local faults (private vsegs, or the reference cluster) and global faults,
  for zero-filled pages and for code/data pages whose .elf mapper page is cached, including
  the PT2 creation and the lock waits.

Everything else stops the loop at that access for the Python path: a vseg not yet in the
local vseg list, a write to a read-only or COW entry, a fetch from a non-executable page,
FILE vsegs, a mapper miss, a DATA page for an empty mesh position, a bank without the frames
the fault needs, an access that would still be refused after the fault (the second exception:
the fault handler does not check the vseg rights, the MMU does).  Such checks are made before
anything changes, so stopping never undoes work.

Accesses slower than ``think`` (faults, remote accesses) are logged (index, completion time)
so a segment cut short can tell how many accesses were done by a given time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.cluster.costs import (
    K_COPY_FILL,
    K_ENTRY,
    K_HOP,
    K_PT2_ALLOC,
    K_PTE_OP,
    K_REMOTE_ACCESS,
    K_REMOTE_OP,
    K_REMOTE_PAGE,
    K_RPC,
    K_VSL_LOOKUP,
    K_ZERO_FILL,
    SW_QUEUELOCK,
    SW_RPC,
)
from pfsim.cluster.gpt import (
    ATTR_MASK,
    COW,
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
)
from pfsim.cluster.memory import PAGETABLE
from pfsim.cluster.topology import CODE, DATA, FILE, STACK
from pfsim.machine.latency import MINOR
from pfsim.machine.latency import record as record_latency
from pfsim.machine.frames import ANON
from pfsim.machine.scan import OUT_NLOG, OUT_REASON, OUT_TIME, STOP_FAULT, STOP_LIMIT

# per-thread counter deltas (the ``tout`` array)
(T_MIN_FLT, T_FALSE_NR, T_LOCAL_NR, T_GLOBAL_NR, T_FALSE_COST, T_LOCAL_COST, T_GLOBAL_COST,
 T_REMOTE, T_RPCS, T_PTE_WAITS, T_PTE_WAIT_NS, T_PT2_WAITS, T_RW_WAITS, T_RW_WAIT_NS,
 T_ALLOCATED, T_SPANS, T_NWAITS) = range(17)
T_SIZE = 17
# the scalar arguments (the ``params`` array)
(P_START, P_STOP, P_T0, P_THINK, P_LIMIT, P_FETCH, P_FAST, P_LOCAL, P_REF, P_BANK, P_MESH,
 P_MODULO, P_LOOKAHEAD, P_SPENT) = range(14)
P_SIZE = 14


@njit(cache=True, nogil=True)
def _rc(costs: np.ndarray, base: int, distance: int) -> int:
    if distance == 0:
        return 0
    return costs[base] + costs[K_HOP] * (distance - 1)


@njit(cache=True, nogil=True)
def _alloc(bank: int, kind_value: int, kind: np.ndarray, refcount: np.ndarray, forks: np.ndarray,
           free2d: np.ndarray, nfree2d: np.ndarray, by_bank: np.ndarray, tout: np.ndarray) -> int:
    n = nfree2d[bank] - 1
    nfree2d[bank] = n
    frame = free2d[bank, n]
    kind[frame] = kind_value
    refcount[frame] = 1
    forks[frame] = 0
    by_bank[bank] += 1
    tout[T_ALLOCATED] += 1
    return frame


@njit(cache=True, nogil=True)
def _new_page(target: int, source: int, local: int, v: int, rpc: bool, bank_size: int,
              dist: np.ndarray, costs: np.ndarray, kind: np.ndarray, refcount: np.ndarray,
              forks: np.ndarray, free2d: np.ndarray, nfree2d: np.ndarray, by_bank: np.ndarray,
              placement: np.ndarray, tout: np.ndarray) -> tuple[int, int]:
    """Allocate vseg ``v``'s new page in bank ``target`` for a fault in cluster ``local`` and
    fill it (copied from frame ``source``, or zeroed when ``source < 0``).

    Returns:
        (frame, cost in ns): the RPC if remote operations go through RPCs, plus the fill with
        its remote-page costs.
    """
    frame = _alloc(target, ANON, kind, refcount, forks, free2d, nfree2d, by_bank, tout)
    distance = dist[local, target]
    cost = 0
    if rpc and distance != 0:
        cost += _rc(costs, K_RPC, distance)
        tout[T_RPCS] += 1
    if source >= 0:
        cost += (costs[K_COPY_FILL] + _rc(costs, K_REMOTE_PAGE, distance)
                 + _rc(costs, K_REMOTE_PAGE, dist[local, source // bank_size]))
    else:
        cost += costs[K_ZERO_FILL] + _rc(costs, K_REMOTE_PAGE, distance)
    placement[v, target] += 1
    return frame, cost


@njit(cache=True, nogil=True)
def _spin(t: int, acq: int, rel: int, tout: np.ndarray, count_index: int,
          waits: np.ndarray) -> int:
    """Spin until ``rel`` when the last hold ends after ``t`` (locks go in handler order)."""
    if rel > t:
        tout[count_index] += 1
        tout[T_PTE_WAIT_NS if count_index != T_RW_WAITS else T_RW_WAIT_NS] += rel - t
        _log_wait(waits, tout, t, rel, count_index)
        return rel
    return t


@njit(cache=True, nogil=True)
def _log_wait(waits: np.ndarray, tout: np.ndarray, t: int, until: int, count_index: int) -> None:
    """Note the wait ``[t, until)`` in ``waits`` (rows: start, end, T_* count index) while it
    has room (none when the run is not traced); ``tout[T_NWAITS]`` counts them all."""
    n = tout[T_NWAITS]
    if n < waits.shape[1]:
        waits[0, n] = t
        waits[1, n] = until
        waits[2, n] = count_index
    tout[T_NWAITS] = n + 1


@njit(cache=True, nogil=True)
def run_cluster_accesses(slots: np.ndarray, writes: np.ndarray, vpns: np.ndarray,
                         params: np.ndarray, state: np.ndarray, gfn: np.ndarray,
                         times: np.ndarray, vsl: np.ndarray, vsl_times: np.ndarray,
                         slot_info: np.ndarray, vtype: np.ndarray, vseg_info: np.ndarray,
                         pt2: np.ndarray, pt2_times: np.ndarray, copy_counters: np.ndarray,
                         placement: np.ndarray, kind: np.ndarray, rf: np.ndarray,
                         free2d: np.ndarray, bank_counts: np.ndarray, dist: np.ndarray,
                         costs: np.ndarray, out: np.ndarray, log: np.ndarray, spans: np.ndarray,
                         waits: np.ndarray, tout: np.ndarray, hist: np.ndarray) -> int:
    """Run accesses ``[start, stop)`` of a thread in cluster ``local`` from time ``t0``.

    Args:
        slots, writes, vpns: the stream (slot per access, -1 outside every vseg; store
            flags; page numbers).
        params: the scalars, indexed by P_*: ``start``/``stop`` (access indices), ``t0``,
            ``think`` (CPU time of one local access, ns), ``t_limit`` (no access starts that
            would end after it by ``think``), ``fetch`` (instruction fetches), ``fast``
            (resolve the common page faults here), ``local``/``ref`` (the thread's cluster
            and the process's reference), ``bank`` (frames per bank), ``mesh``/``modulo``
            (DATA placement index), ``lookahead`` (faults later than t0 + lookahead end the
            segment: the next one resolves them), ``spent`` (ns of access ``start``'s think
            run in earlier slices: see :func:`pfsim.machine.scan.run_accesses`).
        state ... placement: the process's ProcessGpt arrays (``kernel_args``; ``times``
            rows: vis, raised, lock_acq, lock_rel; ``vsl_times``: VSL writer acquire and
            release, readers' release; ``slot_info``: vseg, PT2 region, mapper frame;
            ``vseg_info``: attr, vcxy; ``pt2_times``: PT2 creation acquire and release).
        kind, rf, free2d, bank_counts: the ClusterMem arrays (``rf``: refcount, forks;
            ``bank_counts``: free frames, frames ever allocated).
        dist: hops between clusters; costs: the cost vector of :mod:`pfsim.cluster.costs`.
        out: OUT_TIME, OUT_NLOG, OUT_REASON of the guest scan; ``log``: the fault log (rows
            LOG_INDEX and LOG_DONE of :mod:`pfsim.machine.scan`) of the slow accesses;
        ``spans``: [2, n] (raise, end) times of the faults resolved here (``tout[T_SPANS]``);
        ``waits``: [3, n] the lock waits (start, end, T_PTE_WAITS / T_PT2_WAITS / T_RW_WAITS;
            ``tout[T_NWAITS]`` of them, those past ``n`` not noted; n = 0 when not traced);
        tout: the thread's counter deltas (T_*).

    Returns:
        the index of the first access not done (a fault for Python if ``out[OUT_REASON]``
        is STOP_FAULT).
    """
    start, stop, t0, think, t_limit = (params[P_START], params[P_STOP], params[P_T0],
                                       params[P_THINK], params[P_LIMIT])
    fetch, fast = params[P_FETCH] != 0, params[P_FAST] != 0
    local, ref, bank_size = params[P_LOCAL], params[P_REF], params[P_BANK]
    mesh_positions, modulo, lookahead = params[P_MESH], params[P_MODULO] != 0, params[P_LOOKAHEAD]
    vis, raised, lock_acq, lock_rel = times[0], times[1], times[2], times[3]
    vsl_wr_acq, vsl_wr_rel, vsl_rd_rel = vsl_times[0], vsl_times[1], vsl_times[2]
    slot_vseg, region, mapper_frame = slot_info[0], slot_info[1], slot_info[2]
    attr, vcxy = vseg_info[0], vseg_info[1]
    pt2_acq, pt2_rel = pt2_times[0], pt2_times[1]
    refcount, forks = rf[0], rf[1]
    nfree2d, by_bank = bank_counts[0], bank_counts[1]
    n_clusters = dist.shape[0]
    t = t0
    nlog = 0
    cap = log.shape[1]
    reason = STOP_LIMIT
    pte_op = costs[K_PTE_OP]
    queuelock = costs[SW_QUEUELOCK] != 0
    rpc = costs[SW_RPC] != 0
    i = start
    th = think - params[P_SPENT]  # this access's think still to run
    while i < stop:
        if t + th > t_limit:
            break
        s = slots[i]
        if s < 0:
            reason = STOP_FAULT
            break
        store = writes[i]
        need = MAPPED | (WRITABLE if store else 0) | (EXECUTABLE if fetch else 0)
        st = state[local, s]
        if vis[local, s] <= t:
            pte = st & ATTR_MASK
        elif st & OLDRO:
            pte = (st & (MAPPED | EXECUTABLE)) | COW
        elif st & MAPPED and (st & REMOTE_SET) == 0 and t < raised[local, s]:
            pte = st & ATTR_MASK  # run-ahead (ProcessGpt.visible)
        else:
            pte = 0
        slow = False
        if (pte & need) != need:
            reason = STOP_FAULT
            if not fast or nlog >= cap or pte & MAPPED:
                break
            if t > t0 + lookahead:
                reason = STOP_LIMIT  # not a fault for Python: the next segment resolves it
                break
            v = slot_vseg[s]
            if vsl[local, v] == 0:
                break
            typ = vtype[s]
            if typ == FILE:
                break
            private = typ == CODE or typ == STACK  # noqa: SIM109 - two int tests in numba
            # decide the path now (handlers see final values): step 3, 4, 5d or 5e
            local_mapped = (state[local, s] & MAPPED) != 0
            ref_mapped = (state[ref, s] & MAPPED) != 0
            allocates = False
            if local_mapped:
                final = state[local, s] & ATTR_MASK
            elif private or local == ref:
                final = attr[v]
                allocates = True
            elif ref_mapped:
                final = state[ref, s] & ATTR_MASK
            else:
                final = attr[v]
                allocates = True
            if (final & need) != need:
                break  # the re-executed access would fault again: Python does both
            target = local
            source = -1
            if allocates:
                if typ == CODE or typ == DATA:  # noqa: SIM109 - two int tests in numba
                    source = mapper_frame[s]
                    if source < 0:
                        break
                if typ == DATA:
                    target = vpns[i] % n_clusters if modulo else vpns[i] & (mesh_positions - 1)
                    if target >= n_clusters:
                        break
                elif not private:
                    target = vcxy[v]
            # frames the path takes, per bank: PT2 of the local copy, of the reference, the page
            r = region[s]
            need_local_pt2 = pt2[local, r] < 0
            need_ref_pt2 = (not local_mapped and not private and local != ref and pt2[ref, r] < 0)
            take_local = (1 if need_local_pt2 else 0) + (1 if allocates and target == local else 0)
            if take_local > nfree2d[local]:
                break
            if need_ref_pt2:
                take_ref = 1 + (1 if allocates and target == ref else 0)
                if take_ref > nfree2d[ref]:
                    break
            elsewhere = target != local and (not need_ref_pt2 or target != ref)
            if allocates and elsewhere and nfree2d[target] < 1:
                break
            # ---- the path, as AlmosFaults.page_fault
            tau = t + costs[K_ENTRY]
            begin = tau
            if queuelock:
                busy = tau
                if vsl_wr_rel[local] > tau:
                    busy = vsl_wr_rel[local]
                if vsl_rd_rel[local] > busy:
                    busy = vsl_rd_rel[local]
                if busy > tau:
                    tout[T_RW_WAITS] += 1
                    tout[T_RW_WAIT_NS] += busy - tau
                    _log_wait(waits, tout, tau, busy, T_RW_WAITS)
                    tau = busy
                hold = tau
                tau += costs[K_VSL_LOOKUP]
                if tau > vsl_wr_rel[local]:
                    vsl_wr_acq[local] = hold
                    vsl_wr_rel[local] = tau
            else:
                tau = _spin(tau, vsl_wr_acq[local], vsl_wr_rel[local], tout, T_RW_WAITS, waits)
                tau += costs[K_VSL_LOOKUP]
                if tau > vsl_rd_rel[local]:
                    vsl_rd_rel[local] = tau
            # lock the local PTE (creating the local PT2 if needed)
            if need_local_pt2:
                hold = tau
                tau += pte_op
                pt2[local, r] = _alloc(local, PAGETABLE, kind, refcount, forks, free2d, nfree2d,
                                       by_bank, tout)
                tau += costs[K_PT2_ALLOC] + pte_op
                if tau > pt2_rel[local, r]:
                    pt2_acq[local, r] = hold
                    pt2_rel[local, r] = tau
            else:
                tau = _spin(tau, pt2_acq[local, r], pt2_rel[local, r], tout, T_PT2_WAITS, waits)
            tau = _spin(tau, lock_acq[local, s], lock_rel[local, s], tout, T_PTE_WAITS, waits)
            a1 = tau
            tau += pte_op
            if local_mapped:  # step 3
                tau += pte_op
                if tau > lock_rel[local, s]:
                    lock_acq[local, s] = a1
                    lock_rel[local, s] = tau
                if vis[local, s] > tau:
                    vis[local, s] = tau
                counter, cost_counter = FALSE_NR, FALSE_COST
                tcount, tcost = T_FALSE_NR, T_FALSE_COST
            elif private or local == ref:  # step 4
                frame, fill = _new_page(target, source, local, v, rpc, bank_size, dist, costs,
                                        kind, refcount, forks, free2d, nfree2d, by_bank,
                                        placement, tout)
                tau += fill
                tau += pte_op
                state[local, s] = attr[v]
                gfn[local, s] = frame
                vis[local, s] = tau
                raised[local, s] = t
                if tau > lock_rel[local, s]:
                    lock_acq[local, s] = a1
                    lock_rel[local, s] = tau
                counter, cost_counter = LOCAL_NR, LOCAL_COST
                tcount, tcost = T_LOCAL_NR, T_LOCAL_COST
            else:  # step 5
                tau += pte_op
                if tau > lock_rel[local, s]:
                    lock_acq[local, s] = a1
                    lock_rel[local, s] = tau
                d_ref = dist[local, ref]
                remote = pte_op + _rc(costs, K_REMOTE_OP, d_ref)
                if need_ref_pt2:
                    hold = tau
                    tau += remote
                    pt2[ref, r] = _alloc(ref, PAGETABLE, kind, refcount, forks, free2d, nfree2d,
                                         by_bank, tout)
                    tau += costs[K_PT2_ALLOC] + _rc(costs, K_REMOTE_PAGE, d_ref) + remote
                    if tau > pt2_rel[ref, r]:
                        pt2_acq[ref, r] = hold
                        pt2_rel[ref, r] = tau
                else:
                    tau = _spin(tau, pt2_acq[ref, r], pt2_rel[ref, r], tout, T_PT2_WAITS, waits)
                tau = _spin(tau, lock_acq[ref, s], lock_rel[ref, s], tout, T_PTE_WAITS, waits)
                a2 = tau
                tau += remote
                tau = _spin(tau, pt2_acq[local, r], pt2_rel[local, r], tout, T_PT2_WAITS, waits)
                tau = _spin(tau, lock_acq[local, s], lock_rel[local, s], tout, T_PTE_WAITS, waits)
                a3 = tau
                tau += pte_op
                if ref_mapped:  # 5d
                    tau += pte_op
                    state[local, s] = state[ref, s] & ATTR_MASK
                    gfn[local, s] = gfn[ref, s]
                    vis[local, s] = tau
                    raised[local, s] = t
                    if tau > lock_rel[local, s]:
                        lock_acq[local, s] = a3
                        lock_rel[local, s] = tau
                    tau += remote
                    if tau > lock_rel[ref, s]:
                        lock_acq[ref, s] = a2
                        lock_rel[ref, s] = tau
                    counter, cost_counter = FALSE_NR, FALSE_COST
                    tcount, tcost = T_FALSE_NR, T_FALSE_COST
                else:  # 5e
                    frame, fill = _new_page(target, source, local, v, rpc, bank_size, dist,
                                            costs, kind, refcount, forks, free2d, nfree2d,
                                            by_bank, placement, tout)
                    tau += fill
                    tau += remote
                    state[ref, s] = attr[v] | REMOTE_SET
                    gfn[ref, s] = frame
                    vis[ref, s] = tau
                    raised[ref, s] = t
                    if tau > lock_rel[ref, s]:
                        lock_acq[ref, s] = a2
                        lock_rel[ref, s] = tau
                    tau += pte_op
                    state[local, s] = attr[v]
                    gfn[local, s] = frame
                    vis[local, s] = tau
                    raised[local, s] = t
                    if tau > lock_rel[local, s]:
                        lock_acq[local, s] = a3
                        lock_rel[local, s] = tau
                    counter, cost_counter = GLOBAL_NR, GLOBAL_COST
                    tcount, tcost = T_GLOBAL_NR, T_GLOBAL_COST
            cost = tau - begin
            spans[0, tout[T_SPANS]] = t
            spans[1, tout[T_SPANS]] = tau
            tout[T_SPANS] += 1
            copy_counters[local, counter] += 1
            copy_counters[local, cost_counter] += cost
            tout[tcount] += 1
            tout[tcost] += cost
            tout[T_MIN_FLT] += 1
            record_latency(hist, MINOR, tau - t)  # from the trap to the retry, as the Python path
            t = tau
            reason = STOP_LIMIT
            if t + th > t_limit:  # the re-executed access would overrun: stop before it
                break
            slow = True
        # the access itself (re-executed after a fault)
        frame = gfn[local, s]
        distance = dist[local, frame // bank_size]
        if distance != 0:
            if not slow and nlog >= cap:
                break
            t += th + _rc(costs, K_REMOTE_ACCESS, distance)
            tout[T_REMOTE] += 1
            slow = True
        else:
            t += th
        th = think
        if slow:
            log[0, nlog] = i
            log[1, nlog] = t
            nlog += 1
        i += 1
    out[OUT_TIME] = t
    out[OUT_NLOG] = nlog
    out[OUT_REASON] = reason if i < stop else STOP_LIMIT
    return i
