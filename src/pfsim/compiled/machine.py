"""Compiled core: the guest executor, the host's vCPU handling, async PF and the event loop.

A line-by-line port of :class:`pfsim.guest.executor.VcpuExecutor` (access and compute steps,
sleep, exit, the anonymous fault path of :mod:`pfsim.guest.fault`),
:class:`pfsim.hypervisor.host.Host` (host ticks, blocking, EPT violations, swap-in completion,
kicks, the halt mode's guest timer) and :mod:`pfsim.apf_modes` (the glue of the kvm
and s390 protocols, whose state machines are in :mod:`pfsim.compiled.apf_kvm` and
:mod:`pfsim.compiled.apf_s390`).  Every ``sim.at`` of the reference is an ``at`` here with the
same time, priority and order, so the two engines run the same events in the same order; the
Python objects stay the readable reference and the differential tests compare full results.

Whatever this core does not model (a fault it cannot resolve, a signal, OOM) sets
``g[G_ERR] = ERR_UNSUPPORTED``: the caller then runs the whole scenario on the reference path.
"""

from __future__ import annotations

import numpy as np
from pfsim.compiled.jit import core, core_inline
from pfsim.machine.latency import ASYNC, MINOR
from pfsim.machine.latency import record as record_latency

from pfsim.compiled import apf_kvm as K
from pfsim.compiled import apf_s390 as Z
from pfsim.compiled import hostmem as H
from pfsim.compiled import state as S
from pfsim.compiled.sched import (
    add_task,
    at,
    fail,
    guest_wake_up,
    host_wake,
    now,
    policy_slice,
    rq_of,
    schedule,
    set_mode,
    slice_end,
    slice_used,
    update_curr,
)
from pfsim.engine.arrayheap import (
    EV_A0,
    EV_A1,
    EV_A2,
    EV_KIND,
    EV_TIME,
    H_NOW,
    H_SIZE,
    heap_pop,
)
from pfsim.machine.frames import ANON, ZERO_GFN
from pfsim.machine.hostmem_layout import B_EPT, B_WHERE, NEVER, RESIDENT, SWAPCACHE, SWAPPED
from pfsim.machine import trace_records as T
from pfsim.machine.trace_records import record
from pfsim.machine.pte import PTE_EXEC, PTE_PRESENT, PTE_WRITE, PTE_ZERO, VM_ANON, VM_EXEC, VM_WRITE
from pfsim.machine.scan import (
    OUT_ALLOCATED,
    OUT_COW_REUSES,
    OUT_EPT,
    OUT_GFN,
    OUT_MIN_FLT,
    OUT_NLOG,
    OUT_REASON,
    OUT_RSS,
    OUT_STALL,
    OUT_TIME,
    STOP_EPT,
    STOP_LIMIT,
    done_by,
    run_accesses,
)

CHUNK = 1 << 16
FOREVER = 1 << 62
KVM_BROADCAST = 0xFFFFFFFF
PSW_MASK_EXT = 1 << 56
PSW_MASK_PSTATE = 1 << 48
CR0_SERVICE_SIGNAL_SUBMASK = 0x200
LPP_MAGIC = 1 << 31

# ==================================================================== executor: segments


@core
def _arm(m, cpu, time, kind):
    """``VcpuExecutor._arm``: a per-vCPU event guarded by a fresh epoch."""
    m.vc[S.VC_EPOCH, cpu] += 1
    at(m, time, S.NORMAL, kind, cpu, m.vc[S.VC_EPOCH, cpu], 0)


@core
def _commit(m, cpu, done):
    task = m.vc[S.VC_SEG_TASK, cpu]
    if m.vc[S.VC_SEG_ACCESS, cpu]:
        m.tx[S.TX_POS, task] = m.vc[S.VC_SEG_POS0, cpu] + done
        m.tx[S.TX_ACCESSES, task] += done
        m.tx[S.TX_WORK, task] += done
        m.tx[S.TX_REMAINING, task] -= done
    else:
        m.tx[S.TX_COMPUTE_UNITS, task] += done
        m.tx[S.TX_WORK, task] += done
        m.tx[S.TX_REMAINING, task] -= done


@core
def _units_by(m, cpu, t):
    """``VcpuExecutor._units_by``: compute units of ``cpu``'s segment complete at ``t``; the
    part of the next one already run becomes the task's TX_SPENT."""
    unit = m.vc[S.VC_SEG_UNIT, cpu]
    count = m.vc[S.VC_SEG_COUNT, cpu]
    total = m.vc[S.VC_SEG_SPENT0, cpu] + max(0, t - m.vc[S.VC_SEG_T0, cpu])
    done = min(count, total // unit)
    m.tx[S.TX_SPENT, m.vc[S.VC_SEG_TASK, cpu]] = total - done * unit if done < count else 0
    return done


@core
def truncate(m, cpu):
    """Stop ``cpu``'s segment now, keeping the work whose time has passed."""
    m.vc[S.VC_EPOCH, cpu] += 1
    if not m.vc[S.VC_SEG, cpu]:
        return
    m.vc[S.VC_SEG, cpu] = 0
    t = now(m)
    t0 = m.vc[S.VC_SEG_T0, cpu]
    unit = m.vc[S.VC_SEG_UNIT, cpu]
    count = m.vc[S.VC_SEG_COUNT, cpu]
    spent0 = m.vc[S.VC_SEG_SPENT0, cpu]
    task = m.vc[S.VC_SEG_TASK, cpu]
    if not m.vc[S.VC_SEG_ACCESS, cpu]:
        done = _units_by(m, cpu, t)
    elif t <= t0:
        done = 0
    elif count == 0:  # a carry segment: all of it goes to the access's think
        done = 0
        m.tx[S.TX_SPENT, task] = spent0 + t - t0
    else:
        pos0 = m.vc[S.VC_SEG_POS0, cpu]
        done, partial = done_by(t, t0, unit, spent0, pos0, pos0 + count, m.flog[cpu],
                                m.vc[S.VC_SEG_NLOG, cpu])
        m.tx[S.TX_SPENT, task] = partial
    _commit(m, cpu, done)


@core
def pause_vcpu(m, cpu):
    if m.vc[S.VC_SEG, cpu] and m.vc[S.VC_SEG_T0, cpu] > now(m):
        m.vc[S.VC_OWED, cpu] += m.vc[S.VC_SEG_T0, cpu] - now(m)
    truncate(m, cpu)
    m.vc[S.VC_PAUSED, cpu] = 1
    if m.vc[S.VC_OFF_AT, cpu] < 0:
        m.vc[S.VC_OFF_AT, cpu] = now(m)


@core
def _set_segment(m, cpu, task, t0, pos0, count, unit, access, fault, nlog, ept_gfn):
    m.vc[S.VC_SEG, cpu] = 1
    m.vc[S.VC_SEG_TASK, cpu] = task
    m.vc[S.VC_SEG_T0, cpu] = t0
    m.vc[S.VC_SEG_POS0, cpu] = pos0
    m.vc[S.VC_SEG_COUNT, cpu] = count
    m.vc[S.VC_SEG_UNIT, cpu] = unit
    m.vc[S.VC_SEG_ACCESS, cpu] = access
    m.vc[S.VC_SEG_FAULT, cpu] = fault
    m.vc[S.VC_SEG_NLOG, cpu] = nlog
    m.vc[S.VC_SEG_EPT_GFN, cpu] = ept_gfn


# ==================================================================== steps and chunks


@core
def _next_step(m, task, t):
    """``TaskExec.next_step``: False when the program is over."""
    index = m.tx[S.TX_STEP_INDEX, task] + 1
    m.tx[S.TX_STEP_INDEX, task] = index
    if index >= m.tx[S.TX_NSTEPS, task]:
        return False
    step = m.tx[S.TX_STEP0, task] + index
    m.tx[S.TX_HAS_STEP, task] = 1
    m.tx[S.TX_DEADLINE, task] = FOREVER
    m.tx[S.TX_REMAINING, task] = FOREVER
    m.tx[S.TX_SPENT, task] = 0
    m.tx[S.TX_POS, task] = 0
    m.tx[S.TX_LEN, task] = 0
    m.tx[S.TX_CHUNK, task] = -1
    kind = m.steps[step, S.ST_KIND]
    duration = m.steps[step, S.ST_DURATION]
    count = m.steps[step, S.ST_COUNT]
    if kind == S.STEP_ACCESS or kind == S.STEP_COMPUTE:
        if duration != S.NONE:
            m.tx[S.TX_DEADLINE, task] = t + duration
        if count != S.NONE:
            m.tx[S.TX_REMAINING, task] = count
        m.tx[S.TX_THINK, task] = m.steps[step, S.ST_UNIT]
    else:  # sleep
        m.tx[S.TX_REMAINING, task] = 1
    return True


@core
def _request_chunk(m, task, step, chunk):
    """Ask Python for chunk ``chunk`` of ``step``'s stream (filled before the next event)."""
    n = m.g[S.G_NREQ]
    if n >= m.creq.shape[0]:
        fail(m, S.ERR_CAPACITY, -4)
        return
    m.creq[n, 0] = task
    m.creq[n, 1] = step
    m.creq[n, 2] = chunk
    m.g[S.G_NREQ] = n + 1


@core
def _refill(m, task):
    """``TaskExec.refill`` for an access step: the next chunk (already generated)."""
    step = m.tx[S.TX_STEP0, task] + m.tx[S.TX_STEP_INDEX, task]
    chunk = m.tx[S.TX_CHUNK, task] + 1
    buf = m.steps[step, S.ST_BUF0] if chunk % 2 == 0 else m.steps[step, S.ST_BUF1]
    remaining = m.tx[S.TX_REMAINING, task]
    n = CHUNK if remaining >= FOREVER else min(CHUNK, remaining)
    if m.clen[buf] != n or m.cwrites.shape[1] < n:  # not generated: cannot happen
        fail(m, S.ERR_INVARIANT, -5)
        return
    m.clen[buf] = -n  # consumed (Python refills it with the chunk after next)
    m.tx[S.TX_CHUNK, task] = chunk
    m.tx[S.TX_BUF, task] = buf
    m.tx[S.TX_LEN, task] = n
    m.tx[S.TX_POS, task] = 0
    if remaining >= FOREVER or remaining - n > 0:
        _request_chunk(m, task, step, chunk + 1)


# ==================================================================== the run loop


@core
def _scan(m, cpu, task, t, end, limit):
    buf = m.tx[S.TX_BUF, task]
    out = m.out
    out[:] = 0
    stop = run_accesses(m.cslots[buf], m.cwrites[buf], m.tx[S.TX_POS, task], end, t,
                        m.tx[S.TX_THINK, task], m.tx[S.TX_SPENT, task], limit, m.mstate, m.mgfn, m.mvflags, m.refcount,
                        m.gkind, m.gfree, m.gnfree, m.gcosts, m.cf[S.CF_ZERO_PAGE] != 0,
                        m.cf[S.CF_FAST] != 0, False, out, m.flog[cpu], True, m.hbits, m.hlinks,
                        m.hframes, m.hfree_at, m.hsmall, m.hist)
    faults = out[OUT_MIN_FLT]
    if faults:
        m.tx[S.TX_MIN_FLT, task] += faults
        m.tx[S.TX_PGFAULT, task] += faults
        m.tx[S.TX_LOCAL_PGFAULT, task] += faults
        m.tx[S.TX_COW_REUSES, task] += out[OUT_COW_REUSES]
        m.g[S.G_ALLOCATED] += out[OUT_ALLOCATED]
        m.pr[S.PR_RSS, m.tx[S.TX_PROC, task]] += out[OUT_RSS]
    if out[OUT_EPT]:  # Host.first_touches
        m.hm[S.HM_EPT_VIOLATIONS] += out[OUT_EPT]
        m.hm[S.HM_HOST_MINOR] += out[OUT_EPT]
        m.vc[S.VC_CHARGED_STALL, cpu] += out[OUT_STALL]
    T.record_fault_log(m.tr, m.trm, m.flog[cpu], out[OUT_NLOG], cpu,
                       m.tk[S.TK_TID, m.tx[S.TX_TASK, task]])
    return stop


@core
def run_task(m, cpu, task, t):
    """``VcpuExecutor._run``: advance ``task`` on ``cpu`` from ``t`` until it needs an event."""
    if m.vc[S.VC_HELD, cpu]:
        return
    if m.vc[S.VC_NEED_RESCHED, cpu]:  # cleared by the schedule() it asks for (start)
        state = m.tk[S.TK_STATE, task]
        sleeping = state == S.INTERRUPTIBLE or state == S.UNINTERRUPTIBLE
        if t == now(m) and m.vc[S.VC_OWED, cpu] == 0:
            m.vc[S.VC_NEED_RESCHED, cpu] = 0
            m.vc[S.VC_EPOCH, cpu] += 1
            schedule(m, S.GUEST, cpu, not sleeping)
        else:
            _arm(m, cpu, t, S.EV_BLOCK if sleeping else S.EV_SLICE_EXPIRED)
        return
    if m.tx[S.TX_APF_WAIT, task]:  # kvm_async_pf_task_wait_schedule's loop
        state = m.tk[S.TK_STATE, m.tx[S.TX_TASK, task]]
        if state == S.INTERRUPTIBLE or state == S.UNINTERRUPTIBLE:
            _arm(m, cpu, t, S.EV_BLOCK)  # interrupted on its way to schedule(): go on to it
            return
        if not K.kvm_wait_resume(m.kvm, m.tx[S.TX_TASK, task], m.tk[S.TK_STATE]):
            _arm(m, cpu, t, S.EV_BLOCK)
            return
        m.tx[S.TX_APF_WAIT, task] = 0
    until = slice_end(m, S.GUEST, cpu)  # fixed until the schedule() that ends this stretch
    while True:
        if m.g[S.G_ERR]:
            return
        if not m.tx[S.TX_HAS_STEP, task] and not _next_step(m, task, t):
            _arm(m, cpu, t, S.EV_EXIT)
            return
        if t >= until:
            _arm(m, cpu, t, S.EV_SLICE_EXPIRED)
            return
        if t >= m.tx[S.TX_DEADLINE, task] or m.tx[S.TX_REMAINING, task] <= 0:
            m.tx[S.TX_HAS_STEP, task] = 0
            continue
        limit = min(until, m.tx[S.TX_DEADLINE, task])
        step = m.tx[S.TX_STEP0, task] + m.tx[S.TX_STEP_INDEX, task]
        kind = m.steps[step, S.ST_KIND]
        if kind == S.STEP_ACCESS:
            if m.tx[S.TX_POS, task] >= m.tx[S.TX_LEN, task]:
                _refill(m, task)
                continue
            pos = m.tx[S.TX_POS, task]
            end = min(m.tx[S.TX_LEN, task], pos + m.tx[S.TX_REMAINING, task])
            stop = _scan(m, cpu, task, t, end, limit)
            count = stop - pos
            reason = m.out[OUT_REASON]
            fault = reason != STOP_LIMIT
            ept_gfn = m.out[OUT_GFN] if reason == STOP_EPT else -1
            t_end = m.out[OUT_TIME]
            nlog = m.out[OUT_NLOG]
            if count == 0 and fault and t == now(m):
                t = _fault(m, cpu, task, t) if ept_gfn < 0 else _host_fault(m, cpu, task, ept_gfn,
                                                                            t, -1)
                if t < 0:
                    return
                continue
            if count == 0 and not fault:
                if stop >= end:
                    continue
                if t_end > t:
                    t = t_end
                    continue
                # the next access's think does not fit before the limit: run what fits and
                # carry it (TX_SPENT), so a think longer than a slice completes
                _set_segment(m, cpu, task, t, pos, 0, m.tx[S.TX_THINK, task], 1, 0, 0, -1)
                m.vc[S.VC_SEG_SPENT0, cpu] = m.tx[S.TX_SPENT, task]
                _arm(m, cpu, limit, S.EV_SEGMENT_END)
                return
            _set_segment(m, cpu, task, t, pos, count, m.tx[S.TX_THINK, task], 1, fault, nlog,
                         ept_gfn)
            m.vc[S.VC_SEG_SPENT0, cpu] = m.tx[S.TX_SPENT, task]
            _arm(m, cpu, t_end, S.EV_SEGMENT_END)
            return
        if kind == S.STEP_COMPUTE:
            unit = m.tx[S.TX_THINK, task]
            remaining = m.tx[S.TX_REMAINING, task]
            spent = m.tx[S.TX_SPENT, task]
            if (limit - t + spent) // unit >= remaining:
                end = t + remaining * unit - spent
            else:
                end = limit
            _set_segment(m, cpu, task, t, 0, remaining, unit, 0, 0, 0, -1)
            m.vc[S.VC_SEG_SPENT0, cpu] = spent
            _arm(m, cpu, end, S.EV_SEGMENT_END)
            return
        # sleep
        m.tx[S.TX_HAS_STEP, task] = 0
        m.tk[S.TK_STATE, m.tx[S.TX_TASK, task]] = S.INTERRUPTIBLE
        at(m, t + m.steps[step, S.ST_DURATION], S.URGENT, S.EV_TIMER_WAKE,
           m.tx[S.TX_TASK, task], 0, 0)
        _arm(m, cpu, t, S.EV_BLOCK)
        return


# ==================================================================== guest faults


@core
def _fault(m, cpu, task, t):
    """``VcpuExecutor._fault`` → ``exc_page_fault`` for anonymous memory; -1 when blocked."""
    buf = m.tx[S.TX_BUF, task]
    pos = m.tx[S.TX_POS, task]
    slot = np.int64(m.cslots[buf, pos])
    write = m.cwrites[buf, pos] != 0
    if slot < 0:  # outside every VMA: SIGSEGV
        fail(m, S.ERR_UNSUPPORTED, 1)
        return -1
    need = PTE_PRESENT | (PTE_WRITE if write else 0)
    pte = np.int64(m.mstate[slot])
    if (pte & need) == need:
        return t
    if pte & 0x10:  # PTE_NOVMA: stack growth room (stacks are left to the reference)
        fail(m, S.ERR_UNSUPPORTED, 6)
        return -1
    vflags = np.int64(m.mvflags[slot])
    if (vflags & VM_ANON) == 0 or (write and (vflags & VM_WRITE) == 0):
        fail(m, S.ERR_UNSUPPORTED, 2)  # file fault or access error
        return -1
    cost = m.gcosts[0]  # entry
    exec_bit = PTE_EXEC if (vflags & VM_EXEC) else 0
    full = PTE_PRESENT | (PTE_WRITE if (vflags & VM_WRITE) else 0) | exec_bit
    touched = -1
    proc = m.tx[S.TX_PROC, task]
    if pte & PTE_PRESENT:
        if (pte & PTE_ZERO) == 0:
            frame = m.mgfn[slot]
            if m.gkind[frame] == ANON and m.refcount[frame] == 1:
                m.mstate[slot] = full
                m.tx[S.TX_COW_REUSES, task] += 1
                cost += m.gcosts[3]
            else:
                fail(m, S.ERR_UNSUPPORTED, 3)  # a COW copy (fork is not modelled here)
                return -1
        else:  # write after the zero page
            touched = _alloc(m)
            if touched < 0:
                return -1
            m.mgfn[slot] = touched
            m.mstate[slot] = full
            m.pr[S.PR_RSS, proc] += 1
            cost += m.gcosts[2]
    elif not write and m.cf[S.CF_ZERO_PAGE]:
        m.mgfn[slot] = ZERO_GFN
        m.mstate[slot] = PTE_PRESENT | PTE_ZERO | exec_bit
        cost += m.gcosts[1]
    else:
        touched = _alloc(m)
        if touched < 0:
            return -1
        m.mgfn[slot] = touched
        m.mstate[slot] = full
        m.pr[S.PR_RSS, proc] += 1
        cost += m.gcosts[2]
    m.tx[S.TX_PGFAULT, task] += 1
    m.tx[S.TX_MIN_FLT, task] += 1
    m.tx[S.TX_LOCAL_PGFAULT, task] += 1
    record(m.tr, m.trm, t, T.K_GUEST_FAULT, cpu, m.tk[S.TK_TID, m.tx[S.TX_TASK, task]],
           touched, 0, t + cost, 0)
    after = t + cost
    if touched >= 0 and not m.hbits[B_EPT, touched]:
        after = _host_fault(m, cpu, task, touched, after, 0)
    if after >= 0:
        record_latency(m.hist, MINOR, after - t)
    return after


@core
def _alloc(m):
    """``PhysMem.alloc(ANON)``; no free frame means OOM, which only the reference models."""
    n = m.gnfree[0]
    if n == 0:
        fail(m, S.ERR_UNSUPPORTED, 4)
        return -1
    stacked = n - (m.gkind.shape[0] - m.gnfree[1])  # PhysMem.alloc: freed frames first
    if stacked > 0:
        gfn = np.int64(m.gfree[stacked - 1])
    else:
        gfn = m.gnfree[1]
        m.gnfree[1] = gfn + 1
    m.gnfree[0] = n - 1
    m.gkind[gfn] = ANON
    m.refcount[gfn] = 1
    m.g[S.G_ALLOCATED] += 1
    return gfn


@core
def _host_fault(m, cpu, task, gfn, t, user):
    """``VcpuExecutor._host_fault`` (``user`` -1: the task's own access)."""
    cost = ept_violation(m, cpu, gfn, 1 if user < 0 else user)
    if cost >= 0:
        m.vc[S.VC_CHARGED_STALL, cpu] += cost
        return t + cost
    return -1


# ==================================================================== host: EPT violations


@core
def ept_violation(m, c, gfn, user):
    """``Host.ept_violation``: the cost if resolved, -1 when the vCPU thread blocked."""
    m.hm[S.HM_EPT_VIOLATIONS] += 1
    t = now(m)
    where = m.hbits[B_WHERE, gfn]
    if m.trm[T.M_ON]:
        current = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, c)]
        record(m.tr, m.trm, t, T.K_HOST_FAULT, c, m.tk[S.TK_TID, current] if current >= 0 else -1,
               gfn, 0, t, T.HF_RESIDENT if where == RESIDENT else T.HF_SWAPCACHE
               if where == SWAPCACHE else T.HF_FIRST_TOUCH if where == NEVER else T.HF_MAJOR
               if where == SWAPPED else T.HF_INIO)
    if where == RESIDENT:
        return m.cf[S.CF_EPT]
    if where == SWAPCACHE:
        H.map_cached(m, gfn)
        m.hm[S.HM_HOST_MINOR] += 1
        return m.cf[S.CF_EPT] + m.cf[S.CF_SWAPCACHE_HIT]
    if where == NEVER:
        frame = H.take_frame(m, t)
        H.map_new(m, gfn, frame)
        m.hm[S.HM_HOST_MINOR] += 1
        ready = max(t + m.cf[S.CF_EPT] + m.cf[S.CF_HOST_FAULT], m.hfree_at[frame])
        return ready - t
    if where == SWAPPED:
        m.hm[S.HM_HOST_MAJOR] += 1
        done = _swap_in(m, gfn, t)
        if m.cf[S.CF_SYNCHRONOUS]:
            return max(done, t) - t + m.cf[S.CF_EPT]
    _wait_for_page(m, c, gfn, user)
    return -1


@core
def _swap_in(m, gfn, t):
    nb = m.hm[S.HM_BFREE]
    if nb == 0:
        fail(m, S.ERR_CAPACITY, -6)
        return t
    m.hm[S.HM_BFREE] = nb - 1
    b = m.bfree[nb - 1]
    done = H.swap_in(m, gfn, t, m.bt[b])
    at(m, done, S.URGENT, S.EV_SWAP_IN_DONE, b, 0, 0)
    return done


@core
def _when_page_in(m, gfn, kind, arg, arg2):
    """``Host.when_page_in``: a waiter called when ``gfn``'s swap-in completes."""
    n = m.hm[S.HM_WFREE]
    if n == 0:
        fail(m, S.ERR_CAPACITY, -7)
        return
    m.hm[S.HM_WFREE] = n - 1
    w = m.wfree[n - 1]
    m.wtr[S.W_KIND, w] = kind
    m.wtr[S.W_ARG, w] = arg
    m.wtr[S.W_ARG2, w] = arg2
    m.wtr[S.W_NEXT, w] = -1
    if m.whead1[gfn] == 0:  # one-based (0: no waiter), so the zeroed array is all empty
        m.whead1[gfn] = w + 1
    else:
        m.wtr[S.W_NEXT, m.wtail[gfn]] = w
    m.wtail[gfn] = w


@core
def _wait_for_page(m, c, gfn, user):
    """``Host._wait_for_page``: async PF, halt or stall, by mode."""
    if _apf_major_fault(m, c, gfn, user):
        return
    m.vc[S.VC_WAITING_GFN, c] = gfn
    _when_page_in(m, gfn, S.WAIT_PAGE_ARRIVED, c, gfn)
    _exit_cost(m, c)
    if m.g[S.G_MODE] == S.MODE_HALT:
        m.hm[S.HM_HALTS] += 1
        _arm_guest_timer(m, c)
        host_block(m, c, S.VM_STALLED, S.INTERRUPTIBLE)
    else:
        host_block(m, c, S.VM_STALLED, S.UNINTERRUPTIBLE)


@core
def _spend_at_entry(m, c, cost):
    """``Host.spend_at_entry``: host work on the way in; the guest goes on ``cost`` later."""
    m.vc[S.VC_CHARGED_STALL, c] += cost
    m.vc[S.VC_OWED, c] += cost


@core
def _exit_cost(m, c):
    """``Host._exit_cost``: exit, EPT walk and re-entry, spent when the vCPU resumes."""
    m.vc[S.VC_CHARGED_STALL, c] += m.cf[S.CF_EPT]
    m.vc[S.VC_OWED, c] += m.cf[S.CF_EPT]


@core
def host_block(m, c, mode, state):
    """``Host._block``: the vCPU thread sleeps in the host."""
    hcpu = m.vc[S.VC_ON_CPU, c]
    pause_vcpu(m, c)
    m.tk[S.TK_STATE, m.vc[S.VC_THREAD, c]] = state
    m.vc[S.VC_ON_CPU, c] = -1
    set_mode(m, c, mode)
    if hcpu >= 0:
        m.hc[S.HC_HEPOCH, hcpu] += 1
        schedule(m, S.HOST, hcpu, False)


@core
def _arm_guest_timer(m, c):
    """``Host._arm_guest_timer``: the next tick, or without one the slice end if another task
    waits."""
    tick = m.sp[S.GUEST, S.SP_TICK]
    if tick:
        when = (now(m) // tick + 1) * tick
    elif m.rq[S.RQ_QLEN, rq_of(m, S.GUEST, c)] > 0:
        when = max(now(m), slice_end(m, S.GUEST, c))
    else:
        return
    at(m, when, S.URGENT, S.EV_GUEST_TIMER, c, m.vc[S.VC_HALT_EPOCH, c], 0)


@core
def _guest_timer(m, c, epoch):
    if epoch == m.vc[S.VC_HALT_EPOCH, c]:
        ipi_halted(m, c)


@core
def ipi_halted(m, c):
    """``Host.ipi_halted``: an interrupt wakes a vCPU halted in the host."""
    if (m.vc[S.VC_VMODE, c] == S.VM_STALLED
            and m.tk[S.TK_STATE, m.vc[S.VC_THREAD, c]] == S.INTERRUPTIBLE):
        m.vc[S.VC_WAITING_GFN, c] = -1
        m.vc[S.VC_IRQ_PENDING, c] = 1
        host_wake(m, c)


@core
def _swap_in_done(m, b):
    batch = m.bt[b]
    for i in range(batch[0]):
        gfn = batch[1 + i]
        w = m.whead1[gfn] - 1
        m.whead1[gfn] = 0
        H.finish_swapin(m, gfn, i == 0 or w >= 0)
        while w >= 0:
            nxt = m.wtr[S.W_NEXT, w]
            kind = m.wtr[S.W_KIND, w]
            arg = m.wtr[S.W_ARG, w]
            arg2 = m.wtr[S.W_ARG2, w]
            m.wfree[m.hm[S.HM_WFREE]] = w
            m.hm[S.HM_WFREE] += 1
            if kind == S.WAIT_PAGE_ARRIVED:  # Host._page_arrived
                thread = m.vc[S.VC_THREAD, arg]
                st = m.tk[S.TK_STATE, thread]
                if m.vc[S.VC_WAITING_GFN, arg] == arg2 and (st == S.INTERRUPTIBLE
                                                             or st == S.UNINTERRUPTIBLE):
                    m.vc[S.VC_WAITING_GFN, arg] = -1
                    host_wake(m, arg)
            elif kind == S.WAIT_KVM_WORK:  # KvmMode._work_done
                ready, kick = K.kvm_work_done(m.kvm, arg)
                if ready or kick:
                    _kick_for_completion(m, arg2)
            else:  # S390Mode._work_done
                if Z.s390_work_done(m.s390, arg) == 1:  # not 0, not ERROR
                    at(m, now(m), S.URGENT, S.EV_FLOATING_IPI, 0, 0, 0)
            w = nxt
    m.bfree[m.hm[S.HM_BFREE]] = b
    m.hm[S.HM_BFREE] += 1


@core
def _kick_for_completion(m, c):
    if m.vc[S.VC_ON_CPU, c] >= 0:
        at(m, now(m), S.URGENT, S.EV_KICK_IPI, c, 0, 0)
    elif m.tk[S.TK_STATE, m.vc[S.VC_THREAD, c]] == S.INTERRUPTIBLE:
        host_wake(m, c)


# ==================================================================== async PF glue


@core
def _guest_interrupt(m, c, cost, kind, arg, arg2):
    """``Host.guest_interrupt``: after ``cost`` ns the vCPU enters with a guest handler."""
    m.vc[S.VC_CHARGED_STALL, c] += cost
    m.vc[S.VC_HELD, c] = 1  # VcpuExecutor.hold
    if m.vc[S.VC_OFF_AT, c] < 0:
        m.vc[S.VC_OFF_AT, c] = now(m)
    at(m, now(m) + cost, S.URGENT, S.EV_DELIVER_INJECTED, c, kind, (arg << 1) | arg2)


@core
def _apf_major_fault(m, c, gfn, user):
    mode = m.g[S.G_MODE]
    if mode == S.MODE_KVM:
        outcome, token, work = K.kvm_page_fault(m.kvm, c, gfn, user, True)
        if outcome == K.SYNC:
            m.hm[S.HM_SYNC_FALLBACKS] += 1
            return False
        if work >= 0:
            K.kvm_work_started(m.kvm, work)
            _when_page_in(m, gfn, S.WAIT_KVM_WORK, work, c)
        if outcome == K.ASYNC_INJECTED:
            _guest_interrupt(m, c, m.cf[S.CF_EPT] + m.cf[S.CF_APF_INJECT], S.IRQ_KVM_NOT_PRESENT,
                             token, user)
            return True
        _apf_halt(m, c)
        return True
    if mode == S.MODE_S390:
        task = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, c)]
        has_token = task >= 0
        token = ((LPP_MAGIC << 32) | (m.tk[S.TK_TID, task] & 0xFFFFFFFF)) if has_token else 0
        psw = PSW_MASK_EXT | (PSW_MASK_PSTATE if user else 0)
        work = Z.s390_page_fault(m.s390, c, gfn, psw, CR0_SERVICE_SIGNAL_SUBMASK, token,
                                 has_token)
        if work < 0:
            m.hm[S.HM_SYNC_FALLBACKS] += 1
            return False
        Z.s390_work_started(m.s390, work)
        _when_page_in(m, gfn, S.WAIT_S390_WORK, work, c)
        _guest_interrupt(m, c, m.cf[S.CF_EPT] + m.cf[S.CF_APF_INJECT], S.IRQ_S390_PRE_RUN, 0, 0)
        return True
    return False


@core
def _apf_halt(m, c):
    m.hm[S.HM_HALTS] += 1
    if not _apf_on_entry(m, c, False):
        _exit_cost(m, c)
        _arm_guest_timer(m, c)
        host_block(m, c, S.VM_STALLED, S.INTERRUPTIBLE)


@core
def _apf_on_entry(m, c, interrupt_pending):
    mode = m.g[S.G_MODE]
    if mode == S.MODE_KVM:
        if K.kvm_is_halted(m.kvm, c):
            if not K.kvm_runnable(m.kvm, c, interrupt_pending):
                return False
            K.kvm_unblock(m.kvm, c)
        entered, ncomp = K.kvm_enter_guest(m.kvm, c, m.comp)
        if not entered:
            return False
        _kvm_deliver(m, c, ncomp)
        return True
    if mode == S.MODE_S390:
        _s390_pre_run(m, c)
    return True


@core
def _apf_wait_starts(m, task):
    """An async PF put ``task`` to sleep (kept if it already waits: s390's REBLOCK)."""
    if m.tx[S.TX_APF_SINCE, task] < 0:
        m.tx[S.TX_APF_SINCE, task] = now(m)


@core
def _apf_wait_ends(m, task):
    """The page-ready / completion wakes ``task``: one async round trip, if it waited."""
    since = m.tx[S.TX_APF_SINCE, task]
    if since >= 0:
        record_latency(m.hist, ASYNC, now(m) - since)
        m.tx[S.TX_APF_SINCE, task] = -1


@core
def _kvm_deliver(m, c, ncomp):
    while ncomp > 0:
        any_ready = False
        for i in range(ncomp):
            if m.comp[1, i]:
                any_ready = True
                if m.comp[0, i] != KVM_BROADCAST:
                    m.hm[S.HM_PAGE_READY] += 1
                    record(m.tr, m.trm, now(m), T.K_PAGE_READY, c, -1, 0, m.comp[0, i], now(m), 0)
        if not any_ready:
            return
        ack, kind, nwoken = K.kvm_page_ready_interrupt(m.kvm, c, m.woken)
        for i in range(nwoken):
            _apf_wait_ends(m, m.woken[i])
            guest_wake_up(m, m.woken[i])
        _spend_at_entry(m, c, m.cf[S.CF_PAGE_READY])
        if kind == K.RETRY:
            return
        ncomp = K.kvm_msr_write_ack(m.kvm, c, m.comp) if ack else 0


@core
def _s390_pre_run(m, c):
    psw = PSW_MASK_EXT | PSW_MASK_PSTATE
    while True:
        subcode, param = Z.s390_pre_run(m.s390, c, psw)
        if subcode == 0:
            return
        current = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, c)]
        outcome, wake_task, resched = Z.s390_pfault_interrupt(
            m.s390, c, subcode, param, current, m.tk[S.TK_STATE], m.tk[S.TK_USAGE],
            m.tk[S.TK_FREED], m.tk[S.TK_TID])
        if outcome != Z.NOT_PFAULT and outcome != Z.DROPPED_UNKNOWN_PID and outcome != Z.ERROR:
            done = (subcode & Z.PF_COMPLETE) != 0
            record(m.tr, m.trm, now(m), T.K_PAGE_READY if done else T.K_NOT_PRESENT, c,
                   -1 if done else param & 0xFFFFFFFF, 0, param & 0xFFFFFFFF, now(m), 0)
        if outcome == Z.BLOCK or outcome == Z.REBLOCK:
            _apf_wait_starts(m, current)
        if wake_task >= 0:
            _apf_wait_ends(m, wake_task)
            guest_wake_up(m, wake_task)
        if resched:
            m.vc[S.VC_NEED_RESCHED, c] = 1
        if subcode == Z.PFAULT_DONE:  # the INIT's delivery is in apf_inject
            _spend_at_entry(m, c, m.cf[S.CF_PAGE_READY])


@core
def _run_handler(m, cpu, kind, a):
    """A pending guest interrupt handler (``_not_present`` or ``_pre_run``)."""
    if kind == S.IRQ_KVM_NOT_PRESENT:
        token = a >> 1
        user = a & 1
        task = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, cpu)]
        if task < 0:
            return
        outcome = K.kvm_handle_async_pf(m.kvm, cpu, task, token, user, True, m.tk[S.TK_STATE])
        if outcome == K.SLEEP or outcome == K.NO_SLEEP:  # counted as not_present
            record(m.tr, m.trm, now(m), T.K_NOT_PRESENT, cpu, m.tk[S.TK_TID, task], 0, token,
                   now(m), 0)
        if outcome == K.SLEEP:
            m.tx[S.TX_APF_WAIT, task] = 1  # tx and tk share the guest task index
            _apf_wait_starts(m, task)
            m.vc[S.VC_NEED_RESCHED, cpu] = 1
        elif outcome == K.PANIC_KERNEL_MODE or outcome == K.PANIC_IRQS_DISABLED:
            fail(m, S.ERR_UNSUPPORTED, 5)
    elif kind == S.IRQ_S390_PRE_RUN:
        _s390_pre_run(m, cpu)


# ==================================================================== vCPU entry and interrupts


@core
def _entry_allowed(m, c):
    pending = m.vc[S.VC_IRQ_PENDING, c]
    m.vc[S.VC_IRQ_PENDING, c] = 0
    return _apf_on_entry(m, c, pending != 0)


@core
def _halt_at_entry(m, c):
    m.hm[S.HM_HALTS] += 1
    _arm_guest_timer(m, c)
    host_block(m, c, S.VM_STALLED, S.INTERRUPTIBLE)


@core
def _push_irq(m, cpu, kind, a):
    n = m.vc[S.VC_NIRQ, cpu]
    if n >= S.IRQ_CAP:
        fail(m, S.ERR_CAPACITY, -8)
        return
    m.irq[0, cpu, n, 0] = kind
    m.irq[0, cpu, n, 1] = a
    m.vc[S.VC_NIRQ, cpu] = n + 1


@core
def _take_irqs(m, cpu):
    """Move the pending handlers to the scratch list; returns their number."""
    n = m.vc[S.VC_NIRQ, cpu]
    for i in range(n):
        m.irq[1, cpu, i, 0] = m.irq[0, cpu, i, 0]
        m.irq[1, cpu, i, 1] = m.irq[0, cpu, i, 1]
    m.vc[S.VC_NIRQ, cpu] = 0
    return n


@core_inline
def _late_tick(m, cpu):
    """``VcpuExecutor._late_tick``: a tick that fell while the vCPU was out of the guest is
    taken now; it asks for schedule() if the slice is used up."""
    if m.vc[S.VC_PAUSED, cpu]:  # a handler sent it back to the host
        return
    off = m.vc[S.VC_OFF_AT, cpu]
    m.vc[S.VC_OFF_AT, cpu] = -1
    tick = m.sp[S.GUEST, S.SP_TICK]
    t = now(m)
    if (tick and 0 <= off < t // tick * tick and m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, cpu)] >= 0
            and slice_used(m, S.GUEST, cpu, t)):
        m.vc[S.VC_NEED_RESCHED, cpu] = 1


@core
def _go_on(m, cpu, base, idle_if_nothing):
    """After the handlers: the current task runs on from ``base`` plus what the vCPU still
    owed, else schedule(); with ``idle_if_nothing`` an empty vCPU halts (``vcpu_idle``)."""
    r = rq_of(m, S.GUEST, cpu)
    task = m.rq[S.RQ_CURRENT, r]
    owed = m.vc[S.VC_OWED, cpu]
    m.vc[S.VC_OWED, cpu] = 0
    if task >= 0:
        run_task(m, cpu, task, base + owed)
    elif m.rq[S.RQ_QLEN, r] > 0:
        m.vc[S.VC_OWED, cpu] = owed  # the task it picks starts after it
        schedule(m, S.GUEST, cpu, True)
    elif idle_if_nothing:  # Host.vcpu_idle
        m.vc[S.VC_HALT_EPOCH, cpu] += 1
        at(m, now(m), S.LATE, S.EV_HALT_IDLE, cpu, m.vc[S.VC_HALT_EPOCH, cpu], 0)


@core
def interrupt(m, cpu, nscratch, entry):
    """``VcpuExecutor.interrupt`` with the handlers in the scratch list (a kick has none)."""
    if m.vc[S.VC_PAUSED, cpu] or m.vc[S.VC_HELD, cpu]:
        for i in range(nscratch):
            _push_irq(m, cpu, m.irq[1, cpu, i, 0], m.irq[1, cpu, i, 1])
        return
    off = m.vc[S.VC_OFF_AT, cpu]  # set when it comes out of a hold
    pause_vcpu(m, cpu)
    m.vc[S.VC_PAUSED, cpu] = 0
    m.vc[S.VC_OFF_AT, cpu] = off
    if entry and not _entry_allowed(m, cpu):
        for i in range(nscratch):
            _push_irq(m, cpu, m.irq[1, cpu, i, 0], m.irq[1, cpu, i, 1])
        _halt_at_entry(m, cpu)
        return
    for i in range(nscratch):
        _run_handler(m, cpu, m.irq[1, cpu, i, 0], m.irq[1, cpu, i, 1])
    _late_tick(m, cpu)
    _go_on(m, cpu, now(m), False)


@core
def resume_vcpu(m, cpu, t):
    """``VcpuExecutor.resume_vcpu``: the thread runs again; pending interrupts first."""
    m.vc[S.VC_PAUSED, cpu] = 0
    m.vc[S.VC_EPOCH, cpu] += 1
    if not _entry_allowed(m, cpu):
        _halt_at_entry(m, cpu)
        return
    n = _take_irqs(m, cpu)
    for i in range(n):
        _run_handler(m, cpu, m.irq[1, cpu, i, 0], m.irq[1, cpu, i, 1])
    _late_tick(m, cpu)
    _go_on(m, cpu, t, True)


@core
def _deliver_injected(m, cpu, kind, a):
    m.vc[S.VC_HELD, cpu] = 0
    n = _take_irqs(m, cpu)
    if m.vc[S.VC_PAUSED, cpu]:
        _push_irq(m, cpu, kind, a)
        for i in range(n):
            _push_irq(m, cpu, m.irq[1, cpu, i, 0], m.irq[1, cpu, i, 1])
        return
    for i in range(n, 0, -1):  # the injected handler first, then the ones that waited
        m.irq[1, cpu, i, 0] = m.irq[1, cpu, i - 1, 0]
        m.irq[1, cpu, i, 1] = m.irq[1, cpu, i - 1, 1]
    m.irq[1, cpu, 0, 0] = kind
    m.irq[1, cpu, 0, 1] = a
    interrupt(m, cpu, n + 1, True)


# ==================================================================== starts (trampoline)


@core
def _executor_start(m, cpu, task, t):
    """``VcpuExecutor.start``."""
    m.vc[S.VC_NEED_RESCHED, cpu] = 0  # __schedule: clear_tsk_need_resched
    if m.vc[S.VC_PAUSED, cpu]:
        m.vc[S.VC_OWED, cpu] = max(m.vc[S.VC_OWED, cpu], t - now(m))
        return
    owed = m.vc[S.VC_OWED, cpu]
    m.vc[S.VC_OWED, cpu] = 0
    run_task(m, cpu, task, t + owed)


@core
def _host_start(m, hcpu, thread, t):
    """``Host.start``: a host thread got host CPU ``hcpu``."""
    m.hc[S.HC_HEPOCH, hcpu] += 1
    epoch = m.hc[S.HC_HEPOCH, hcpu]
    when = max(t, m.rq[S.RQ_SLICE_END, rq_of(m, S.HOST, hcpu)])
    c = m.tk[S.TK_NOTIFIER, thread]
    if c < 0:  # a host task
        at(m, when, S.NORMAL, S.EV_TICK, hcpu, epoch, 0)
        return
    m.vc[S.VC_ON_CPU, c] = hcpu
    set_mode(m, c, S.VM_RUNNING)
    at(m, when, S.NORMAL, S.EV_TICK, hcpu, epoch, 0)
    resume_vcpu(m, c, t)


@core
def _run_pending_starts(m):
    while m.g[S.G_PEND] and not m.g[S.G_ERR]:
        m.g[S.G_PEND] = 0
        sid = m.g[S.G_PEND_SID]
        cpu = m.g[S.G_PEND_CPU]
        task = m.g[S.G_PEND_TASK]
        t = m.g[S.G_PEND_TIME]
        if sid == S.GUEST:
            _executor_start(m, cpu, task, t)
        else:
            _host_start(m, cpu, task, t)


# ==================================================================== event handlers


@core
def _tick(m, hcpu, epoch):
    if epoch != m.hc[S.HC_HEPOCH, hcpu]:
        return
    r = rq_of(m, S.HOST, hcpu)
    thread = m.rq[S.RQ_CURRENT, r]
    if thread < 0:
        return
    if m.rq[S.RQ_QLEN, r] == 0:
        update_curr(m, S.HOST, r)
        m.rq[S.RQ_SLICE_END, r] = now(m) + policy_slice(m, S.HOST, r)
        at(m, m.rq[S.RQ_SLICE_END, r], S.NORMAL, S.EV_TICK, hcpu, epoch, 0)
        return
    c = m.tk[S.TK_NOTIFIER, thread]
    if c >= 0:
        pause_vcpu(m, c)
        m.vc[S.VC_ON_CPU, c] = -1
        set_mode(m, c, S.VM_PREEMPTED)
    m.hc[S.HC_HEPOCH, hcpu] += 1
    schedule(m, S.HOST, hcpu, True)


@core
def _exit_task(m, cpu):
    """``VcpuExecutor._exit``: the thread is done; the process exits with its last thread."""
    task = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, cpu)]
    m.tk[S.TK_STATE, task] = S.DEAD
    proc = m.tx[S.TX_PROC, task]
    t0 = m.pr[S.PR_T0, proc]
    for t in range(t0, t0 + m.pr[S.PR_NT, proc]):
        if m.tk[S.TK_STATE, t] != S.DEAD:
            schedule(m, S.GUEST, cpu, True)
            return
    _exit_process(m, proc)
    schedule(m, S.GUEST, cpu, True)


@core
def _exit_process(m, proc):
    """``GuestKernel.exit_process`` for the flat kernel: free every mapped frame."""
    if not m.pr[S.PR_ALIVE, proc]:
        return
    m.pr[S.PR_ALIVE, proc] = 0
    m.pr[S.PR_EXITED_NS, proc] = now(m)
    first = m.pr[S.PR_SLOT0, proc]
    for slot in range(first, first + m.pr[S.PR_NSLOTS, proc]):
        gfn = m.mgfn[slot]
        if gfn < 0:
            continue
        kind = m.gkind[gfn]
        if kind == 3 or kind == 4:  # ZERO, KERNEL: never freed
            continue
        m.refcount[gfn] -= 1
        if m.refcount[gfn] == 0:
            m.gkind[gfn] = 0
            n = m.gnfree[0]
            m.gfree[n - (m.gkind.shape[0] - m.gnfree[1])] = gfn
            m.gnfree[0] = n + 1
    for slot in range(first, first + m.pr[S.PR_NSLOTS, proc]):
        m.mgfn[slot] = -1
        if not (m.mstate[slot] & 0x10):
            m.mstate[slot] = 0
    m.pr[S.PR_RSS, proc] = 0
    m.g[S.G_ALIVE] -= 1
    if m.g[S.G_PENDING_SPAWNS] == 0 and m.g[S.G_ALIVE] == 0:
        m.g[S.G_STOPPED] = 1


@core
def _spawn(m, proc):
    m.g[S.G_PENDING_SPAWNS] -= 1
    m.pr[S.PR_ALIVE, proc] = 1
    m.g[S.G_ALIVE] += 1
    t0 = m.pr[S.PR_T0, proc]
    for t in range(t0, t0 + m.pr[S.PR_NT, proc]):
        add_task(m, S.GUEST, t)


@core
def dispatch(m, kind, a0, a1, a2):
    """Run one event."""
    if kind == S.EV_SEGMENT_END:
        cpu = a0
        if a1 != m.vc[S.VC_EPOCH, cpu]:
            return
        m.vc[S.VC_SEG, cpu] = 0
        task = m.vc[S.VC_SEG_TASK, cpu]
        if m.vc[S.VC_SEG_ACCESS, cpu]:
            # a carry segment (count 0) ran part of one access; any other ended on a whole one
            count = m.vc[S.VC_SEG_COUNT, cpu]
            m.tx[S.TX_SPENT, task] = (m.vc[S.VC_SEG_SPENT0, cpu] + now(m)
                                      - m.vc[S.VC_SEG_T0, cpu]) if count == 0 else 0
            _commit(m, cpu, count)
        else:
            _commit(m, cpu, _units_by(m, cpu, now(m)))
        t = now(m)
        if m.vc[S.VC_SEG_FAULT, cpu]:
            gfn = m.vc[S.VC_SEG_EPT_GFN, cpu]
            t = _host_fault(m, cpu, task, gfn, t, -1) if gfn >= 0 else _fault(m, cpu, task, t)
            if t < 0:
                return
        run_task(m, cpu, task, t)
    elif kind == S.EV_RERUN:
        if a1 == m.vc[S.VC_EPOCH, a0]:
            task = m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, a0)]
            if task >= 0:
                run_task(m, a0, task, now(m))
    elif kind == S.EV_SLICE_EXPIRED:
        if a1 == m.vc[S.VC_EPOCH, a0]:
            schedule(m, S.GUEST, a0, True)
    elif kind == S.EV_BLOCK:
        if a1 == m.vc[S.VC_EPOCH, a0]:
            schedule(m, S.GUEST, a0, False)
    elif kind == S.EV_EXIT:
        if a1 == m.vc[S.VC_EPOCH, a0]:
            _exit_task(m, a0)
    elif kind == S.EV_TIMER_WAKE:
        if m.tk[S.TK_STATE, a0] == S.INTERRUPTIBLE:
            guest_wake_up(m, a0)
    elif kind == S.EV_RESCHED_IPI:
        cpu = a0
        if not m.vc[S.VC_NEED_RESCHED, cpu] or m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, cpu)] < 0:
            return
        if m.vc[S.VC_HELD, cpu]:
            return
        if m.vc[S.VC_PAUSED, cpu]:  # a halted vCPU wakes for the IPI
            ipi_halted(m, cpu)
            return
        pause_vcpu(m, cpu)
        m.vc[S.VC_PAUSED, cpu] = 0
        m.vc[S.VC_OFF_AT, cpu] = -1
        m.vc[S.VC_NEED_RESCHED, cpu] = 0
        schedule(m, S.GUEST, cpu, True)
    elif kind == S.EV_IDLE_DISPATCH:
        r = rq_of(m, a0, a1)
        m.rq[S.RQ_KICK_PENDING, r] = 0
        if m.rq[S.RQ_CURRENT, r] < 0:
            schedule(m, a0, a1, True)
    elif kind == S.EV_SPAWN:
        _spawn(m, a0)
    elif kind == S.EV_TICK:
        _tick(m, a0, a1)
    elif kind == S.EV_TICK_NOW:
        if m.rq[S.RQ_QLEN, rq_of(m, S.HOST, a0)] > 0:
            _tick(m, a0, a1)
    elif kind == S.EV_HALT_IDLE:
        c = a0
        if a1 != m.vc[S.VC_HALT_EPOCH, c] or m.vc[S.VC_ON_CPU, c] < 0:
            return
        r = rq_of(m, S.GUEST, c)
        if m.rq[S.RQ_CURRENT, r] >= 0 or m.rq[S.RQ_QLEN, r] > 0:
            return
        if m.cf[S.CF_PERIODIC]:  # Host._idle_tick at the next tick
            tick = m.sp[S.GUEST, S.SP_TICK]
            at(m, (now(m) // tick + 1) * tick, S.URGENT, S.EV_IDLE_TICK, c,
               m.vc[S.VC_HALT_EPOCH, c], 0)
        host_block(m, c, S.VM_IDLE, S.INTERRUPTIBLE)
    elif kind == S.EV_IDLE_TICK:
        if a1 == m.vc[S.VC_HALT_EPOCH, a0] and m.vc[S.VC_VMODE, a0] == S.VM_IDLE:
            host_wake(m, a0)
    elif kind == S.EV_GUEST_TIMER:
        _guest_timer(m, a0, a1)
    elif kind == S.EV_SWAP_IN_DONE:
        _swap_in_done(m, a0)
    elif kind == S.EV_DELIVER_INJECTED:
        _deliver_injected(m, a0, a1, a2)
    elif kind == S.EV_KICK_IPI:
        c = a0
        if m.vc[S.VC_ON_CPU, c] >= 0:
            interrupt(m, c, 0, True)
        elif m.tk[S.TK_STATE, m.vc[S.VC_THREAD, c]] == S.INTERRUPTIBLE:
            host_wake(m, c)
    elif kind == S.EV_FLOATING_IPI:
        nv = m.g[S.G_NV]
        for c in range(nv):
            if m.vc[S.VC_ON_CPU, c] >= 0 and not m.vc[S.VC_PAUSED, c]:
                interrupt(m, c, 0, True)
                return
        for c in range(nv):
            if m.tk[S.TK_STATE, m.vc[S.VC_THREAD, c]] == S.INTERRUPTIBLE:
                m.vc[S.VC_IRQ_PENDING, c] = 1
                host_wake(m, c)
                return


@core
def run_events(m, max_events):
    """``Simulator.run`` until the heap is empty, ``stop``, ``until``, ``max_events`` events,
    an error, or a chunk request for Python.  Returns the number of events run."""
    count = 0
    until = m.g[S.G_UNTIL]
    has_until = m.g[S.G_HAS_UNTIL] != 0
    while m.hg[H_SIZE] > 0 and not m.g[S.G_STOPPED]:
        if m.g[S.G_ERR] or m.g[S.G_NREQ] > 0 or count >= max_events:
            break
        if 2 * m.hg[H_SIZE] > m.heap.shape[0]:
            break  # Python grows the heap and calls again
        if m.sw[S.SW_RANDOM_LATENCY] and 2 * m.sw[S.SW_LAT_POS] > m.lat.shape[0]:
            break  # Python draws more swap latencies
        top = m.heap[0]
        if has_until and m.ev[EV_TIME, top] >= until:
            m.hg[H_NOW] = until
            break
        slot = heap_pop(m.ev, m.heap, m.evfree, m.hg)
        m.hg[H_NOW] = m.ev[EV_TIME, slot]
        kind = m.ev[EV_KIND, slot]
        a0 = m.ev[EV_A0, slot]
        a1 = m.ev[EV_A1, slot]
        a2 = m.ev[EV_A2, slot]
        dispatch(m, kind, a0, a1, a2)
        _run_pending_starts(m)
        count += 1
        if m.kvm[K.ST_SC][K.SC_ERR] or m.s390[Z.ST_SC][Z.SC_ERR]:  # a protocol invariant broke
            fail(m, S.ERR_INVARIANT, -10)
    m.g[S.G_EVENTS] += count
    return count


@core
def truncate_all(m):
    for c in range(m.g[S.G_NV]):
        truncate(m, c)
