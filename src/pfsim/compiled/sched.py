"""Compiled scheduler: :class:`pfsim.sched.Scheduler` with its RR, CFS and EEVDF policies, over
arrays.

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

from pfsim.compiled.jit import core, core_inline

from pfsim.compiled import state as S
from pfsim.engine.arrayheap import H_NOW, heap_push
from pfsim.machine.trace_records import K_GUEST_SWITCH, K_HOST_SWITCH, record


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


# ------------------------------------------------------------------ policy (RR / CFS / EEVDF)
# pfsim.sched.policy is the readable reference: same rules, same order, same tie-breaks.


@core
def _update_min(m, r, curr, skip=-1):
    """``update_min_vruntime``: ``max(min_vruntime, min(curr, leftmost))`` (curr < 0: none), as
    if task ``skip`` were not in ``r``'s queue."""
    n = m.rq[S.RQ_QLEN, r]
    have = False
    low = 0
    for i in range(n):
        u = m.rqq[r, i]
        if u == skip:
            continue
        v = m.tk[S.TK_VRUNTIME, u]
        if not have or v < low:
            low = v
            have = True
    if curr >= 0:
        v = m.tk[S.TK_VRUNTIME, curr]
        if not have or v < low:
            low = v
            have = True
    if have and low > m.rq[S.RQ_MIN_VRUNTIME, r]:
        m.rq[S.RQ_MIN_VRUNTIME, r] = low


@core
def _on_rq_current(m, r):
    """EEVDF: the current task if it is still on the queue (running, or put back as
    runnable by schedule()), else -1."""
    cur = m.rq[S.RQ_CURRENT, r]
    if cur >= 0:
        st = m.tk[S.TK_STATE, cur]
        if st != S.RUNNING and st != S.RUNNABLE:
            return -1
    return cur


@core
def _avg_sum(m, r):
    """EEVDF: (sum of vruntimes, count) over the queue and a running current task."""
    total = 0
    n = m.rq[S.RQ_QLEN, r]
    for i in range(n):
        total += m.tk[S.TK_VRUNTIME, m.rqq[r, i]]
    cur = m.rq[S.RQ_CURRENT, r]
    if cur >= 0 and m.tk[S.TK_STATE, cur] == S.RUNNING:
        total += m.tk[S.TK_VRUNTIME, cur]
        n += 1
    return total, n


@core
def _eevdf_best(m, r):
    """``pick_eevdf``: the queue index of the pick, -2 for the running current task, -1 none."""
    total, n = _avg_sum(m, r)
    if n == 0:
        return -1
    cur = _on_rq_current(m, r)
    if cur >= 0 and total < m.tk[S.TK_VRUNTIME, cur] * n:
        cur = -1  # not eligible
    if cur >= 0 and m.tk[S.TK_VLAG, cur] == m.tk[S.TK_DEADLINE, cur]:  # RUN_TO_PARITY
        best_t = cur
    else:
        best_t = cur
        q = m.rq[S.RQ_QLEN, r]
        for i in range(q):
            t = m.rqq[r, i]
            if t == cur or total < m.tk[S.TK_VRUNTIME, t] * n:
                continue
            if best_t < 0:
                best_t = t
                continue
            d, bd = m.tk[S.TK_DEADLINE, t], m.tk[S.TK_DEADLINE, best_t]
            if d < bd or (d == bd and best_t != cur
                          and m.tk[S.TK_VRUNTIME, t] < m.tk[S.TK_VRUNTIME, best_t]):
                best_t = t
    if best_t < 0:
        return -1
    q = m.rq[S.RQ_QLEN, r]
    for i in range(q):
        if m.rqq[r, i] == best_t:
            return i
    return -2


@core
def policy_pick(m, sid, r):
    n = m.rq[S.RQ_QLEN, r]
    if n == 0:
        return -1
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return q_delete(m, r, 0)
    if policy == S.P_EEVDF:
        i = _eevdf_best(m, r)
        if i < 0:  # schedule() always has the current task in the queue if it is runnable
            fail(m, S.ERR_INVARIANT, r)
            return -1
        return q_delete(m, r, i)
    best = 0
    for i in range(1, n):  # min() keeps the first of equal keys
        if m.tk[S.TK_VRUNTIME, m.rqq[r, i]] < m.tk[S.TK_VRUNTIME, m.rqq[r, best]]:
            best = i
    return q_delete(m, r, best)


@core
def policy_slice(m, sid, r):
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return m.sp[sid, S.SP_TIMESLICE]
    if policy == S.P_EEVDF:
        cur = m.rq[S.RQ_CURRENT, r]
        return m.tk[S.TK_DEADLINE, cur] - m.tk[S.TK_VRUNTIME, cur]
    nr = m.rq[S.RQ_QLEN, r] + 1
    if nr <= m.sp[sid, S.SP_NR_LATENCY]:
        period = m.sp[sid, S.SP_LATENCY]
    else:
        period = m.sp[sid, S.SP_MIN_GRAN] * nr
    return period // nr


@core
def policy_account(m, sid, r, t, ran):
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return
    m.tk[S.TK_VRUNTIME, t] += ran
    if policy == S.P_EEVDF and m.tk[S.TK_VRUNTIME, t] >= m.tk[S.TK_DEADLINE, t]:
        m.tk[S.TK_DEADLINE, t] = m.tk[S.TK_VRUNTIME, t] + m.sp[sid, S.SP_BASE_SLICE]
    _update_min(m, r, t)


@core
def policy_dequeue(m, sid, r, t, sleep):
    """``t`` leaves ``r``: asleep or dead (``sleep``: it is the current task) or pulled (still
    in the queue)."""
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return
    if policy == S.P_CFS:
        if sleep:
            _update_min(m, r, t)
        else:
            _update_min(m, r, m.rq[S.RQ_CURRENT, r], t)
        return
    total, n = _avg_sum(m, r)
    if sleep:
        total += m.tk[S.TK_VRUNTIME, t]
        n += 1
    lag = total // n - m.tk[S.TK_VRUNTIME, t]
    limit = m.sp[sid, S.SP_LAG_LIMIT]
    m.tk[S.TK_VLAG, t] = max(-limit, min(limit, lag))
    if sleep:
        _update_min(m, r, -1)
    else:
        cur = m.rq[S.RQ_CURRENT, r]
        if cur >= 0 and m.tk[S.TK_STATE, cur] != S.RUNNING:
            cur = -1
        _update_min(m, r, cur, t)


@core
def policy_migrate(m, sid, t, src, r):
    if m.sp[sid, S.SP_POLICY] == S.P_CFS:
        m.tk[S.TK_VRUNTIME, t] += m.rq[S.RQ_MIN_VRUNTIME, r] - m.rq[S.RQ_MIN_VRUNTIME, src]


@core
def policy_place(m, sid, r, t, wakeup, new):
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return
    if policy == S.P_CFS:
        if new:
            m.tk[S.TK_VRUNTIME, t] = m.rq[S.RQ_MIN_VRUNTIME, r]
        elif wakeup:
            floor = m.rq[S.RQ_MIN_VRUNTIME, r] - (m.sp[sid, S.SP_LATENCY] >> 1)
            m.tk[S.TK_VRUNTIME, t] = max(m.tk[S.TK_VRUNTIME, t], floor)
        return
    total, n = _avg_sum(m, r)
    lag = 0
    if n:
        avg = total // n
        if not new:
            x = m.tk[S.TK_VLAG, t] * (n + 1)
            lag = -((-x) // n) if x < 0 else x // n  # div_s64 rounds toward zero
    else:
        avg = m.rq[S.RQ_MIN_VRUNTIME, r]
    m.tk[S.TK_VRUNTIME, t] = avg - lag
    m.tk[S.TK_DEADLINE, t] = avg - lag + m.sp[sid, S.SP_BASE_SLICE]


@core
def policy_set_next(m, sid, t):
    if m.sp[sid, S.SP_POLICY] == S.P_EEVDF:
        m.tk[S.TK_VLAG, t] = m.tk[S.TK_DEADLINE, t]


@core
def policy_should_preempt(m, sid, r, woken):
    policy = m.sp[sid, S.SP_POLICY]
    if policy == S.P_RR:
        return False
    cur = m.rq[S.RQ_CURRENT, r]
    if cur < 0:
        return False
    if policy == S.P_EEVDF:
        i = _eevdf_best(m, r)
        return i >= 0 and m.rqq[r, i] == woken
    return m.tk[S.TK_VRUNTIME, cur] - m.tk[S.TK_VRUNTIME, woken] > m.sp[sid, S.SP_WAKEUP_GRAN]


@core_inline
def _steal_clock(m, sid, r):
    """``Scheduler.steal_clock``: the steal the guest CPU of ``r`` has reported (``Host.
    steal_clock``), or -1 without steal accounting (the host scheduler, steal_time off)."""
    if sid != S.GUEST or not m.cf[S.CF_STEAL]:
        return -1
    return m.vc[S.VC_TIME_PREEMPTED, r - m.sp[sid, S.SP_RQ_BASE]]


@core
def update_curr(m, sid, r):
    """``Scheduler._update_curr``: charge the current task's time since ``exec_start``, the
    steal reported since the last charge taken off (at most the time charged)."""
    cur = m.rq[S.RQ_CURRENT, r]
    t_now = now(m)
    if cur < 0 or t_now <= m.rq[S.RQ_EXEC_START, r]:
        return
    ran = t_now - m.rq[S.RQ_EXEC_START, r]
    m.rq[S.RQ_EXEC_START, r] = t_now
    clock = _steal_clock(m, sid, r)
    if clock >= 0:
        steal = min(clock - m.rq[S.RQ_STEAL_SEEN, r], ran)
        if steal > 0:
            m.rq[S.RQ_STEAL_SEEN, r] += steal
            ran -= steal
            if ran == 0:
                return
    m.tk[S.TK_RUNTIME, cur] += ran
    policy_account(m, sid, r, cur, ran)


@core_inline
def _new_slice(m, sid, r, start):
    """``Scheduler._new_slice``: the slice begins at ``start``; earlier steal is not charged."""
    m.rq[S.RQ_SLICE_END, r] = start + policy_slice(m, sid, r)
    clock = _steal_clock(m, sid, r)
    if clock >= 0:
        m.rq[S.RQ_STEAL_SEEN, r] = clock
        m.rq[S.RQ_SLICE_STEAL, r] = clock


@core_inline
def _exact_end(m, sid, r):
    clock = _steal_clock(m, sid, r)
    if clock < 0:
        return m.rq[S.RQ_SLICE_END, r]
    return m.rq[S.RQ_SLICE_END, r] + clock - m.rq[S.RQ_SLICE_STEAL, r]


@core_inline
def slice_end(m, sid, cpu):
    """``Scheduler.slice_end``: the exact end pushed back by steal, then on the tick."""
    r = rq_of(m, sid, cpu)
    end = _exact_end(m, sid, r)
    tick = m.sp[sid, S.SP_TICK]
    if tick == 0:
        return end
    if m.sp[sid, S.SP_TICK_STRICT]:
        return (end // tick + 1) * tick
    return -((-end) // tick) * tick


@core_inline
def slice_used(m, sid, cpu, t):
    """``Scheduler.slice_used``: a tick at ``t`` finds the current slice used up."""
    end = _exact_end(m, sid, rq_of(m, sid, cpu))
    if m.sp[sid, S.SP_TICK_STRICT]:
        return t > end
    return t >= end


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
    old_cpu = m.tk[S.TK_CPU, t]
    cpu = select_cpu(m, sid, t, False)
    m.tk[S.TK_CPU, t] = cpu
    r = rq_of(m, sid, cpu)
    if old_cpu >= 0 and old_cpu != cpu:
        policy_migrate(m, sid, t, rq_of(m, sid, old_cpu), r)
    update_curr(m, sid, r)
    policy_place(m, sid, r, t, True, False)
    q_append(m, r, t)
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
    update_curr(m, sid, r)
    policy_place(m, sid, r, t, False, True)
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
            update_curr(m, sid, busiest)
            policy_dequeue(m, sid, busiest, t, False)
            q_delete(m, busiest, i)
            m.tk[S.TK_CPU, t] = r - base
            policy_migrate(m, sid, t, busiest, r)
            policy_place(m, sid, r, t, False, False)
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
        update_curr(m, sid, r)
        m.rq[S.RQ_EXEC_START, r] = t_now
        if m.tk[S.TK_STATE, prev] != S.RUNNING:  # it sleeps or dies: dequeue_entity
            policy_dequeue(m, sid, r, prev, True)
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
        _new_slice(m, sid, r, t_now)
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
    record(m.tr, m.trm, t_now, K_GUEST_SWITCH if sid == S.GUEST else K_HOST_SWITCH, cpu,
           m.tk[S.TK_TID, nxt] if nxt >= 0 else -1, m.tk[S.TK_TID, prev] if prev >= 0 else -1,
           0, t_now, m.tk[S.TK_STATE, prev] if prev >= 0 else 0)
    if nxt >= 0:
        policy_set_next(m, sid, nxt)
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
    _new_slice(m, sid, r, start)
    _start(m, sid, cpu, nxt, start)
