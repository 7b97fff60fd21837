"""Compiled s390 pfault: the KVM host and guest protocol state machines as numba code.

Mirrors, with the same transitions, counters and order of effects, the Python reference
classes, restricted to the paths :class:`pfsim.apf_modes.S390Mode` uses
(``PfaultHost`` defaults: gmap_pfault_enabled, max_vcpus 255, no alloc_work; no other
interrupt pending, no error hva):

- ``pfsim.hypervisor.async_pf.AsyncPfQueues(sync=True)`` (virt/kvm/async_pf.c
  ``kvm_setup_async_pf``, ``async_pf_execute``, ``kvm_check_async_pf_completion``);
- ``pfsim.hypervisor.apf_s390.PfaultHost`` (arch/s390/kvm/diag.c ``__diag_page_ref_service``
  (TOKEN); kvm-s390.c ``kvm_arch_setup_async_pf``, ``kvm_arch_async_page_not_present``,
  ``kvm_arch_async_page_present``, ``vcpu_pre_run``; interrupt.c ``__inject_pfault_init``,
  ``__inject_pfault_done``, ``deliverable_irqs``, ``__deliver_pfault_init``,
  ``__deliver_pfault_done``);
- ``pfsim.guest.apf_s390.PfaultGuest`` (arch/s390/mm/pfault.c ``pfault_interrupt``; the
  DIAG block of ``__pfault_init``).

Not ported (S390Mode never reaches them): DIAG 0x258 CANCEL and its error returns, queue clears
(vCPU reset, userspace token INVALID, FLIC APF_DISABLE_WAIT), ``pfault_cpu_dead``,
``release_task``.  The work-queue code duplicates :mod:`pfsim.compiled.apf_kvm`'s on purpose:
numba's on-disk cache does not notice edits to njit functions imported from another file.

64-bit values (tokens, ``param64``, ``KVM_S390_PFAULT_TOKEN_INVALID``) are held as int64 bit
patterns: pass ``u64_to_i64(lpp_value(pid))`` as ``token_value`` and read ``param64`` back with
``i64_to_u64``.  The pid is the low word either way.

State: ``new_s390_state(nvcpus, ntasks)`` returns a tuple of int64 arrays, indexed by the
``ST_*`` constants; tables are ``[FIELD, index]`` with the field rows named below:

- ``st[ST_SC]``    ``[SC_FIELDS]`` scalars: error, work pool, floating list, host and guest
  counters, pfault_list head (``SC_*``);
- ``st[ST_HV]``    ``[HV_FIELDS, nvcpus]`` per-vCPU handshake, INIT slot, counters, queue
  lengths;
- ``st[ST_QUEUE]`` ``[nvcpus, 64]`` work indices on ``async_pf.queue``, oldest first;
- ``st[ST_DONE]``  ``[nvcpus, 64]`` work indices on ``async_pf.done``, oldest first;
- ``st[ST_WORK]``  ``[WK_FIELDS, work_cap]`` the work-item pool (``struct kvm_async_pf``);
- ``st[ST_WFREE]`` ``[work_cap]`` stack of free pool slots (``SC_WFREE_TOP`` entries);
- ``st[ST_FLOAT]`` ``[64 * 255]`` ring of pending floating PFAULT_DONE tokens
  (``SC_FLOAT_HEAD``, ``SC_FLOAT_LEN``);
- ``st[ST_TASK]``  ``[TK_FIELDS, ntasks]`` per task: ``thread.pfault_wait``, references held
  by the list, and the doubly linked ``pfault_list`` (head ``SC_LIST_HEAD``).

Errors: where Python raises ``InvariantViolation`` the kernels set ``st[ST_SC][SC_ERR]`` (first
error wins, ``SC_ERR_ARG`` = the vCPU / work / task concerned) and return ``ERROR``; check
``SC_ERR`` after each call (``s390_error(st)`` names it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pfsim.compiled.jit import core

# ---------------------------------------------------------------- constants (apf_s390.py)
ASYNC_PF_PER_VCPU = 64
EXT_IRQ_CP_SERVICE = 0x2603
PFAULT_INIT = 0x0600
PFAULT_DONE = 0x0680
PF_COMPLETE = 0x0080
SUBCODE_MASK = 0x0600
KVM_S390_PFAULT_TOKEN_INVALID = -1  # (1 << 64) - 1 as an int64 bit pattern
KVM_MAX_VCPUS = 255
FLOATING_CAP = ASYNC_PF_PER_VCPU * KVM_MAX_VCPUS
PSW_MASK_EXT = 1 << 56
PSW_MASK_PSTATE = 1 << 48
CR0_SERVICE_SIGNAL_SUBMASK = 0x200
LPP_PID_MASK = 0xFFFFFFFF
LPP_ADDRESS = 0x0340  # pfault_init_refbk(): gaddr, selmk = cmpmk = PSW_MASK_PSTATE
DIAG_RX_ADDR = 0x1000  # S390Mode.setup's parameter-block address

# task states (pfsim.sched.TaskState)
RUNNING, RUNNABLE, INTERRUPTIBLE, UNINTERRUPTIBLE, DEAD = 0, 1, 2, 3, 4

# ---------------------------------------------------------------- state tuple
ST_SC, ST_HV, ST_QUEUE, ST_DONE, ST_WORK, ST_WFREE, ST_FLOAT, ST_TASK = range(8)

# scalars: errors, work pool, floating list (PfaultHost), guest (PfaultGuest)
(SC_ERR, SC_ERR_ARG, SC_SERIAL, SC_ALLOCATED, SC_FREED_TOTAL, SC_WFREE_TOP,
 SC_GMAP_PFAULT_ENABLED, SC_FLOAT_HEAD, SC_FLOAT_LEN, SC_DONE_INJECTED, SC_DONE_DELIVERED,
 SC_DONE_DROPPED, SC_HOST_WARNINGS,
 SC_IRQEXT_PFL, SC_INIT_COUNT, SC_DONE_COUNT, SC_EARLY_COMPLETIONS, SC_EARLY_CONSUMED,
 SC_IGNORED_DONE, SC_DROPPED_UNKNOWN_PID, SC_NOT_CURRENT, SC_BLOCKS, SC_WAKEUPS, SC_WARNED,
 SC_GUEST_WARNINGS, SC_LIST_HEAD, SC_LIST_LEN) = range(27)
SC_FIELDS = 27

# per-vCPU host rows (S390VcpuPfault, plus VcpuAsyncPf's queued and the list lengths)
(HV_PFAULT_TOKEN, HV_PFAULT_SELECT, HV_PFAULT_COMPARE, HV_INIT_PENDING, HV_INIT_TOKEN,
 HV_PFAULT_SYNC, HV_DIAGNOSE_258, HV_INIT_INJECTED, HV_INIT_DELIVERED, HV_INIT_DISCARDED,
 HV_SYNC_REASON, HV_QUEUED, HV_QLEN, HV_DLEN) = range(14)
HV_FIELDS = 14

# work-item rows (AsyncPfWork); a slot is free when WK_FREED is 1
(WK_SERIAL, WK_VCPU, WK_GFN, WK_TOKEN, WK_NOTPRESENT_INJECTED, WK_STATE, WK_ON_QUEUE,
 WK_ON_DONE, WK_FREED) = range(9)
WK_FIELDS = 9
PENDING, WORK_RUNNING, RETURNED, CANCELLED = 0, 1, 2, 3  # WorkState

# per-task guest rows: pfault_wait (0, 1, -1), list references, pfault_list links
TK_WAIT, TK_LIST_REFS, TK_ON_LIST, TK_PREV, TK_NEXT = range(5)
TK_FIELDS = 5

# ---------------------------------------------------------------- outcome codes
ERROR = -2  # an InvariantViolation (or a bad work index): see SC_ERR
# S390SyncReason, in enum order (HV_SYNC_REASON; -1: none yet)
(GMAP_PFAULT_DISABLED, TOKEN_INVALID, NOT_SELECTED, EXT_DISABLED, IRQ_PENDING,
 SUBCLASS_DISABLED, TOKEN_READ_FAILED, QUEUE_FULL, ERROR_HVA, NO_MEMORY) = range(10)
SYNC_REASONS = ("gmap_pfault_disabled", "token_invalid", "psw_select_compare", "ext_disabled",
                "irq_pending", "cr0_service_signal_off", "token_read_failed", "queue_full",
                "error_hva", "no_memory")
"""``S390SyncReason`` values of each HV_SYNC_REASON code."""
# PfaultOutcome, in enum order
(NOT_PFAULT, DROPPED_UNKNOWN_PID, WARN_NOT_CURRENT, BLOCK, REBLOCK, EARLY_CONSUMED, WOKEN,
 EARLY_RECORDED, LEFTOVER_IGNORED) = range(9)

# ---------------------------------------------------------------- error codes (SC_ERR)
(ERR_NONE, ERR_USE_AFTER_FREE, ERR_NOT_PENDING, ERR_NOT_RUNNING, ERR_RETIRE_ON_DONE,
 ERR_DOUBLE_FREE, ERR_FREE_BEFORE_RETURN, ERR_BAD_WORK, ERR_WORK_POOL_FULL, ERR_GET_FREED,
 ERR_PUT_UNDERFLOW, ERR_FREED_NOT_DEAD) = range(12)
ERROR_NAMES = (
    "", "use after free of a work item", "work_started: not pending",
    "work_returned: not running", "retire of an item still on done", "double free",
    "work item freed before its work function returned", "work index out of range",
    "capacity: work pool full", "get_task_struct on a freed task",
    "put_task_struct underflow", "task freed while not dead",
)


def u64_to_i64(value: int) -> int:
    """A u64 (e.g. ``lpp_value(pid)``) as the int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def i64_to_u64(value: int) -> int:
    """An int64 bit pattern back to the u64 Python uses."""
    return int(value) & ((1 << 64) - 1)


# ================================================================ state


def new_s390_state(nvcpus: int, ntasks: int) -> tuple[np.ndarray, ...]:
    """Empty state of ``PfaultHost(nvcpus)`` + ``PfaultGuest`` for ``ntasks`` tasks."""
    work_cap = nvcpus * ASYNC_PF_PER_VCPU  # no wakeup_all on s390: queued <= 64
    sc = np.zeros(SC_FIELDS, np.int64)
    sc[SC_WFREE_TOP] = work_cap
    sc[SC_GMAP_PFAULT_ENABLED] = 1
    sc[SC_LIST_HEAD] = -1
    hv = np.zeros((HV_FIELDS, nvcpus), np.int64)
    hv[HV_PFAULT_TOKEN] = KVM_S390_PFAULT_TOKEN_INVALID
    hv[HV_SYNC_REASON] = -1
    work = np.zeros((WK_FIELDS, work_cap), np.int64)
    work[WK_FREED] = 1
    task = np.zeros((TK_FIELDS, ntasks), np.int64)
    task[TK_PREV] = -1
    task[TK_NEXT] = -1
    return (
        sc, hv,
        np.full((nvcpus, ASYNC_PF_PER_VCPU), -1, np.int64),
        np.full((nvcpus, ASYNC_PF_PER_VCPU), -1, np.int64),
        work,
        np.arange(work_cap - 1, -1, -1, dtype=np.int64),  # pops slot 0 first
        np.zeros(FLOATING_CAP, np.int64),
        task,
    )


@core
def _fail(sc, code, arg):
    """Record an InvariantViolation; the first one is kept."""
    if sc[SC_ERR] == ERR_NONE:
        sc[SC_ERR] = code
        sc[SC_ERR_ARG] = arg


# ================================================================ AsyncPfQueues (sync=True)


@core
def _q_setup(st, c, gfn, token):
    """``AsyncPfQueues.setup``: the new item on ``queue``, -1 if QUEUE_FULL, -2 on error."""
    sc, hv, work, wfree = st[ST_SC], st[ST_HV], st[ST_WORK], st[ST_WFREE]
    if hv[HV_QUEUED, c] >= ASYNC_PF_PER_VCPU:
        return -1
    top = sc[SC_WFREE_TOP]
    if top == 0:
        _fail(sc, ERR_WORK_POOL_FULL, c)
        return -2
    sc[SC_WFREE_TOP] = top - 1
    w = wfree[top - 1]
    sc[SC_SERIAL] += 1  # _new
    sc[SC_ALLOCATED] += 1
    for field in range(WK_FIELDS):
        work[field, w] = 0
    work[WK_SERIAL, w] = sc[SC_SERIAL]
    work[WK_VCPU, w] = c
    work[WK_GFN, w] = gfn
    work[WK_TOKEN, w] = token
    work[WK_STATE, w] = PENDING
    st[ST_QUEUE][c, hv[HV_QLEN, c]] = w
    hv[HV_QLEN, c] += 1
    work[WK_ON_QUEUE, w] = 1
    hv[HV_QUEUED, c] += 1
    return w


@core
def _q_alive(st, w):
    """``_alive`` plus a range check of the caller's index; False (ERR set) if unusable."""
    sc, work = st[ST_SC], st[ST_WORK]
    if w < 0 or w >= work.shape[1]:
        _fail(sc, ERR_BAD_WORK, w)
        return False
    if work[WK_FREED, w]:
        _fail(sc, ERR_USE_AFTER_FREE, w)
        return False
    return True


@core
def _q_work_returned(st, w):
    """``AsyncPfQueues.work_returned`` (no clear in progress): the item goes on ``done``."""
    hv, work = st[ST_HV], st[ST_WORK]
    if not _q_alive(st, w):
        return False
    if work[WK_STATE, w] != WORK_RUNNING:
        _fail(st[ST_SC], ERR_NOT_RUNNING, w)
        return False
    c = work[WK_VCPU, w]
    work[WK_STATE, w] = RETURNED
    st[ST_DONE][c, hv[HV_DLEN, c]] = w
    hv[HV_DLEN, c] += 1
    work[WK_ON_DONE, w] = 1
    return True


@core
def _remove_at(lists, c, i, n):
    """Drop entry ``i`` of the ``n``-long list ``lists[c]``, keeping the order."""
    for k in range(i, n - 1):
        lists[c, k] = lists[c, k + 1]
    lists[c, n - 1] = -1


@core
def _q_pop_done(st, c):
    """``AsyncPfQueues.pop_done``: the first item on ``done``, or -1."""
    hv, done = st[ST_HV], st[ST_DONE]
    n = hv[HV_DLEN, c]
    if n == 0:
        return -1
    w = done[c, 0]
    _remove_at(done, c, 0, n)
    hv[HV_DLEN, c] = n - 1
    st[ST_WORK][WK_ON_DONE, w] = 0
    return w


@core
def _q_retire(st, w):
    """``AsyncPfQueues.retire``: unlink from ``queue``, ``queued--``, ``_free``."""
    sc, hv, work, queue = st[ST_SC], st[ST_HV], st[ST_WORK], st[ST_QUEUE]
    c = work[WK_VCPU, w]
    if work[WK_ON_DONE, w]:
        _fail(sc, ERR_RETIRE_ON_DONE, w)
        return False
    if work[WK_ON_QUEUE, w]:
        n = hv[HV_QLEN, c]
        i = 0
        while queue[c, i] != w:
            i += 1
        _remove_at(queue, c, i, n)
        hv[HV_QLEN, c] = n - 1
        work[WK_ON_QUEUE, w] = 0
    hv[HV_QUEUED, c] -= 1
    if work[WK_FREED, w]:
        _fail(sc, ERR_DOUBLE_FREE, w)
        return False
    if work[WK_STATE, w] != RETURNED and work[WK_STATE, w] != CANCELLED:
        _fail(sc, ERR_FREE_BEFORE_RETURN, w)
        return False
    work[WK_FREED, w] = 1
    sc[SC_FREED_TOTAL] += 1
    st[ST_WFREE][sc[SC_WFREE_TOP]] = w
    sc[SC_WFREE_TOP] += 1
    return True


# ================================================================ PfaultHost


@core
def s390_setup(st, nvcpus):
    """``S390Mode.setup``: DIAG 0x258 TOKEN with ``pfault_init_refbk()`` on each vCPU.

    The block is well formed (version 2, z/Arch, 8-aligned addresses, masks consistent), so
    the DIAG either registers the token (rc 0) or finds one set already (rc 8).
    """
    hv = st[ST_HV]
    for c in range(nvcpus):
        hv[HV_DIAGNOSE_258, c] += 1
        if hv[HV_PFAULT_TOKEN, c] != KVM_S390_PFAULT_TOKEN_INVALID:
            continue  # TOKEN_ALREADY_SET
        hv[HV_PFAULT_TOKEN, c] = LPP_ADDRESS
        hv[HV_PFAULT_SELECT, c] = PSW_MASK_PSTATE
        hv[HV_PFAULT_COMPARE, c] = PSW_MASK_PSTATE


@core
def _refusal(st, c, psw, cr0, has_token):
    """``PfaultHost._refusal``: the first failing check (an S390SyncReason code) or -1."""
    sc, hv = st[ST_SC], st[ST_HV]
    if not sc[SC_GMAP_PFAULT_ENABLED]:
        return GMAP_PFAULT_DISABLED
    if hv[HV_PFAULT_TOKEN, c] == KVM_S390_PFAULT_TOKEN_INVALID:
        return TOKEN_INVALID
    if (psw & hv[HV_PFAULT_SELECT, c]) != hv[HV_PFAULT_COMPARE, c]:
        return NOT_SELECTED
    if not psw & PSW_MASK_EXT:
        return EXT_DISABLED
    # _irq_pending with no other interrupt and ext enabled: the INIT slot or a floating DONE
    if hv[HV_INIT_PENDING, c] or sc[SC_FLOAT_LEN] > 0:
        return IRQ_PENDING
    if not cr0 & CR0_SERVICE_SIGNAL_SUBMASK:
        return SUBCLASS_DISABLED
    if not has_token:
        return TOKEN_READ_FAILED
    return -1


@core
def s390_page_fault(st, c, gfn, psw, cr0, token_value, has_token):
    """``PfaultHost.page_fault(c, gfn, psw, cr0, token_value if has_token else None)``.

    Returns:
        the pool index of the new item (asynchronous: INIT now pending on ``c``), -1 when
        synchronous (reason in ``hv[HV_SYNC_REASON, c]``), ERROR on error.
    """
    hv = st[ST_HV]
    reason = _refusal(st, c, psw, cr0, has_token)
    if reason < 0:
        w = _q_setup(st, c, gfn, token_value)
        if w == -2:
            return ERROR
        if w == -1:
            reason = QUEUE_FULL
        else:
            # kvm_arch_async_page_not_present: vCPU-local INIT, the slot is free
            hv[HV_INIT_PENDING, c] = 1
            hv[HV_INIT_TOKEN, c] = token_value
            hv[HV_INIT_INJECTED, c] += 1
            st[ST_WORK][WK_NOTPRESENT_INJECTED, w] = 1
            return w
    hv[HV_SYNC_REASON, c] = reason
    if reason != GMAP_PFAULT_DISABLED:
        hv[HV_PFAULT_SYNC, c] += 1
    return -1


@core
def s390_work_started(st, w):
    """``PfaultHost.work_started``: the worker began ``async_pf_execute``; False on error."""
    work = st[ST_WORK]
    if not _q_alive(st, w):
        return False
    if work[WK_STATE, w] != PENDING:
        _fail(st[ST_SC], ERR_NOT_PENDING, w)
        return False
    work[WK_STATE, w] = WORK_RUNNING
    return True


@core
def s390_work_done(st, w):
    """``PfaultHost.work_done``: inject the floating DONE, then put the item on ``done``.

    Returns:
        done_injected (1), 0 when the floating list was full (the DONE is lost), ERROR.
    """
    sc, work, floating = st[ST_SC], st[ST_WORK], st[ST_FLOAT]
    if w < 0 or w >= work.shape[1]:
        _fail(sc, ERR_BAD_WORK, w)
        return ERROR
    injected = 1 if sc[SC_FLOAT_LEN] < floating.shape[0] else 0
    if injected:
        floating[(sc[SC_FLOAT_HEAD] + sc[SC_FLOAT_LEN]) % floating.shape[0]] = work[WK_TOKEN, w]
        sc[SC_FLOAT_LEN] += 1
        sc[SC_DONE_INJECTED] += 1
    else:
        sc[SC_DONE_DROPPED] += 1
        sc[SC_HOST_WARNINGS] = 1  # "__inject_pfault_done: -EBUSY", warned once
    if not _q_work_returned(st, w):
        return ERROR
    return injected


@core
def s390_has_floating(st):
    """A floating PFAULT_DONE is pending (``S390Mode.has_floating``)."""
    return st[ST_SC][SC_FLOAT_LEN] > 0


@core
def s390_pre_run(st, c, psw):
    """``PfaultHost.pre_run``: free finished items, then deliver at most one interrupt.

    Returns:
        (subcode, param64): (0, 0) for None, else (PFAULT_INIT or PFAULT_DONE, token) for
        external interrupt EXT_IRQ_CP_SERVICE; (ERROR, 0) on error.
    """
    sc, hv, floating = st[ST_SC], st[ST_HV], st[ST_FLOAT]
    w = _q_pop_done(st, c)
    while w >= 0:
        if not _q_retire(st, w):  # kvm_check_async_pf_completion: only frees on s390
            return ERROR, 0
        w = _q_pop_done(st, c)
    if not psw & PSW_MASK_EXT:
        return 0, 0
    if hv[HV_INIT_PENDING, c]:  # IRQ_PEND_PFAULT_INIT ranks before PFAULT_DONE
        hv[HV_INIT_PENDING, c] = 0
        hv[HV_INIT_DELIVERED, c] += 1
        return PFAULT_INIT, hv[HV_INIT_TOKEN, c]
    if sc[SC_FLOAT_LEN] > 0:
        sc[SC_DONE_DELIVERED] += 1
        token = floating[sc[SC_FLOAT_HEAD]]
        sc[SC_FLOAT_HEAD] = (sc[SC_FLOAT_HEAD] + 1) % floating.shape[0]
        sc[SC_FLOAT_LEN] -= 1
        return PFAULT_DONE, token
    return 0, 0


# ================================================================ PfaultGuest


@core
def _find_task(st, pid, task_freed, task_tid):
    """``find_task_by_pid_ns``: the lowest task id with that tid and not freed, or -1.

    Only the ``ntasks`` guest tasks the state was made for are searched (a caller's table may
    go on with host threads, which S390Mode._find_task never returns).
    """
    for t in range(min(task_tid.shape[0], st[ST_TASK].shape[1])):
        if task_tid[t] == pid and not task_freed[t]:
            return t
    return -1


@core
def _task_get(sc, t, task_usage, task_freed):
    """``get_task_struct``; False (ERR set) on a freed task."""
    if task_freed[t]:
        _fail(sc, ERR_GET_FREED, t)
        return False
    task_usage[t] += 1
    return True


@core
def _task_put(sc, t, task_state, task_usage, task_freed):
    """``put_task_struct``: the task is freed at zero (it must be DEAD); False on error."""
    if task_freed[t] or task_usage[t] <= 0:
        _fail(sc, ERR_PUT_UNDERFLOW, t)
        return False
    task_usage[t] -= 1
    if task_usage[t] == 0:
        if task_state[t] != DEAD:
            _fail(sc, ERR_FREED_NOT_DEAD, t)
            return False
        task_freed[t] = 1
    return True


@core
def _list_add_head(st, t):
    """``list_add(&tsk->thread.list, &pfault_list)``: ``t`` becomes the head."""
    sc, task = st[ST_SC], st[ST_TASK]
    head = sc[SC_LIST_HEAD]
    task[TK_PREV, t] = -1
    task[TK_NEXT, t] = head
    if head >= 0:
        task[TK_PREV, head] = t
    sc[SC_LIST_HEAD] = t
    task[TK_ON_LIST, t] = 1
    sc[SC_LIST_LEN] += 1


@core
def _list_del(st, t):
    """``list_del(&tsk->thread.list)``."""
    sc, task = st[ST_SC], st[ST_TASK]
    prev, nxt = task[TK_PREV, t], task[TK_NEXT, t]
    if prev >= 0:
        task[TK_NEXT, prev] = nxt
    else:
        sc[SC_LIST_HEAD] = nxt
    if nxt >= 0:
        task[TK_PREV, nxt] = prev
    task[TK_PREV, t] = -1
    task[TK_NEXT, t] = -1
    task[TK_ON_LIST, t] = 0
    sc[SC_LIST_LEN] -= 1


@core
def _completion(st, t, task_state, task_usage, task_freed):
    """``PfaultGuest._completion`` (DONE): (outcome, task to wake or -1)."""
    sc, task = st[ST_SC], st[ST_TASK]
    if task[TK_WAIT, t] == 1:
        # the initial interrupt was first: the task sleeps (or is about to) on the list
        task[TK_WAIT, t] = 0
        _list_del(st, t)
        task[TK_LIST_REFS, t] -= 1  # _drop_list_ref (the wake-up is the caller's)
        if not _task_put(sc, t, task_state, task_usage, task_freed):
            return ERROR, t
        sc[SC_WAKEUPS] += 1
        return WOKEN, t
    if task_state[t] == RUNNING or task_state[t] == RUNNABLE:
        task[TK_WAIT, t] = -1  # the completion beat the initial interrupt
        sc[SC_EARLY_COMPLETIONS] += 1
        return EARLY_RECORDED, -1
    sc[SC_IGNORED_DONE] += 1  # leftover of a PFAULT CANCEL
    return LEFTOVER_IGNORED, -1


@core
def _initial(st, c, t, current_task, task_state, task_usage, task_freed):
    """``PfaultGuest._initial`` (INIT): (outcome, need_resched)."""
    sc, task = st[ST_SC], st[ST_TASK]
    if t != current_task:
        sc[SC_NOT_CURRENT] += 1
        if not sc[SC_WARNED]:
            sc[SC_WARNED] = 1
            sc[SC_GUEST_WARNINGS] += 1  # WARN_ON_ONCE(tsk != current)
        return WARN_NOT_CURRENT, 0
    wait = task[TK_WAIT, t]
    if wait == -1:
        task[TK_WAIT, t] = 0
        sc[SC_EARLY_CONSUMED] += 1
        return EARLY_CONSUMED, 0
    outcome = REBLOCK
    if wait == 0:
        # an extra reference: another CPU may make the task running before schedule()
        if not _task_get(sc, t, task_usage, task_freed):
            return ERROR, 0
        task[TK_LIST_REFS, t] += 1
        task[TK_WAIT, t] = 1
        _list_add_head(st, t)
        outcome = BLOCK
    # "rely on the return to userspace schedule() to block"
    task_state[t] = UNINTERRUPTIBLE
    sc[SC_BLOCKS] += 1
    return outcome, 1


@core
def s390_pfault_interrupt(st, c, subcode, param64, current_task, task_state, task_usage,
                          task_freed, task_tid):
    """``PfaultGuest.pfault_interrupt(c, EXT_IRQ_CP_SERVICE, subcode, param64)``.

    Args:
        current_task: the task running on ``c`` (-1: none).
        task_state, task_usage, task_freed, task_tid: the caller's task table (updated here).

    Returns:
        (outcome, wake_task, need_resched): a PfaultOutcome code (ERROR: see SC_ERR); the task
        the caller must ``wake_up`` (-1: none); 1 when ``c`` must set need_resched.
    """
    sc = st[ST_SC]
    if (subcode & 0xFF00) != SUBCODE_MASK:
        return NOT_PFAULT, -1, 0
    sc[SC_IRQEXT_PFL] += 1
    t = _find_task(st, param64 & LPP_PID_MASK, task_freed, task_tid)
    if t < 0:
        sc[SC_DROPPED_UNKNOWN_PID] += 1
        return DROPPED_UNKNOWN_PID, -1, 0
    if not _task_get(sc, t, task_usage, task_freed):  # lookup reference
        return ERROR, -1, 0
    wake, resched = -1, 0
    if subcode & PF_COMPLETE:
        sc[SC_DONE_COUNT] += 1
        outcome, wake = _completion(st, t, task_state, task_usage, task_freed)
    else:
        sc[SC_INIT_COUNT] += 1
        outcome, resched = _initial(st, c, t, current_task, task_state, task_usage, task_freed)
    if not _task_put(sc, t, task_state, task_usage, task_freed):  # the lookup reference
        return ERROR, wake, resched
    return outcome, wake, resched


# ================================================================ plain-Python views


def s390_error(st: tuple[np.ndarray, ...]) -> str:
    """The recorded error ('' when none)."""
    sc = st[ST_SC]
    code = int(sc[SC_ERR])
    return f"{ERROR_NAMES[code]} ({int(sc[SC_ERR_ARG])})" if code else ""


def s390_list(st: tuple[np.ndarray, ...], which: int, c: int) -> list[int]:
    """Work indices on vCPU ``c``'s ``queue`` (``which`` = ST_QUEUE) or ``done`` (ST_DONE)."""
    length = st[ST_HV][HV_QLEN if which == ST_QUEUE else HV_DLEN, c]
    return [int(w) for w in st[which][c, :length]]


def s390_floating(st: tuple[np.ndarray, ...]) -> list[int]:
    """Pending floating DONE tokens, oldest first (int64 bit patterns)."""
    sc, floating = st[ST_SC], st[ST_FLOAT]
    head, cap = int(sc[SC_FLOAT_HEAD]), floating.shape[0]
    return [int(floating[(head + i) % cap]) for i in range(int(sc[SC_FLOAT_LEN]))]


def s390_pfault_list(st: tuple[np.ndarray, ...]) -> list[int]:
    """Task ids on ``pfault_list``, head first."""
    task, out, t = st[ST_TASK], [], int(st[ST_SC][SC_LIST_HEAD])
    while t >= 0 and len(out) <= task.shape[1]:
        out.append(t)
        t = int(task[TK_NEXT, t])
    return out


def s390_counters(st: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Guest, floating-list and queue counters (ints) and host counters (one int per vCPU)."""
    sc, hv = st[ST_SC], st[ST_HV]
    scalars = {"irqext_pfl": SC_IRQEXT_PFL, "init_count": SC_INIT_COUNT,
               "done_count": SC_DONE_COUNT, "early_completions": SC_EARLY_COMPLETIONS,
               "early_consumed": SC_EARLY_CONSUMED, "ignored_done": SC_IGNORED_DONE,
               "dropped_unknown_pid": SC_DROPPED_UNKNOWN_PID, "not_current": SC_NOT_CURRENT,
               "blocks": SC_BLOCKS, "wakeups": SC_WAKEUPS, "guest_warnings": SC_GUEST_WARNINGS,
               "done_injected": SC_DONE_INJECTED, "done_delivered": SC_DONE_DELIVERED,
               "done_dropped": SC_DONE_DROPPED, "host_warnings": SC_HOST_WARNINGS,
               "allocated": SC_ALLOCATED, "freed_total": SC_FREED_TOTAL}
    host = {"init_injected": HV_INIT_INJECTED, "init_delivered": HV_INIT_DELIVERED,
            "init_discarded": HV_INIT_DISCARDED, "pfault_sync": HV_PFAULT_SYNC,
            "diagnose_258": HV_DIAGNOSE_258, "queued": HV_QUEUED}
    out: dict[str, Any] = {name: int(sc[row]) for name, row in scalars.items()}
    out.update({name: [int(v) for v in hv[row]] for name, row in host.items()})
    return out


# ---------------------------------------------------------------- invariants


def _check_queues(st: tuple[np.ndarray, ...]) -> str:
    """AsyncPfQueues.check_invariants (INV-H1, INV-H3) plus PfaultHost's per-vCPU checks."""
    sc, hv, work = st[ST_SC], st[ST_HV], st[ST_WORK]
    reachable: set[int] = set()
    for c in range(hv.shape[1]):
        where = f"vCPU {c}"
        queue, done = s390_list(st, ST_QUEUE, c), s390_list(st, ST_DONE, c)
        for w in queue:
            if (work[WK_FREED, w] or not work[WK_ON_QUEUE, w] or work[WK_VCPU, w] != c
                    or work[WK_STATE, w] == CANCELLED):
                return f"{where}: bad item on queue: {w}"
        for w in done:
            if work[WK_FREED, w] or not work[WK_ON_DONE, w] or work[WK_STATE, w] != RETURNED:
                return f"{where}: bad item on done: {w}"
            if not work[WK_ON_QUEUE, w]:
                return f"{where}: done item not on queue: {w}"
        if len(set(queue)) != len(queue) or len(set(done)) != len(done):
            return f"{where}: an item is linked twice"
        reachable.update(queue, done)
        if hv[HV_QUEUED, c] != len(queue):
            return f"INV-H1 {where}: queued={hv[HV_QUEUED, c]} != |queue|={len(queue)}"
        if hv[HV_QUEUED, c] > ASYNC_PF_PER_VCPU:
            return f"{where}: queued={hv[HV_QUEUED, c]} > {ASYNC_PF_PER_VCPU}"
    live = {int(w) for w in np.flatnonzero(work[WK_FREED] == 0)}
    if live - reachable:
        return f"INV-H3: items neither linked nor freed: {sorted(live - reachable)}"
    if sc[SC_ALLOCATED] - sc[SC_FREED_TOTAL] != len(live):
        return "INV-H3: allocated - freed != live items"
    if any(work[WK_STATE, w] == CANCELLED for w in live):
        return "ASYNC_PF_SYNC never cancels work"
    free = st[ST_WFREE][:sc[SC_WFREE_TOP]]
    if len(set(free.tolist())) != len(free) or any(not work[WK_FREED, w] for w in free):
        return "INV-H3: work free list corrupt"
    return ""


def _check_host(st: tuple[np.ndarray, ...]) -> str:
    """PfaultHost.check_invariants beyond the queues: handshake, INIT and DONE accounting."""
    sc, hv = st[ST_SC], st[ST_HV]
    for c in range(hv.shape[1]):
        where = f"vCPU {c}"
        token, sel, cmp = hv[HV_PFAULT_TOKEN, c], hv[HV_PFAULT_SELECT, c], hv[HV_PFAULT_COMPARE, c]
        if token != KVM_S390_PFAULT_TOKEN_INVALID and (token & 7 or (cmp & sel) != cmp):
            return f"{where}: inconsistent pfault handshake"
        slot = 1 if hv[HV_INIT_PENDING, c] else 0
        if hv[HV_INIT_INJECTED, c] != (hv[HV_INIT_DELIVERED, c] + hv[HV_INIT_DISCARDED, c]
                                       + slot):
            return f"{where}: INIT accounting broken"
    if not 0 <= sc[SC_FLOAT_LEN] <= st[ST_FLOAT].shape[0]:
        return "floating pfault list above its cap"
    if sc[SC_DONE_INJECTED] != sc[SC_DONE_DELIVERED] + sc[SC_FLOAT_LEN]:
        return "floating DONE accounting broken"
    return ""


def _check_guest(st: tuple[np.ndarray, ...], task_state: np.ndarray | None,
                 task_usage: np.ndarray | None, task_freed: np.ndarray | None) -> str:
    """PfaultGuest.check_invariants: INV-S1, S2, S5 (S3 cannot fail: no lock is held outside
    a compiled call; S1's lookup references are dropped before each call returns)."""
    task = st[ST_TASK]
    on_list = s390_pfault_list(st)
    if len(on_list) != len(set(on_list)) or len(on_list) != st[ST_SC][SC_LIST_LEN]:
        return f"INV-S2: pfault_list corrupt: {on_list}"
    for t in range(task.shape[1]):
        wait, listed = int(task[TK_WAIT, t]), t in on_list
        if wait not in (-1, 0, 1):
            return f"task {t}: pfault_wait = {wait}"
        if (wait == 1) != listed or bool(task[TK_ON_LIST, t]) != listed:
            return f"INV-S2: task {t} pfault_wait={wait}, on list={listed}"
        if task[TK_LIST_REFS, t] != (1 if listed else 0):
            return f"INV-S1: task {t}: list references {task[TK_LIST_REFS, t]}, on list={listed}"
        if not listed:
            continue
        if task_freed is not None and task_freed[t]:
            return f"INV-S1: task {t} on pfault_list is freed"
        if task_usage is not None and task_usage[t] < 2:
            return f"INV-S1: task {t} on pfault_list has usage {task_usage[t]}"
        if task_state is not None and task_state[t] == INTERRUPTIBLE:
            return f"INV-S5: task {t} on pfault_list sleeps interruptibly"
    return ""


def s390_check(st: tuple[np.ndarray, ...], task_state: np.ndarray | None = None,
               task_usage: np.ndarray | None = None, task_freed: np.ndarray | None = None) -> str:
    """PfaultHost + PfaultGuest ``check_invariants`` on the arrays: '' when all hold.

    The optional task-table rows enable the usage / freed / state checks of INV-S1 and S5; a
    recorded error (SC_ERR) is reported first.
    """
    return (s390_error(st) or _check_queues(st) or _check_host(st)
            or _check_guest(st, task_state, task_usage, task_freed))
