"""Compiled x86 KVM async page fault: the host and guest protocol state machines as numba code.

Mirrors, with the same transitions, counters and order of effects, the Python reference
classes, restricted to the paths :class:`pfsim.apf_modes.KvmMode` uses
(``KvmApfHost`` defaults: has_async_pf_int, has_async_pf_vmexit, lapic_in_kernel; no
hlt_in_guest, no alloc_work; ``KvmApfGuest`` with ``alloc_dummy=None``; MMU context defaults):

- ``pfsim.hypervisor.async_pf.AsyncPfQueues(sync=False)`` (virt/kvm/async_pf.c
  ``kvm_setup_async_pf``, ``async_pf_execute``, ``kvm_check_async_pf_completion``,
  ``kvm_async_pf_wakeup_all``);
- ``pfsim.hypervisor.apf_gfn_hash.GfnHash`` (arch/x86/kvm/x86.c ``kvm_add_async_pf_gfn``,
  ``kvm_async_pf_gfn_slot``, ``kvm_find_async_pf_gfn``, ``kvm_del_async_pf_gfn``);
- ``pfsim.hypervisor.apf_kvm.KvmApfHost`` (mmu.c ``__kvm_mmu_faultin_pfn``,
  ``kvm_arch_setup_async_pf``, ``alloc_apf_token``; x86.c ``kvm_can_do_async_pf``,
  ``kvm_can_deliver_async_pf``, ``kvm_arch_async_page_not_present``,
  ``kvm_arch_async_page_present``, ``kvm_arch_async_page_present_queued``,
  ``kvm_arch_can_dequeue_async_page_present``, ``kvm_pv_enable_async_pf``, the
  MSR_KVM_ASYNC_PF_INT / _EN / _ACK handlers, ``vcpu_enter_guest``);
- ``pfsim.guest.apf_kvm.KvmApfGuest`` (arch/x86/kernel/kvm.c ``kvm_guest_cpu_init``,
  ``__kvm_handle_async_pf``, ``kvm_async_pf_task_wait_schedule``, ``kvm_async_pf_queue_task``,
  ``kvm_async_pf_task_wake``, ``apf_task_wake_one``, ``apf_task_wake_all``,
  ``sysvec_kvm_asyncpf_interrupt``).

Not ported (KvmMode never reaches them): queue clears (MSR disable, vCPU reset, CR0.PG toggle,
teardown), #GP paths of the MSR writes, prefetch / nested / non-paging faults, the prefault
gfn of a completion, dummy allocation failures (RETRY), ``cpu_offline``.

State: ``new_kvm_state(nvcpus, ntasks)`` returns a tuple of int64 arrays, indexed by the
``ST_*`` constants; tables are ``[FIELD, index]`` with the field rows named below:

- ``st[ST_SC]``     ``[SC_FIELDS]`` scalars: error, work-pool and guest counters (``SC_*``);
- ``st[ST_HV]``     ``[HV_FIELDS, nvcpus]`` ``vcpu->arch.apf`` + APF requests + queue lengths;
- ``st[ST_QUEUE]``  ``[nvcpus, 64]`` work indices on ``async_pf.queue``, oldest first;
- ``st[ST_DONE]``   ``[nvcpus, 65]`` work indices on ``async_pf.done``, oldest first;
- ``st[ST_GFNS]``   ``[nvcpus, 64]`` the gfn hash (``GFN_EMPTY`` = -1, i.e. ``~0``);
- ``st[ST_WORK]``   ``[WK_FIELDS, work_cap]`` the work-item pool (``struct kvm_async_pf``);
- ``st[ST_WFREE]``  ``[work_cap]`` stack of free pool slots (``SC_WFREE_TOP`` entries);
- ``st[ST_AREA]``   ``[AREA_FIELDS, nvcpus]`` the guest's ``kvm_vcpu_pv_apf_data`` per CPU;
- ``st[ST_BUCKET]`` ``[256]`` sleep-table bucket heads (node index, -1 = empty);
- ``st[ST_NODE]``   ``[ND_FIELDS, ntasks + max_dummies]`` sleep nodes (hlist): node ``t <
  ntasks`` is task ``t``'s own node, the others are dummies (free ones on ``st[ST_NFREE]``);
- ``st[ST_NFREE]``  ``[max_dummies]`` stack of free dummy nodes (``SC_NFREE_TOP`` entries);
- ``st[ST_WAITING]`` ``[ntasks]`` 1 while the task is in the async-PF wait loop.

Errors: where Python raises ``InvariantViolation`` the kernels set ``st[ST_SC][SC_ERR]`` (first
error wins, ``SC_ERR_ARG`` = the vCPU / work / task concerned) and return ``ERROR`` as outcome
code; a full pool or caller buffer sets one of the capacity codes.  Check ``SC_ERR`` after
each call (``kvm_error(st)`` names it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pfsim.compiled.jit import core

# ------------------------------------------------ ABI (machine/apf_kvm_abi.py, apf_gfn_hash.py)
ASYNC_PF_PER_VCPU = 64
KVM_ASYNC_PF_ENABLED = 1 << 0
KVM_ASYNC_PF_SEND_ALWAYS = 1 << 1
KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT = 1 << 2
KVM_ASYNC_PF_DELIVERY_AS_INT = 1 << 3
PV_ENABLED = KVM_ASYNC_PF_ENABLED | KVM_ASYNC_PF_DELIVERY_AS_INT
KVM_PV_REASON_PAGE_NOT_PRESENT = 1
HYPERVISOR_CALLBACK_VECTOR = 0xF3
BROADCAST_TOKEN = 0xFFFFFFFF
U32 = 0xFFFFFFFF
GOLDEN_RATIO_32 = 0x61C88647
GFN_EMPTY = -1  # ~0 as gfn_t; gfns must be in [0, 2**63)
APF_HASH_BITS = 6
KVM_TASK_SLEEP_HASHBITS = 8
KVM_TASK_SLEEP_HASHSIZE = 1 << KVM_TASK_SLEEP_HASHBITS
DONE_CAP = ASYNC_PF_PER_VCPU + 1  # queued items + one wakeup_all
DEFAULT_DUMMIES_PER_VCPU = 4 * ASYNC_PF_PER_VCPU
COMP_TOKEN, COMP_PAGE_READY = 0, 1  # rows of the caller's completion buffer ``comp``

# task states (pfsim.sched.TaskState)
RUNNING, RUNNABLE, INTERRUPTIBLE, UNINTERRUPTIBLE, DEAD = 0, 1, 2, 3, 4

# ---------------------------------------------------------------- state tuple
(ST_SC, ST_HV, ST_QUEUE, ST_DONE, ST_GFNS, ST_WORK, ST_WFREE, ST_AREA, ST_BUCKET, ST_NODE,
 ST_NFREE, ST_WAITING) = range(12)

# scalars: errors, work pool (AsyncPfQueues), guest counters (KvmApfGuest)
(SC_ERR, SC_ERR_ARG, SC_SERIAL, SC_ALLOCATED, SC_FREED_TOTAL, SC_WFREE_TOP, SC_NFREE_TOP,
 SC_NOT_PRESENT, SC_SLEEPS, SC_PAGE_READY, SC_BROADCASTS, SC_IRQ_HV_CALLBACK,
 SC_DUMMIES_ALLOCATED, SC_DUMMIES_FREED, SC_DUMMIES_LEAKED, SC_DUMMY_ALLOC_FAILURES,
 SC_GUEST_WARNINGS) = range(17)
SC_FIELDS = 17

# per-vCPU host rows (X86VcpuApf, plus VcpuAsyncPf's queued and the list lengths)
(HV_MSR_EN_VAL, HV_MSR_INT_VAL, HV_VEC, HV_ID, HV_SEND_USER_ONLY, HV_DELIVERY_AS_PF_VMEXIT,
 HV_PAGEREADY_PENDING, HV_HALTED, HV_AREA, HV_REQ_APF_HALT, HV_REQ_APF_READY, HV_SYNC_FAULTS,
 HV_REPEATED_FAULTS, HV_NOTPRESENT_INJECTED, HV_PAGEREADY_INJECTED, HV_WAKEUPS_QUEUED,
 HV_WARNINGS, HV_SYNC_REASON, HV_QUEUED, HV_QLEN, HV_DLEN) = range(21)
HV_FIELDS = 21

# work-item rows (AsyncPfWork); a slot is free when WK_FREED is 1
(WK_SERIAL, WK_VCPU, WK_GFN, WK_TOKEN, WK_WAKEUP_ALL, WK_NOTPRESENT_INJECTED, WK_STATE,
 WK_ON_QUEUE, WK_ON_DONE, WK_FREED) = range(10)
WK_FIELDS = 10
PENDING, WORK_RUNNING, RETURNED, CANCELLED = 0, 1, 2, 3  # WorkState

# guest shared area rows (PvApfData)
AREA_FLAGS, AREA_TOKEN, AREA_ENABLED = 0, 1, 2
AREA_FIELDS = 3

# sleep-node rows (SleepNode); ND_TASK -1 = dummy
ND_TOKEN, ND_CPU, ND_TASK, ND_LINKED, ND_PREV, ND_NEXT = range(6)
ND_FIELDS = 6

# ---------------------------------------------------------------- outcome codes
ERROR = -2  # an InvariantViolation (or a capacity limit): see SC_ERR
NONE = -1
SYNC, APF_HALT_REPEATED, ASYNC_INJECTED, ASYNC_HALTED = 0, 1, 2, 3  # X86FaultOutcome
NOT_ASYNC, SLEEP, NO_SLEEP, PANIC_IRQS_DISABLED, PANIC_KERNEL_MODE, UNEXPECTED_FLAGS = range(6)
WOKEN, DUMMY_INSERTED, RETRY, BROADCAST = 0, 1, 2, 3  # WakeKind (-1: wake is None)
REASON_INTERRUPTS_NOT_ALLOWED, REASON_QUEUE_FULL = 0, 1  # HV_SYNC_REASON (-1: none yet)
SYNC_REASONS = ("cannot_do_async:interrupts_not_allowed", "queue_full")
"""``X86FaultResult.reason`` of each HV_SYNC_REASON code."""

# ---------------------------------------------------------------- error codes (SC_ERR)
(ERR_NONE, ERR_USE_AFTER_FREE, ERR_NOT_PENDING, ERR_NOT_RUNNING, ERR_RETIRE_ON_DONE,
 ERR_DOUBLE_FREE, ERR_FREE_BEFORE_RETURN, ERR_GFN_HASH_FULL, ERR_PAGE_READY_OVER_UNACKED,
 ERR_ENTER_WHILE_HALTED, ERR_ALREADY_WAITING, ERR_TOKEN_HAS_SLEEPER, ERR_NOT_WAITING,
 ERR_RESUME_NOT_RUNNING, ERR_BAD_WORK, ERR_WORK_POOL_FULL, ERR_NODE_POOL_FULL, ERR_COMP_FULL,
 ERR_WOKEN_FULL, ERR_BAD_TASK) = range(20)
ERROR_NAMES = (
    "", "use after free of a work item", "work_started: not pending",
    "work_returned: not running", "retire of an item still on done", "double free",
    "work item freed before its work function returned",
    "gfn hash full: kvm_add_async_pf_gfn would spin forever",
    "INV-H5: page-ready over an un-ACKed token", "vCPU entered while APF-halted",
    "task takes an async #PF while already waiting", "token already has a sleeper",
    "wait_resume: task is not waiting", "wait_resume: task is not running",
    "work index out of range", "capacity: work pool full", "capacity: dummy node pool full",
    "capacity: completion buffer full", "capacity: woken buffer full",
    "task id out of range (>= ntasks)",
)


# ================================================================ state


def new_kvm_state(nvcpus: int, ntasks: int,
                  max_dummies: int | None = None) -> tuple[np.ndarray, ...]:
    """Empty state of ``KvmApfHost(nvcpus)`` + ``KvmApfGuest(nvcpus)`` for ``ntasks`` tasks.

    ``max_dummies`` bounds the dummy sleep nodes linked at once (Python has no bound; default
    ``DEFAULT_DUMMIES_PER_VCPU`` per vCPU); exceeding it sets ``ERR_NODE_POOL_FULL``.
    """
    if max_dummies is None:
        max_dummies = DEFAULT_DUMMIES_PER_VCPU * nvcpus
    work_cap = nvcpus * DONE_CAP  # at most 64 queued items + 1 wakeup_all per vCPU
    sc = np.zeros(SC_FIELDS, np.int64)
    sc[SC_WFREE_TOP] = work_cap
    sc[SC_NFREE_TOP] = max_dummies
    hv = np.zeros((HV_FIELDS, nvcpus), np.int64)
    hv[HV_SEND_USER_ONLY] = 1
    hv[HV_AREA] = -1
    hv[HV_SYNC_REASON] = -1
    work = np.zeros((WK_FIELDS, work_cap), np.int64)
    work[WK_FREED] = 1
    node = np.zeros((ND_FIELDS, ntasks + max_dummies), np.int64)
    node[ND_TASK] = -1
    node[ND_TASK, :ntasks] = np.arange(ntasks)
    node[ND_PREV] = -1
    node[ND_NEXT] = -1
    return (
        sc, hv,
        np.full((nvcpus, ASYNC_PF_PER_VCPU), -1, np.int64),
        np.full((nvcpus, DONE_CAP), -1, np.int64),
        np.full((nvcpus, ASYNC_PF_PER_VCPU), GFN_EMPTY, np.int64),
        work,
        np.arange(work_cap - 1, -1, -1, dtype=np.int64),  # pops slot 0 first
        np.zeros((AREA_FIELDS, nvcpus), np.int64),
        np.full(KVM_TASK_SLEEP_HASHSIZE, -1, np.int64),
        node,
        np.arange(ntasks + max_dummies - 1, ntasks - 1, -1, dtype=np.int64),
        np.zeros(ntasks, np.int64),
    )


@core
def _fail(sc, code, arg):
    """Record an InvariantViolation; the first one is kept."""
    if sc[SC_ERR] == ERR_NONE:
        sc[SC_ERR] = code
        sc[SC_ERR_ARG] = arg


@core
def _hash_32(val, bits):
    """Linux ``hash_32`` (``val`` < 2**32, so the product fits in int64)."""
    return ((val * GOLDEN_RATIO_32) & U32) >> (32 - bits)


# ================================================================ AsyncPfQueues (sync=False)


@core
def _q_new(st, c, gfn, token, wakeup_all):
    """``AsyncPfQueues._new``: a pool slot for a new item, or -1 (pool full, ERR set)."""
    sc, work, wfree = st[ST_SC], st[ST_WORK], st[ST_WFREE]
    top = sc[SC_WFREE_TOP]
    if top == 0:
        _fail(sc, ERR_WORK_POOL_FULL, c)
        return -1
    sc[SC_WFREE_TOP] = top - 1
    w = wfree[top - 1]
    sc[SC_SERIAL] += 1
    sc[SC_ALLOCATED] += 1
    for field in range(WK_FIELDS):
        work[field, w] = 0
    work[WK_SERIAL, w] = sc[SC_SERIAL]
    work[WK_VCPU, w] = c
    work[WK_GFN, w] = gfn
    work[WK_TOKEN, w] = token
    work[WK_WAKEUP_ALL, w] = wakeup_all
    work[WK_STATE, w] = PENDING
    return w


@core
def _q_setup(st, c, gfn, token):
    """``AsyncPfQueues.setup``: the new item on ``queue``, -1 if QUEUE_FULL, -2 on error."""
    hv, queue = st[ST_HV], st[ST_QUEUE]
    if hv[HV_QUEUED, c] >= ASYNC_PF_PER_VCPU:
        return -1
    w = _q_new(st, c, gfn, token, 0)
    if w < 0:
        return -2
    queue[c, hv[HV_QLEN, c]] = w
    hv[HV_QLEN, c] += 1
    st[ST_WORK][WK_ON_QUEUE, w] = 1
    hv[HV_QUEUED, c] += 1
    return w


@core
def _q_append_done(st, c, w):
    """Link ``w`` at the tail of vCPU ``c``'s ``done``."""
    hv = st[ST_HV]
    st[ST_DONE][c, hv[HV_DLEN, c]] = w
    hv[HV_DLEN, c] += 1
    st[ST_WORK][WK_ON_DONE, w] = 1


@core
def _q_wakeup_all(st, c):
    """``AsyncPfQueues.wakeup_all`` with token ~0: the item, or -1 (``done`` not empty)."""
    if st[ST_HV][HV_DLEN, c] > 0:
        return -1
    w = _q_new(st, c, -1, BROADCAST_TOKEN, 1)
    if w < 0:
        return -2
    st[ST_WORK][WK_STATE, w] = RETURNED  # no work function: nothing to wait for
    _q_append_done(st, c, w)
    st[ST_HV][HV_QUEUED, c] += 1
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
    """``AsyncPfQueues.work_returned``: (ok, first) -- ``first``: ``done`` was empty."""
    work = st[ST_WORK]
    if not _q_alive(st, w):
        return False, 0
    if work[WK_STATE, w] != WORK_RUNNING:
        _fail(st[ST_SC], ERR_NOT_RUNNING, w)
        return False, 0
    c = work[WK_VCPU, w]
    work[WK_STATE, w] = RETURNED
    first = 1 if st[ST_HV][HV_DLEN, c] == 0 else 0
    _q_append_done(st, c, w)
    return True, first


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
def _q_unlink_queue(st, c, w):
    """``list_del`` of ``w`` from vCPU ``c``'s ``queue``."""
    hv, queue = st[ST_HV], st[ST_QUEUE]
    n = hv[HV_QLEN, c]
    i = 0
    while queue[c, i] != w:
        i += 1
    _remove_at(queue, c, i, n)
    hv[HV_QLEN, c] = n - 1
    st[ST_WORK][WK_ON_QUEUE, w] = 0


@core
def _q_free(st, w):
    """``AsyncPfQueues._free``."""
    sc, work = st[ST_SC], st[ST_WORK]
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


@core
def _q_retire(st, w):
    """``AsyncPfQueues.retire``: unlink from ``queue``, ``queued--``, free."""
    work = st[ST_WORK]
    c = work[WK_VCPU, w]
    if work[WK_ON_DONE, w]:
        _fail(st[ST_SC], ERR_RETIRE_ON_DONE, w)
        return False
    if work[WK_ON_QUEUE, w]:
        _q_unlink_queue(st, c, w)
    st[ST_HV][HV_QUEUED, c] -= 1
    return _q_free(st, w)


# ================================================================ GfnHash


@core
def _gfn_home(gfn):
    """``kvm_async_pf_hash_fn``."""
    return _hash_32(gfn & U32, APF_HASH_BITS)


@core
def _gfn_slot(gfns, c, gfn):
    """``kvm_async_pf_gfn_slot``."""
    key = _gfn_home(gfn)
    for _ in range(ASYNC_PF_PER_VCPU):
        if gfns[c, key] == gfn or gfns[c, key] == GFN_EMPTY:
            break
        key = (key + 1) & (ASYNC_PF_PER_VCPU - 1)
    return key


@core
def _gfn_find(gfns, c, gfn):
    """``kvm_find_async_pf_gfn``."""
    return gfns[c, _gfn_slot(gfns, c, gfn)] == gfn


@core
def _gfn_add(gfns, c, gfn):
    """``kvm_add_async_pf_gfn``; False if the table is full (Linux would spin)."""
    full = True
    for i in range(ASYNC_PF_PER_VCPU):
        if gfns[c, i] == GFN_EMPTY:
            full = False
    if full:
        return False
    key = _gfn_home(gfn)
    while gfns[c, key] != GFN_EMPTY:
        key = (key + 1) & (ASYNC_PF_PER_VCPU - 1)
    gfns[c, key] = gfn
    return True


@core
def _gfn_delete(gfns, c, gfn):
    """``kvm_del_async_pf_gfn`` (backward-shift deletion); False where Linux WARNs."""
    mask = ASYNC_PF_PER_VCPU - 1
    i = _gfn_slot(gfns, c, gfn)
    j = i
    if gfns[c, i] != gfn:
        return False
    while True:
        gfns[c, i] = GFN_EMPTY
        while True:
            j = (j + 1) & mask
            if gfns[c, j] == GFN_EMPTY:
                return True
            k = _gfn_home(gfns[c, j])
            # move slots[j] back to i unless its home k lies cyclically in ]i, j]
            between = (i < k <= j) if i <= j else (i < k or k <= j)
            if not between:
                break
        gfns[c, i] = gfns[c, j]
        i = j


# ================================================================ KvmApfHost


@core
def _pv_enabled(hv, c):
    """``kvm_pv_async_pf_enabled``: ENABLED and DELIVERY_AS_INT both set."""
    return (hv[HV_MSR_EN_VAL, c] & PV_ENABLED) == PV_ENABLED


@core
def _can_deliver(hv, c, cpl):
    """``kvm_can_deliver_async_pf`` (not nested, paging on)."""
    if not _pv_enabled(hv, c):
        return False
    return not (hv[HV_SEND_USER_ONLY, c] and cpl == 0)


@core
def _alloc_token(hv, c):
    """``alloc_apf_token``: never 0; ``id`` wraps every 2**20 tokens."""
    if (hv[HV_ID, c] << 12) & U32 == 0:
        hv[HV_ID, c] = 1
    token = ((hv[HV_ID, c] << 12) | c) & U32
    hv[HV_ID, c] = (hv[HV_ID, c] + 1) & U32
    return token


@core
def kvm_page_fault(st, c, gfn, user, interrupts_allowed):
    """``KvmApfHost.page_fault(c, gfn, X86FaultContext(cpl=3 if user else 0, ...))``.

    Returns:
        (outcome, token, work): outcome SYNC / APF_HALT_REPEATED / ASYNC_INJECTED /
        ASYNC_HALTED (ERROR: see SC_ERR); token 0 where Python's is None; work = pool index of
        the new item, or -1.  The sync reason is left in ``hv[HV_SYNC_REASON, c]``.
    """
    hv, gfns = st[ST_HV], st[ST_GFNS]
    cpl = 3 if user else 0
    if not interrupts_allowed:  # the only kvm_can_do_async_pf refusal with these defaults
        hv[HV_SYNC_FAULTS, c] += 1
        hv[HV_SYNC_REASON, c] = REASON_INTERRUPTS_NOT_ALLOWED
        return SYNC, 0, -1
    if _gfn_find(gfns, c, gfn):
        hv[HV_REQ_APF_HALT, c] = 1
        hv[HV_REPEATED_FAULTS, c] += 1
        return APF_HALT_REPEATED, 0, -1
    token = _alloc_token(hv, c)  # allocated even if the setup below is refused
    w = _q_setup(st, c, gfn, token)
    if w == -1:
        hv[HV_SYNC_FAULTS, c] += 1
        hv[HV_SYNC_REASON, c] = REASON_QUEUE_FULL
        return SYNC, token, -1
    if w < 0:
        return ERROR, token, -1
    # kvm_arch_async_page_not_present
    if not _gfn_add(gfns, c, gfn):
        _fail(st[ST_SC], ERR_GFN_HASH_FULL, c)
        return ERROR, token, -1
    a = hv[HV_AREA, c]
    if _can_deliver(hv, c, cpl) and a >= 0:
        st[ST_AREA][AREA_FLAGS, a] = KVM_PV_REASON_PAGE_NOT_PRESENT
        st[ST_WORK][WK_NOTPRESENT_INJECTED, w] = 1
        hv[HV_NOTPRESENT_INJECTED, c] += 1
        return ASYNC_INJECTED, token, w
    hv[HV_REQ_APF_HALT, c] = 1
    return ASYNC_HALTED, token, w


@core
def kvm_work_started(st, w):
    """``KvmApfHost.work_started``: the worker began ``async_pf_execute``; False on error."""
    work = st[ST_WORK]
    if not _q_alive(st, w):
        return False
    if work[WK_STATE, w] != PENDING:
        _fail(st[ST_SC], ERR_NOT_PENDING, w)
        return False
    work[WK_STATE, w] = WORK_RUNNING
    return True


@core
def kvm_work_done(st, w):
    """``KvmApfHost.work_done``: (apf_ready_requested, kick) as 0/1 (no clear: never finishes
    one)."""
    ok, first = _q_work_returned(st, w)
    if not ok or not first:
        return 0, 0
    hv = st[ST_HV]
    c = st[ST_WORK][WK_VCPU, w]
    hv[HV_REQ_APF_READY, c] = 1  # kvm_arch_async_page_present_queued
    kick = 0 if hv[HV_PAGEREADY_PENDING, c] else 1
    return 1, kick


@core
def _can_dequeue(st, c):
    """``kvm_arch_can_dequeue_async_page_present``."""
    hv = st[ST_HV]
    if not _pv_enabled(hv, c):
        return True
    a = hv[HV_AREA, c]
    return a >= 0 and st[ST_AREA][AREA_TOKEN, a] == 0


@core
def _page_present(st, c, w):
    """``kvm_arch_async_page_present`` for a popped item: (token, injected) or (_, -1) on
    error."""
    hv, work, area = st[ST_HV], st[ST_WORK], st[ST_AREA]
    wakeup_all = work[WK_WAKEUP_ALL, w]
    if wakeup_all:
        token = BROADCAST_TOKEN
    else:
        token = work[WK_TOKEN, w]
        if not _gfn_delete(st[ST_GFNS], c, work[WK_GFN, w]):
            hv[HV_WARNINGS, c] += 1  # kvm_del_async_pf_gfn: gfn missing
    injected = 0
    a = hv[HV_AREA, c]
    if (wakeup_all or work[WK_NOTPRESENT_INJECTED, w]) and _pv_enabled(hv, c) and a >= 0:
        if area[AREA_TOKEN, a] != 0:
            _fail(st[ST_SC], ERR_PAGE_READY_OVER_UNACKED, c)
            return token, -1
        area[AREA_TOKEN, a] = token
        hv[HV_PAGEREADY_PENDING, c] = 1
        hv[HV_PAGEREADY_INJECTED, c] += 1
        injected = 1
    hv[HV_HALTED, c] = 0
    return token, injected


@core
def _check_completion(st, c, comp):
    """``kvm_check_async_pf_completion``: fills ``comp``; returns the number of completions."""
    n = 0
    while st[ST_HV][HV_DLEN, c] > 0 and _can_dequeue(st, c):
        w = _q_pop_done(st, c)
        token, injected = _page_present(st, c, w)
        if injected < 0 or not _q_retire(st, w):
            return n
        if n >= comp.shape[1]:
            _fail(st[ST_SC], ERR_COMP_FULL, c)
            return n
        comp[COMP_TOKEN, n] = token
        comp[COMP_PAGE_READY, n] = injected
        n += 1
    return n


@core
def kvm_enter_guest(st, c, comp):
    """``KvmApfHost.enter_guest``: KVM_REQ_APF_HALT first, then KVM_REQ_APF_READY.

    Returns:
        (entered, ncomp) as ints; ``comp[COMP_TOKEN / COMP_PAGE_READY, :ncomp]`` hold the
        completions in order.  (0, 0) with SC_ERR set if the vCPU is APF-halted.
    """
    hv = st[ST_HV]
    if hv[HV_HALTED, c]:
        _fail(st[ST_SC], ERR_ENTER_WHILE_HALTED, c)
        return 0, 0
    if hv[HV_REQ_APF_HALT, c]:
        hv[HV_REQ_APF_HALT, c] = 0
        hv[HV_HALTED, c] = 1
        return 0, 0
    n = 0
    if hv[HV_REQ_APF_READY, c]:
        hv[HV_REQ_APF_READY, c] = 0
        n = _check_completion(st, c, comp)
    return 1, n


@core
def kvm_msr_write_ack(st, c, comp):
    """``KvmApfHost.msr_write_ack(c, 1)``: clear pageready_pending, dequeue more; returns
    the number of completions written to ``comp``."""
    st[ST_HV][HV_PAGEREADY_PENDING, c] = 0
    return _check_completion(st, c, comp)


@core
def kvm_is_halted(st, c):
    """``KvmApfHost.vcpus[c].halted``."""
    return st[ST_HV][HV_HALTED, c] != 0


@core
def kvm_runnable(st, c, interrupt_pending):
    """``KvmApfHost.runnable``: not halted, a completion on ``done``, or an interrupt."""
    hv = st[ST_HV]
    return hv[HV_HALTED, c] == 0 or hv[HV_DLEN, c] > 0 or bool(interrupt_pending)


@core
def kvm_unblock(st, c):
    """``KvmApfHost.unblock``: ``apf.halted = false``."""
    st[ST_HV][HV_HALTED, c] = 0


@core
def _msr_write_int(hv, c, data):
    """MSR_KVM_ASYNC_PF_INT; returns True for #GP."""
    if data >> 8:
        return True
    hv[HV_MSR_INT_VAL, c] = data
    hv[HV_VEC, c] = data & 0xFF
    return False


@core
def _msr_write_en(st, c, data, a):
    """MSR_KVM_ASYNC_PF_EN (``kvm_pv_enable_async_pf``), enabling path only; ``a`` = the
    guest area index.  Returns True for #GP; the disabling path (a queue clear) is not ported
    and reported as #GP."""
    hv = st[ST_HV]
    if data & 0x30:
        return True
    hv[HV_MSR_EN_VAL, c] = data
    if not _pv_enabled(hv, c) or a < 0:
        return True
    hv[HV_AREA, c] = a
    hv[HV_SEND_USER_ONLY, c] = 0 if data & KVM_ASYNC_PF_SEND_ALWAYS else 1
    hv[HV_DELIVERY_AS_PF_VMEXIT, c] = 1 if data & KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT else 0
    if _q_wakeup_all(st, c) < 0:
        return False
    hv[HV_WAKEUPS_QUEUED, c] += 1
    hv[HV_REQ_APF_READY, c] = 1  # done was empty: kvm_arch_async_page_present_queued
    return False


@core
def kvm_setup(st, nvcpus):
    """``KvmMode.setup``: per vCPU, guest ``cpu_init`` then MSR_KVM_ASYNC_PF_INT and _EN."""
    area, hv = st[ST_AREA], st[ST_HV]
    en = KVM_ASYNC_PF_ENABLED | KVM_ASYNC_PF_DELIVERY_AS_INT | KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT
    for c in range(nvcpus):
        area[AREA_ENABLED, c] = 1  # kvm_guest_cpu_init (host has ASYNC_PF_VMEXIT)
        _msr_write_int(hv, c, HYPERVISOR_CALLBACK_VECTOR)
        _msr_write_en(st, c, en, c)


# ================================================================ KvmApfGuest


@core
def _bucket_of(token):
    return _hash_32(token & U32, KVM_TASK_SLEEP_HASHBITS)


@core
def _find(st, token):
    """``_find_apf_task``: the node of ``token`` or -1."""
    node = st[ST_NODE]
    n = st[ST_BUCKET][_bucket_of(token)]
    while n >= 0:
        if node[ND_TOKEN, n] == token:
            return n
        n = node[ND_NEXT, n]
    return -1


@core
def _link_head(st, n, token, cpu):
    """``hlist_add_head`` of node ``n`` = {token, cpu} into its bucket."""
    node, heads = st[ST_NODE], st[ST_BUCKET]
    b = _bucket_of(token)
    node[ND_TOKEN, n] = token
    node[ND_CPU, n] = cpu
    node[ND_PREV, n] = -1
    node[ND_NEXT, n] = heads[b]
    if heads[b] >= 0:
        node[ND_PREV, heads[b]] = n
    heads[b] = n
    node[ND_LINKED, n] = 1


@core
def _unlink(st, n):
    """``hlist_del_init``."""
    node = st[ST_NODE]
    prev, nxt = node[ND_PREV, n], node[ND_NEXT, n]
    if prev >= 0:
        node[ND_NEXT, prev] = nxt
    else:
        st[ST_BUCKET][_bucket_of(node[ND_TOKEN, n])] = nxt
    if nxt >= 0:
        node[ND_PREV, nxt] = prev
    node[ND_PREV, n] = -1
    node[ND_NEXT, n] = -1
    node[ND_LINKED, n] = 0


@core
def _release_dummy(st, n):
    """Return a dummy's slot to the pool (freed, or leaked as in Linux: only counted)."""
    sc = st[ST_SC]
    st[ST_NFREE][sc[SC_NFREE_TOP]] = n
    sc[SC_NFREE_TOP] += 1


@core
def _not_present(st, c, task, token, user, irqs_enabled, task_state):
    """``KvmApfGuest._not_present``: panics, then ``kvm_async_pf_task_wait_schedule``."""
    sc, waiting, node = st[ST_SC], st[ST_WAITING], st[ST_NODE]
    if not irqs_enabled:
        return PANIC_IRQS_DISABLED
    if not user:
        return PANIC_KERNEL_MODE
    if task < 0 or task >= waiting.shape[0]:
        _fail(sc, ERR_BAD_TASK, task)
        return ERROR
    if waiting[task]:
        _fail(sc, ERR_ALREADY_WAITING, task)
        return ERROR
    sc[SC_NOT_PRESENT] += 1
    n = _find(st, token)
    if n >= 0:
        if node[ND_TASK, n] >= 0:
            _fail(sc, ERR_TOKEN_HAS_SLEEPER, task)
            return ERROR
        _unlink(st, n)  # the wake was delivered ahead of the #PF
        _release_dummy(st, n)
        sc[SC_DUMMIES_FREED] += 1
        return NO_SLEEP
    _link_head(st, task, token, c)  # the task's own node
    waiting[task] = 1
    task_state[task] = UNINTERRUPTIBLE  # prepare_to_swait_exclusive
    sc[SC_SLEEPS] += 1
    return SLEEP


@core
def kvm_handle_async_pf(st, c, task, token, user, irqs_enabled, task_state):
    """``KvmApfGuest.handle_async_pf(c, task, cr2=token, user, irqs_enabled)``: read and zero
    this CPU's flags; returns a NotPresentOutcome code (ERROR: see SC_ERR).  SLEEP sets
    ``task_state[task]`` UNINTERRUPTIBLE."""
    area = st[ST_AREA]
    enabled = area[AREA_ENABLED, c]
    flags = area[AREA_FLAGS, c] if enabled else 0
    if enabled:
        area[AREA_FLAGS, c] = 0
    if not flags:
        return NOT_ASYNC
    if flags & KVM_PV_REASON_PAGE_NOT_PRESENT:
        return _not_present(st, c, task, token & U32, user, irqs_enabled, task_state)
    if not irqs_enabled:
        return PANIC_IRQS_DISABLED
    st[ST_SC][SC_GUEST_WARNINGS] += 1  # "Unexpected async PF flags"
    return UNEXPECTED_FLAGS


@core
def kvm_wait_resume(st, task, task_state):
    """``KvmApfGuest.wait_resume``: True when the wait is over; False when the node is still
    linked (the task is UNINTERRUPTIBLE again: schedule) or on error (SC_ERR set)."""
    sc, waiting = st[ST_SC], st[ST_WAITING]
    if task < 0 or task >= waiting.shape[0]:
        _fail(sc, ERR_BAD_TASK, task)
        return False
    if not waiting[task]:
        _fail(sc, ERR_NOT_WAITING, task)
        return False
    if task_state[task] != RUNNING:
        _fail(sc, ERR_RESUME_NOT_RUNNING, task)
        return False
    if st[ST_NODE][ND_LINKED, task]:
        task_state[task] = UNINTERRUPTIBLE
        return False
    waiting[task] = 0  # finish_swait
    return True


@core
def _wake_one(st, n, woken, nwoken):
    """``apf_task_wake_one``: unlink, then record the sleeper to wake; returns the new count
    (-1: ``woken`` is full, SC_ERR set).  A dummy found here is unlinked and, as in Linux,
    never freed (counted as leaked)."""
    _unlink(st, n)
    task = st[ST_NODE][ND_TASK, n]
    if task < 0:
        st[ST_SC][SC_DUMMIES_LEAKED] += 1
        _release_dummy(st, n)
        return nwoken
    if nwoken >= woken.shape[0]:
        _fail(st[ST_SC], ERR_WOKEN_FULL, task)
        return -1
    woken[nwoken] = task
    return nwoken + 1


@core
def _wake_all(st, cpu, woken):
    """``apf_task_wake_all``: unlink every node of ``cpu``, bucket by bucket, head first."""
    node, heads = st[ST_NODE], st[ST_BUCKET]
    st[ST_SC][SC_BROADCASTS] += 1
    nwoken = 0
    for b in range(KVM_TASK_SLEEP_HASHSIZE):
        n = heads[b]
        while n >= 0:
            nxt = node[ND_NEXT, n]
            if node[ND_CPU, n] == cpu:
                nwoken = _wake_one(st, n, woken, nwoken)
                if nwoken < 0:
                    return -1
            n = nxt
    return nwoken


@core
def _task_wake(st, cpu, token, woken):
    """``kvm_async_pf_task_wake`` on ``cpu``: (WakeKind code, number of tasks to wake)."""
    sc = st[ST_SC]
    sc[SC_PAGE_READY] += 1
    if token == BROADCAST_TOKEN:
        nwoken = _wake_all(st, cpu, woken)
        return (BROADCAST, nwoken) if nwoken >= 0 else (ERROR, 0)
    n = _find(st, token)
    if n >= 0:
        nwoken = _wake_one(st, n, woken, 0)
        return (WOKEN, nwoken) if nwoken >= 0 else (ERROR, 0)
    # no waiter yet: allocate a dummy (alloc_dummy=None never fails); the re-search Python does
    # after the allocation cannot find anything new, as no other CPU runs in between
    sc[SC_DUMMIES_ALLOCATED] += 1
    top = sc[SC_NFREE_TOP]
    if top == 0:
        _fail(sc, ERR_NODE_POOL_FULL, cpu)
        return ERROR, 0
    sc[SC_NFREE_TOP] = top - 1
    _link_head(st, st[ST_NFREE][top - 1], token, cpu)
    return DUMMY_INSERTED, 0


@core
def kvm_page_ready_interrupt(st, c, woken):
    """``KvmApfGuest.page_ready_interrupt`` (``sysvec_kvm_asyncpf_interrupt``) on ``c``.

    Returns:
        (ack, kind, nwoken): ``ack`` 1 when the slot was zeroed (the caller then calls
        ``kvm_msr_write_ack``); ``kind`` a WakeKind code, -1 when async PF is disabled on
        ``c`` (Python's ``wake`` None), ERROR on error; ``woken[:nwoken]`` are the tasks the
        caller must ``wake_up``, in Python's order.
    """
    area = st[ST_AREA]
    st[ST_SC][SC_IRQ_HV_CALLBACK] += 1
    if not area[AREA_ENABLED, c]:
        return 0, NONE, 0
    kind, nwoken = _task_wake(st, c, area[AREA_TOKEN, c], woken)
    if kind == ERROR:
        return 0, ERROR, 0
    area[AREA_TOKEN, c] = 0
    return 1, kind, nwoken


# ================================================================ plain-Python views


def kvm_error(st: tuple[np.ndarray, ...]) -> str:
    """The recorded error ('' when none)."""
    sc = st[ST_SC]
    code = int(sc[SC_ERR])
    return f"{ERROR_NAMES[code]} ({int(sc[SC_ERR_ARG])})" if code else ""


def kvm_list(st: tuple[np.ndarray, ...], which: int, c: int) -> list[int]:
    """Work indices on vCPU ``c``'s ``queue`` (``which`` = ST_QUEUE) or ``done`` (ST_DONE)."""
    length = st[ST_HV][HV_QLEN if which == ST_QUEUE else HV_DLEN, c]
    return [int(w) for w in st[which][c, :length]]


def kvm_buckets(st: tuple[np.ndarray, ...]) -> list[list[int]]:
    """Node indices of every sleep-table bucket, head first."""
    node = st[ST_NODE]
    out = []
    for head in st[ST_BUCKET]:
        chain, n = [], int(head)
        while n >= 0:
            chain.append(n)
            n = int(node[ND_NEXT, n])
        out.append(chain)
    return out


def kvm_counters(st: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Guest and queue counters (ints) and host counters (one int per vCPU)."""
    sc, hv = st[ST_SC], st[ST_HV]
    guest = {"not_present_count": SC_NOT_PRESENT, "sleeps": SC_SLEEPS,
             "page_ready_count": SC_PAGE_READY, "broadcasts": SC_BROADCASTS,
             "irq_hv_callback_count": SC_IRQ_HV_CALLBACK,
             "dummies_allocated": SC_DUMMIES_ALLOCATED, "dummies_freed": SC_DUMMIES_FREED,
             "dummies_leaked": SC_DUMMIES_LEAKED,
             "dummy_alloc_failures": SC_DUMMY_ALLOC_FAILURES,
             "guest_warnings": SC_GUEST_WARNINGS, "allocated": SC_ALLOCATED,
             "freed_total": SC_FREED_TOTAL}
    host = {"notpresent_injected": HV_NOTPRESENT_INJECTED,
            "pageready_injected": HV_PAGEREADY_INJECTED, "sync_faults": HV_SYNC_FAULTS,
            "repeated_faults": HV_REPEATED_FAULTS, "wakeups_queued": HV_WAKEUPS_QUEUED,
            "host_warnings": HV_WARNINGS, "queued": HV_QUEUED}
    out: dict[str, Any] = {name: int(sc[row]) for name, row in guest.items()}
    out.update({name: [int(v) for v in hv[row]] for name, row in host.items()})
    return out


# ---------------------------------------------------------------- invariants


def _py_hash_32(val: int, bits: int) -> int:
    """``hash_32`` for the plain-Python checks (no compilation needed)."""
    return ((val * GOLDEN_RATIO_32) & U32) >> (32 - bits)


def _check_queues(st: tuple[np.ndarray, ...]) -> str:
    """AsyncPfQueues.check_invariants: INV-H1 (queued accounting), INV-H3 (ownership)."""
    sc, hv, work = st[ST_SC], st[ST_HV], st[ST_WORK]
    reachable: set[int] = set()
    for c in range(hv.shape[1]):
        where = f"vCPU {c}"
        queue, done = kvm_list(st, ST_QUEUE, c), kvm_list(st, ST_DONE, c)
        for w in queue:
            if (work[WK_FREED, w] or not work[WK_ON_QUEUE, w] or work[WK_WAKEUP_ALL, w]
                    or work[WK_VCPU, w] != c or work[WK_STATE, w] == CANCELLED):
                return f"{where}: bad item on queue: {w}"
        for w in done:
            if work[WK_FREED, w] or not work[WK_ON_DONE, w] or work[WK_STATE, w] != RETURNED:
                return f"{where}: bad item on done: {w}"
            if not work[WK_WAKEUP_ALL, w] and not work[WK_ON_QUEUE, w]:
                return f"{where}: done item not on queue: {w}"
        if len(set(queue)) != len(queue) or len(set(done)) != len(done):
            return f"{where}: an item is linked twice"
        reachable.update(queue, done)
        wakeups = sum(1 for w in done if work[WK_WAKEUP_ALL, w])
        if hv[HV_QUEUED, c] != len(queue) + wakeups:
            return f"INV-H1 {where}: queued={hv[HV_QUEUED, c]} != |queue| + wakeup_all items"
        if hv[HV_QUEUED, c] > ASYNC_PF_PER_VCPU + 1:
            return f"INV-H1 {where}: queued={hv[HV_QUEUED, c]} > 65"
    live = {int(w) for w in np.flatnonzero(work[WK_FREED] == 0)}
    if live - reachable:
        return f"INV-H3: items neither linked nor freed: {sorted(live - reachable)}"
    if sc[SC_ALLOCATED] - sc[SC_FREED_TOTAL] != len(live):
        return "INV-H3: allocated - freed != live items"
    free = st[ST_WFREE][:sc[SC_WFREE_TOP]]
    if len(set(free.tolist())) != len(free) or any(not work[WK_FREED, w] for w in free):
        return "INV-H3: work free list corrupt"
    return ""


def _check_host(st: tuple[np.ndarray, ...]) -> str:
    """KvmApfHost.check_invariants: gfn hash reachability, INV-H2, H4, H5."""
    hv, gfns, work, area = st[ST_HV], st[ST_GFNS], st[ST_WORK], st[ST_AREA]
    mask = ASYNC_PF_PER_VCPU - 1
    for c in range(hv.shape[1]):
        where = f"vCPU {c}"
        slots = [int(g) for g in gfns[c]]
        for i, gfn in enumerate(slots):
            if gfn == GFN_EMPTY:
                continue
            key = _py_hash_32(gfn & U32, APF_HASH_BITS)
            while key != i:
                if slots[key] == GFN_EMPTY:
                    return f"{where}: gfn {gfn:#x} in slot {i} unreachable"
                key = (key + 1) & mask
        hashed = sorted(g for g in slots if g != GFN_EMPTY)
        if len(hashed) != len(set(hashed)):
            return f"INV-H2 {where}: a gfn is hashed twice: {hashed}"
        if hashed != sorted(int(work[WK_GFN, w]) for w in kvm_list(st, ST_QUEUE, c)):
            return f"INV-H2 {where}: gfn hash != queue"
        if hv[HV_PAGEREADY_INJECTED, c] > hv[HV_NOTPRESENT_INJECTED, c] + hv[HV_WAKEUPS_QUEUED, c]:
            return f"INV-H4 {where}: more page-ready than not-present + wakeup_all"
        a = hv[HV_AREA, c]
        pv = (hv[HV_MSR_EN_VAL, c] & PV_ENABLED) == PV_ENABLED
        if pv and a >= 0 and area[AREA_TOKEN, a] and not hv[HV_PAGEREADY_PENDING, c]:
            return f"INV-H5 {where}: token in the slot but no page-ready pending"
    return ""


def _check_guest(st: tuple[np.ndarray, ...], task_state: np.ndarray | None,
                 task_freed: np.ndarray | None) -> str:
    """KvmApfGuest.check_invariants: INV-X1..X3 and dummy accounting."""
    sc, node, waiting = st[ST_SC], st[ST_NODE], st[ST_WAITING]
    ntasks = waiting.shape[0]
    seen: set[int] = set()
    linked_dummies = 0
    for index, chain in enumerate(kvm_buckets(st)):
        prev = -1
        for n in chain:
            token = int(node[ND_TOKEN, n])
            if not node[ND_LINKED, n] or node[ND_PREV, n] != prev:
                return f"node {n} in bucket {index} marked unlinked or mislinked"
            prev = n
            if _py_hash_32(token & U32, KVM_TASK_SLEEP_HASHBITS) != index:
                return f"node {n} in bucket {index}, belongs elsewhere"
            if token in seen:
                return f"INV-X1: token {token:#x} twice"
            seen.add(token)
            if node[ND_TASK, n] < 0:
                linked_dummies += 1
            elif n >= ntasks or node[ND_TASK, n] != n or not waiting[n]:
                return f"INV-X2: node {n} has no waiting task"
    for task in np.flatnonzero(waiting):
        if task_freed is not None and task_freed[task]:
            return f"task {task} freed while waiting"
        sleeping = task_state is not None and task_state[task] in (INTERRUPTIBLE, UNINTERRUPTIBLE)
        if not node[ND_LINKED, task] and sleeping:
            return f"INV-X3: node of task {task} unlinked but the task still sleeps"
    accounted = sc[SC_DUMMIES_FREED] + sc[SC_DUMMIES_LEAKED] + linked_dummies
    if sc[SC_DUMMIES_ALLOCATED] != accounted:
        return "dummy accounting: allocated != freed + leaked + linked"
    if sc[SC_NFREE_TOP] + linked_dummies != node.shape[1] - ntasks:
        return "dummy node pool: free + linked != capacity"
    return ""


def kvm_check(st: tuple[np.ndarray, ...], task_state: np.ndarray | None = None,
              task_freed: np.ndarray | None = None) -> str:
    """KvmApfHost + KvmApfGuest ``check_invariants`` on the arrays: '' when all hold.

    ``task_state`` / ``task_freed`` (the caller's task table) enable INV-X3 and the "freed
    while waiting" check; a recorded error (SC_ERR) is reported first.
    """
    return (kvm_error(st) or _check_queues(st) or _check_host(st)
            or _check_guest(st, task_state, task_freed))
