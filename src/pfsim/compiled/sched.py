"""Compiled scheduler: :class:`pfsim.sched.Scheduler` with its RR and CFS policies, over arrays.

One set of functions serves both instances, selected by ``sid`` (``S.GUEST``: guest tasks on
vCPUs; ``S.HOST``: vCPU threads and host tasks on host CPUs), as the Python class serves both.
The callbacks are wired as in the reference: the guest scheduler's ``on_kick`` is the host's
``vcpu_kick``, its ``on_idle`` the host's ``vcpu_idle`` and its ``on_preempt`` the guest's
reschedule IPI; the host scheduler's ``on_preempt`` is a host-CPU tick now.

A task's start (``Executor.start``) is recorded in ``g[G_PEND_*]`` instead of being called:
every ``schedule()`` is the last thing its callers do, up to the event handler, so the event
loop runs the start right after the handler returns, in the reference's order, without
recursion (numba cannot load cached recursive functions).
"""

from __future__ import annotations

from pfsim.compiled.jit import core

from pfsim.compiled import state as S
from pfsim.engine.arrayheap import H_NOW, heap_push


@core
def at(m, time, prio, kind, a0, a1, a2):
    """``Simulator.at``: schedule an event (an error stops the core)."""
    if not heap_push(m.ev, m.heap, m.evfree, m.hg, time, prio, kind, a0, a1, a2):
        if m.g[S.G_ERR] == 0:
            m.g[S.G_ERR] = S.ERR_CAPACITY if time >= m.hg[H_NOW] else S.ERR_INVARIANT
            m.g[S.G_ERR_ARG] = kind


@core
def fail(m, code, arg):
    if m.g[S.G_ERR] == 0:
        m.g[S.G_ERR] = code
        m.g[S.G_ERR_ARG] = arg


@core
def now(m):
    return m.hg[H_NOW]


# ------------------------------------------------------------------ tasks


@core
def task_put(m, t):
    """``put_task_struct``."""
    if m.tk[S.TK_FREED, t] or m.tk[S.TK_USAGE, t] <= 0:
        fail(m, S.ERR_INVARIANT, t)
        return
    m.tk[S.TK_USAGE, t] -= 1
    if m.tk[S.TK_USAGE, t] == 0:
        if m.tk[S.TK_STATE, t] != S.DEAD:
            fail(m, S.ERR_INVARIANT, t)
        m.tk[S.TK_FREED, t] = 1


@core
def is_sleeping(m, t):
    s = m.tk[S.TK_STATE, t]
    return s == S.INTERRUPTIBLE or s == S.UNINTERRUPTIBLE


# ------------------------------------------------------------------ run-queue lists


@core
def rq_of(m, sid, cpu):
    return m.sp[sid, S.SP_RQ_BASE] + cpu


@core
def q_append(m, r, t):
    n = m.rq[S.RQ_QLEN, r]
    m.rqq[r, n] = t
    m.rq[S.RQ_QLEN, r] = n + 1


@core
def q_appendleft(m, r, t):
    n = m.rq[S.RQ_QLEN, r]
    for i in range(n, 0, -1):
        m.rqq[r, i] = m.rqq[r, i - 1]
    m.rqq[r, 0] = t
    m.rq[S.RQ_QLEN, r] = n + 1


@core
def q_delete(m, r, i):
    n = m.rq[S.RQ_QLEN, r]
    t = m.rqq[r, i]
    for j in range(i, n - 1):
        m.rqq[r, j] = m.rqq[r, j + 1]
    m.rq[S.RQ_QLEN, r] = n - 1
    return t


# ------------------------------------------------------------------ policy (RR / CFS)


@core
def policy_pick(m, sid, r):
    n = m.rq[S.RQ_QLEN, r]
    if n == 0:
        return -1
    if not m.sp[sid, S.SP_CFS]:
        return q_delete(m, r, 0)
    best = 0
    for i in range(1, n):  # min() keeps the first of equal keys
        if m.tk[S.TK_VRUNTIME, m.rqq[r, i]] < m.tk[S.TK_VRUNTIME, m.rqq[r, best]]:
            best = i
    return q_delete(m, r, best)


@core
def policy_slice(m, sid, r):
    if not m.sp[sid, S.SP_CFS]:
        return m.sp[sid, S.SP_TIMESLICE]
    running = m.rq[S.RQ_QLEN, r] + 1
    return max(m.sp[sid, S.SP_MIN_GRAN], m.sp[sid, S.SP_LATENCY] // running)


@core
def _update_min(m, r, running):
    n = m.rq[S.RQ_QLEN, r]
    have = False
    low = 0
    for i in range(n):
        v = m.tk[S.TK_VRUNTIME, m.rqq[r, i]]
        if not have or v < low:
            low = v
            have = True
    if running >= 0:
        v = m.tk[S.TK_VRUNTIME, running]
        if not have or v < low:
            low = v
            have = True
    if have:
        m.rq[S.RQ_MIN_VRUNTIME, r] = max(m.rq[S.RQ_MIN_VRUNTIME, r], low)


@core
def policy_account(m, sid, r, t, ran):
    if m.sp[sid, S.SP_CFS]:
        m.tk[S.TK_VRUNTIME, t] += ran
        _update_min(m, r, t)


@core
def policy_place(m, sid, r, t, wakeup):
    if not m.sp[sid, S.SP_CFS]:
        return
    minv = m.rq[S.RQ_MIN_VRUNTIME, r]
    if not m.tk[S.TK_HAS_VBASE, t]:
        m.tk[S.TK_VRUNTIME, t] = minv
    else:
        m.tk[S.TK_VRUNTIME, t] += minv - m.tk[S.TK_VBASE, t]
    m.tk[S.TK_HAS_VBASE, t] = 0
    if wakeup:
        m.tk[S.TK_VRUNTIME, t] = max(m.tk[S.TK_VRUNTIME, t], minv - m.sp[sid, S.SP_LATENCY] // 2)


@core
def policy_should_preempt(m, sid, r, woken):
    if not m.sp[sid, S.SP_CFS]:
        return False
    cur = m.rq[S.RQ_CURRENT, r]
    if cur < 0:
        return False
    cur_v = m.tk[S.TK_VRUNTIME, cur] + max(0, now(m) - m.rq[S.RQ_EXEC_START, r])
    return cur_v - m.tk[S.TK_VRUNTIME, woken] > m.sp[sid, S.SP_WAKEUP_GRAN]


# ------------------------------------------------------------------ placement


@core
def _allowed(m, sid, t, cpu):
    r = rq_of(m, sid, cpu)
    allowed = m.tk[S.TK_ALLOWED, t]
    return m.rq[S.RQ_ONLINE, r] != 0 and (allowed < 0 or allowed == cpu)


@core
def _load(m, r):
    return m.rq[S.RQ_QLEN, r] + (1 if m.rq[S.RQ_CURRENT, r] >= 0 else 0)


@core
def select_cpu(m, sid, t, new):
    if m.tk[S.TK_ALLOWED, t] >= 0:
        return m.tk[S.TK_ALLOWED, t]
    ncpus = m.sp[sid, S.SP_NCPUS]
    base = m.sp[sid, S.SP_RQ_BASE]
    any_online = False
    for c in range(ncpus):
        if m.rq[S.RQ_ONLINE, base + c]:
            any_online = True
    if not any_online:
        fail(m, S.ERR_INVARIANT, t)
        return 0
    prev = m.tk[S.TK_CPU, t]
    if not new and prev >= 0 and m.rq[S.RQ_ONLINE, base + prev]:
        pr = base + prev
        if m.rq[S.RQ_CURRENT, pr] < 0 and m.rq[S.RQ_QLEN, pr] == 0:
            return prev
        if m.sp[sid, S.SP_IDLE_BALANCE]:
            for c in range(ncpus):
                r = base + c
                if m.rq[S.RQ_ONLINE, r] and m.rq[S.RQ_CURRENT, r] < 0 and m.rq[S.RQ_QLEN, r] == 0:
                    return c
        return prev
    best = -1
    for c in range(ncpus):
        r = base + c
        if not m.rq[S.RQ_ONLINE, r]:
            continue
        if best < 0 or _load(m, r) < _load(m, base + best):
            best = c
    return best


@core
def _kick_plain(m, sid, cpu):
    """``_kick`` without (or after) ``on_kick``: dispatch the idle CPU at once."""
    r = rq_of(m, sid, cpu)
    if not m.rq[S.RQ_KICK_PENDING, r]:
        m.rq[S.RQ_KICK_PENDING, r] = 1
        at(m, now(m), S.NORMAL, S.EV_IDLE_DISPATCH, sid, cpu, 0)


@core
def _on_preempt(m, sid, cpu):
    if sid == S.GUEST:  # VcpuExecutor.preempt
        m.vc[S.VC_NEED_RESCHED, cpu] = 1
        at(m, now(m), S.URGENT, S.EV_RESCHED_IPI, cpu, 0, 0)
    else:  # Host._preempt_host_cpu
        at(m, now(m), S.URGENT, S.EV_TICK_NOW, cpu, m.hc[S.HC_HEPOCH, cpu], 0)


@core
def _wake_prepare(m, sid, t):
    """``wake_up`` up to the enqueue: -1 not woken, -2 woken on its CPU, else the CPU whose
    queue it joined (the caller kicks and checks preemption)."""
    state = m.tk[S.TK_STATE, t]
    if state != S.INTERRUPTIBLE and state != S.UNINTERRUPTIBLE:
        return -1
    if m.tk[S.TK_ON_CPU, t]:
        m.tk[S.TK_STATE, t] = S.RUNNING
        return -2
    m.tk[S.TK_STATE, t] = S.RUNNABLE
    cpu = select_cpu(m, sid, t, False)
    m.tk[S.TK_CPU, t] = cpu
    policy_place(m, sid, rq_of(m, sid, cpu), t, True)
    q_append(m, rq_of(m, sid, cpu), t)
    return cpu


@core
def _after_enqueue_preempt(m, sid, cpu, t):
    r = rq_of(m, sid, cpu)
    if m.rq[S.RQ_CURRENT, r] >= 0 and policy_should_preempt(m, sid, r, t):
        _on_preempt(m, sid, cpu)


# ------------------------------------------------------------------ host side of wake-ups


@core
def set_mode(m, c, mode):
    """``Host._set_mode``: account the time since the last change to the old mode."""
    t = now(m)
    m.vc[S.VC_TIME_RUNNING + m.vc[S.VC_VMODE, c], c] += t - m.vc[S.VC_SINCE, c]
    m.vc[S.VC_VMODE, c] = mode
    m.vc[S.VC_SINCE, c] = t


@core
def host_wake_up(m, t):
    """The host scheduler's ``wake_up`` (no ``on_kick`` there)."""
    cpu = _wake_prepare(m, S.HOST, t)
    if cpu == -1:
        return False
    if cpu == -2:
        return True
    if m.rq[S.RQ_CURRENT, rq_of(m, S.HOST, cpu)] < 0:
        _kick_plain(m, S.HOST, cpu)
    _after_enqueue_preempt(m, S.HOST, cpu, t)
    return True


@core
def host_wake(m, c):
    """``Host._wake``: the vCPU thread wakes; it waits for a host CPU (steal)."""
    thread = m.vc[S.VC_THREAD, c]
    if is_sleeping(m, thread) and host_wake_up(m, thread) and m.vc[S.VC_ON_CPU, c] < 0:
        set_mode(m, c, S.VM_PREEMPTED)


@core
def vcpu_kick(m, c):
    """``Host.vcpu_kick``: True when the vCPU thread is asleep (it is woken)."""
    if m.vc[S.VC_ON_CPU, c] >= 0:
        m.vc[S.VC_HALT_EPOCH, c] += 1
        return False
    thread = m.vc[S.VC_THREAD, c]
    stalled = m.vc[S.VC_VMODE, c] == S.VM_STALLED
    if stalled and m.tk[S.TK_STATE, thread] == S.UNINTERRUPTIBLE:
        return True
    if stalled:
        m.vc[S.VC_WAITING_GFN, c] = -1
    host_wake(m, c)
    return True


@core
def guest_wake_up(m, t):
    """The guest scheduler's ``wake_up``."""
    cpu = _wake_prepare(m, S.GUEST, t)
    if cpu == -1:
        return False
    if cpu == -2:
        return True
    if m.rq[S.RQ_CURRENT, rq_of(m, S.GUEST, cpu)] < 0 and not vcpu_kick(m, cpu):
        _kick_plain(m, S.GUEST, cpu)
    _after_enqueue_preempt(m, S.GUEST, cpu, t)
    return True


@core
def add_task(m, sid, t):
    """``add_task`` (``wake_up_new_task``)."""
    m.tk[S.TK_STATE, t] = S.RUNNABLE
    cpu = select_cpu(m, sid, t, True)
    m.tk[S.TK_CPU, t] = cpu
    r = rq_of(m, sid, cpu)
    policy_place(m, sid, r, t, False)
    q_append(m, r, t)
    if m.rq[S.RQ_CURRENT, r] < 0:
        if sid == S.HOST or not vcpu_kick(m, cpu):
            _kick_plain(m, sid, cpu)


# ------------------------------------------------------------------ schedule()


@core
def _pull(m, sid, r):
    base = m.sp[sid, S.SP_RQ_BASE]
    busiest = -1
    for c in range(m.sp[sid, S.SP_NCPUS]):
        other = base + c
        if other == r or m.rq[S.RQ_QLEN, other] == 0:
            continue
        if busiest < 0 or m.rq[S.RQ_QLEN, other] > m.rq[S.RQ_QLEN, busiest]:
            busiest = other
    if busiest < 0:
        return -1
    for i in range(m.rq[S.RQ_QLEN, busiest] - 1, -1, -1):
        t = m.rqq[busiest, i]
        if _allowed(m, sid, t, r - base):
            q_delete(m, busiest, i)
            m.tk[S.TK_CPU, t] = r - base
            m.tk[S.TK_VBASE, t] = m.rq[S.RQ_MIN_VRUNTIME, busiest]
            m.tk[S.TK_HAS_VBASE, t] = 1
            policy_place(m, sid, r, t, False)
            return t
    return -1


@core
def _start(m, sid, cpu, t, time):
    """``Scheduler._start``: recorded; the event loop calls the executor's ``start``."""
    if m.g[S.G_PEND]:
        fail(m, S.ERR_INVARIANT, -1000)  # a start that is not the last action of its event
        return
    m.g[S.G_PEND] = 1
    m.g[S.G_PEND_SID] = sid
    m.g[S.G_PEND_CPU] = cpu
    m.g[S.G_PEND_TASK] = t
    m.g[S.G_PEND_TIME] = time


@core
def schedule(m, sid, cpu, preempted):
    """``__schedule`` on ``cpu`` at the current time."""
    t_now = now(m)
    r = rq_of(m, sid, cpu)
    prev = m.rq[S.RQ_CURRENT, r]
    if prev >= 0:
        ran = max(0, t_now - m.rq[S.RQ_EXEC_START, r])
        m.tk[S.TK_RUNTIME, prev] += ran
        policy_account(m, sid, r, prev, ran)
        m.rq[S.RQ_EXEC_START, r] = t_now
        if m.tk[S.TK_STATE, prev] != S.RUNNING:
            m.tk[S.TK_VBASE, prev] = m.rq[S.RQ_MIN_VRUNTIME, r]
            m.tk[S.TK_HAS_VBASE, prev] = 1
        if m.tk[S.TK_STATE, prev] == S.RUNNING:
            m.tk[S.TK_STATE, prev] = S.RUNNABLE
            if preempted:
                q_append(m, r, prev)
            else:
                q_appendleft(m, r, prev)
    nxt = policy_pick(m, sid, r)
    if nxt < 0 and m.sp[sid, S.SP_IDLE_BALANCE] and m.rq[S.RQ_ONLINE, r]:
        nxt = _pull(m, sid, r)
    if nxt >= 0 and nxt == prev:
        m.tk[S.TK_STATE, nxt] = S.RUNNING
        m.rq[S.RQ_SLICE_END, r] = t_now + policy_slice(m, sid, r)
        _start(m, sid, cpu, nxt, t_now)
        return
    _context_switch(m, sid, cpu, prev, nxt, t_now)


@core
def _context_switch(m, sid, cpu, prev, nxt, t_now):
    r = rq_of(m, sid, cpu)
    m.rq[S.RQ_PREEMPT_COUNT, r] += 1
    notifiers = m.sp[sid, S.SP_NOTIFIER_KEY] > 0
    if prev >= 0:
        m.tk[S.TK_ON_CPU, prev] = 0
        prev_runnable = m.tk[S.TK_STATE, prev] == S.RUNNABLE
        c = m.tk[S.TK_NOTIFIER, prev]
        if c >= 0 and notifiers:  # kvm_sched_out
            if prev_runnable:
                m.vc[S.VC_KVM_PREEMPTED, c] = 1
            m.vc[S.VC_ARCH_PUTS, c] += 1
    elif m.rq[S.RQ_HAS_IDLE_SINCE, r]:
        m.rq[S.RQ_IDLE_NS, r] += t_now - m.rq[S.RQ_IDLE_SINCE, r]
        m.rq[S.RQ_HAS_IDLE_SINCE, r] = 0
    m.rq[S.RQ_SWITCHES, r] += 1
    m.rq[S.RQ_CURRENT, r] = nxt
    if nxt >= 0:
        m.tk[S.TK_STATE, nxt] = S.RUNNING
        m.tk[S.TK_ON_CPU, nxt] = 1
        m.tk[S.TK_CPU, nxt] = cpu
        m.tk[S.TK_SWITCHES_IN, nxt] += 1
        c = m.tk[S.TK_NOTIFIER, nxt]
        if c >= 0 and notifiers:  # kvm_sched_in
            m.vc[S.VC_KVM_PREEMPTED, c] = 0
            m.vc[S.VC_ARCH_LOADS, c] += 1
    m.rq[S.RQ_PREEMPT_COUNT, r] -= 1
    if prev >= 0 and m.tk[S.TK_STATE, prev] == S.DEAD:
        task_put(m, prev)
    if nxt < 0:
        m.rq[S.RQ_IDLE_SINCE, r] = t_now
        m.rq[S.RQ_HAS_IDLE_SINCE, r] = 1
        if sid == S.GUEST:  # Host.vcpu_idle
            m.vc[S.VC_HALT_EPOCH, cpu] += 1
            at(m, t_now, S.LATE, S.EV_HALT_IDLE, cpu, m.vc[S.VC_HALT_EPOCH, cpu], 0)
        return
    start = t_now + m.sp[sid, S.SP_SWITCH]
    m.rq[S.RQ_EXEC_START, r] = start
    m.rq[S.RQ_SLICE_END, r] = start + policy_slice(m, sid, r)
    _start(m, sid, cpu, nxt, start)
