"""Layout of the compiled core's state: named rows of a few integer arrays.

The compiled core (:mod:`pfsim.compiled.machine`) keeps the whole running machine in numpy
arrays so that numba code can update it in place: tasks and run queues of both schedulers
(guest tasks on vCPUs, vCPU threads on host CPUs), the guest executor's per-vCPU segment, the
host's per-vCPU accounting, host memory and the swap device.  Each table is an int64 array
``[FIELDS, n]`` whose rows are named here; the Python reference objects hold the same facts
under the names these rows carry (``TK_STATE`` is ``Task.state``, ``VC_EPOCH`` is
``VcpuExecutor.epoch[c]``...).
"""

from __future__ import annotations

# ---------------------------------------------------------------- globals (g)
(G_STOPPED, G_ERR, G_ERR_ARG, G_PEND, G_PEND_SID, G_PEND_CPU, G_PEND_TASK, G_PEND_TIME,
 G_EVENTS, G_NREQ, G_ALIVE, G_PENDING_SPAWNS, G_NG, G_NV, G_NH, G_NTASK, G_MODE,
 G_HALTED, G_SERVICE, G_ALLOCATED, G_UNTIL, G_HAS_UNTIL) = range(22)
G_FIELDS = 22

# errors (G_ERR): the core stops and reports; UNSUPPORTED means "run the reference instead"
ERR_NONE, ERR_UNSUPPORTED, ERR_INVARIANT, ERR_CAPACITY = 0, 1, 2, 3

# ---------------------------------------------------------------- config (cf)
(CF_ENTRY, CF_ZERO_PAGE_COST, CF_ANON_PAGE, CF_COW_REUSE, CF_ZERO_PAGE, CF_FAST, CF_SYSCALL,
 CF_EPT, CF_HOST_FAULT, CF_SWAPCACHE_HIT, CF_APF_INJECT, CF_PAGE_READY, CF_SYNCHRONOUS,
 CF_PAGE_CLUSTER, CF_BATCH, CF_LIMIT, CF_POLICY, CF_HOST_TIMESLICE, CF_STEAL,
 CF_PERIODIC) = range(20)
CF_FIELDS = 20
# CF_STEAL: guest.steal_time; CF_PERIODIC: guest.tick = "periodic" (idle vCPUs keep the tick)

MODE_OFF, MODE_HALT, MODE_KVM, MODE_S390 = 0, 1, 2, 3
POLICY_FIFO, POLICY_LRU, POLICY_CLOCK, POLICY_RANDOM = 0, 1, 2, 3

# ---------------------------------------------------------------- tasks (tk), both schedulers
(TK_STATE, TK_USAGE, TK_FREED, TK_CPU, TK_ALLOWED, TK_ON_CPU, TK_RUNTIME, TK_SWITCHES_IN,
 TK_VRUNTIME, TK_DEADLINE, TK_VLAG, TK_TID, TK_NOTIFIER) = range(13)
TK_FIELDS = 13
RUNNING, RUNNABLE, INTERRUPTIBLE, UNINTERRUPTIBLE, DEAD = 0, 1, 2, 3, 4

# ---------------------------------------------------------------- run queues (rq)
(RQ_CURRENT, RQ_QLEN, RQ_SLICE_END, RQ_PREEMPT_COUNT, RQ_IDLE_SINCE, RQ_HAS_IDLE_SINCE,
 RQ_IDLE_NS, RQ_SWITCHES, RQ_KICK_PENDING, RQ_ONLINE, RQ_MIN_VRUNTIME, RQ_EXEC_START,
 RQ_STEAL_SEEN, RQ_SLICE_STEAL) = range(14)
RQ_FIELDS = 14

# ---------------------------------------------------------------- schedulers (sp[sid])
GUEST, HOST = 0, 1
(SP_POLICY, SP_TIMESLICE, SP_LATENCY, SP_MIN_GRAN, SP_WAKEUP_GRAN, SP_SWITCH, SP_IDLE_BALANCE,
 SP_NOTIFIER_KEY, SP_RQ_BASE, SP_NCPUS, SP_NR_LATENCY, SP_BASE_SLICE, SP_LAG_LIMIT,
 SP_TICK, SP_TICK_STRICT) = range(15)
SP_FIELDS = 15
P_RR, P_CFS, P_EEVDF = 0, 1, 2  # SP_POLICY (pfsim.sched.policy.POLICY_*)

# ---------------------------------------------------------------- vCPUs (vc): executor + host
(VC_EPOCH, VC_PAUSED, VC_OWED, VC_NEED_RESCHED, VC_HELD, VC_NIRQ,
 VC_SEG, VC_SEG_TASK, VC_SEG_T0, VC_SEG_POS0, VC_SEG_COUNT, VC_SEG_UNIT, VC_SEG_ACCESS,
 VC_SEG_FAULT, VC_SEG_NLOG, VC_SEG_EPT_GFN,
 VC_ON_CPU, VC_VMODE, VC_SINCE, VC_TIME_RUNNING, VC_TIME_IDLE, VC_TIME_STALLED,
 VC_TIME_PREEMPTED, VC_CHARGED_STALL, VC_HALT_EPOCH, VC_WAITING_GFN, VC_IRQ_PENDING,
 VC_THREAD, VC_ARCH_LOADS, VC_ARCH_PUTS, VC_KVM_PREEMPTED, VC_SEG_SPENT0, VC_OFF_AT) = range(33)
VC_FIELDS = 33
VM_RUNNING, VM_IDLE, VM_STALLED, VM_PREEMPTED = 0, 1, 2, 3  # host VcpuMode
IRQ_CAP = 256
HC_HEPOCH = 0
HC_FIELDS = 1
REQ_CAP = 4096  # chunk requests the core may leave for Python before it returns
IRQ_KVM_NOT_PRESENT, IRQ_S390_PRE_RUN = 1, 2  # pending guest handlers (the no-op kick is dropped)

# ---------------------------------------------------------------- guest tasks (tx): TaskExec
(TX_TASK, TX_PROC, TX_STEP0, TX_NSTEPS, TX_STEP_INDEX, TX_HAS_STEP, TX_DEADLINE, TX_REMAINING,
 TX_POS, TX_LEN, TX_CHUNK, TX_BUF, TX_THINK, TX_APF_WAIT,
 TX_MIN_FLT, TX_MAJ_FLT, TX_WORK, TX_ACCESSES, TX_COMPUTE_UNITS, TX_COW_REUSES,
 TX_LOCAL_PGFAULT, TX_PGFAULT, TX_SPENT, TX_APF_SINCE) = range(24)
TX_FIELDS = 24

# ---------------------------------------------------------------- steps (st rows of [n, ST])
STEP_ACCESS, STEP_COMPUTE, STEP_SLEEP = 0, 1, 2
ST_KIND, ST_DURATION, ST_COUNT, ST_UNIT, ST_BUF0, ST_BUF1 = range(6)
ST_FIELDS = 6
NONE = -1  # an absent duration / count

# ---------------------------------------------------------------- processes (pr)
PR_ALIVE, PR_EXITED_NS, PR_T0, PR_NT, PR_SLOT0, PR_NSLOTS, PR_RSS, PR_START = range(8)
PR_FIELDS = 8

# ---------------------------------------------------------------- host memory scalars (hm)
(HM_EVICTIONS, HM_SWAP_OUTS, HM_SWAP_INS, HM_READAHEAD, HM_EPT_VIOLATIONS, HM_HOST_MINOR,
 HM_HOST_MAJOR, HM_RA_HITS, HM_PREV_OFFSET, HM_PREV_WINDOW, HM_NEXT_SLOT, HM_NFREE_SLOTS,
 HM_HAND, HM_RANDOM_STATE, HM_WFREE, HM_BFREE, HM_SYNC_FALLBACKS, HM_HALTS, HM_PAGE_READY,
 HM_NFRAMES) = range(20)
HM_FIELDS = 20

# ---------------------------------------------------------------- swap device (sw)
(SW_CHANNEL_FREE, SW_READS, SW_WRITES, SW_PAGES_READ, SW_PAGES_WRITTEN, SW_BUSY_UNTIL,
 SW_LATENCY, SW_BANDWIDTH, SW_QD, SW_RANDOM_LATENCY, SW_LAT_POS, SW_LAT_LEN) = range(12)
SW_FIELDS = 12

# io waiters (wtr rows) and their kinds
W_KIND, W_ARG, W_ARG2, W_NEXT = 0, 1, 2, 3
WAIT_PAGE_ARRIVED, WAIT_KVM_WORK, WAIT_S390_WORK = 1, 2, 3

# ---------------------------------------------------------------- event kinds
(EV_SEGMENT_END, EV_RERUN, EV_SLICE_EXPIRED, EV_BLOCK, EV_EXIT, EV_TIMER_WAKE, EV_RESCHED_IPI,
 EV_IDLE_DISPATCH, EV_SPAWN, EV_TICK, EV_TICK_NOW, EV_HALT_IDLE, EV_GUEST_TIMER,
 EV_SWAP_IN_DONE, EV_DELIVER_INJECTED, EV_KICK_IPI, EV_FLOATING_IPI, EV_IDLE_TICK) = range(18)
URGENT, NORMAL, LATE = 0, 1, 2

# ---------------------------------------------------------------- the machine
from collections import namedtuple  # noqa: E402

Machine = namedtuple("Machine", [
    "ev", "heap", "evfree", "hg",  # event heap (pfsim.engine.arrayheap)
    "g", "cf", "tk", "rq", "rqq", "sp", "vc", "irq", "flog", "hc", "tx", "steps",
    "cslots", "cwrites", "clen", "creq", "pr",
    "mstate", "mgfn", "mvflags", "refcount", "gkind", "gfree", "gnfree", "gcosts", "out",
    "hbits", "hlinks", "hframes", "hfree_at", "hsmall",
    "hm", "evicted", "swap_slot1", "ra_flag", "pinned", "slot_gfn", "free_slots",
    "sw", "swq", "lat", "whead1", "wtail", "wtr", "wfree", "bt", "bfree",
    "rstate", "kvm", "s390", "comp", "woken", "hist",
    "tr", "trm",  # trace records and their counters (pfsim.machine.trace_records)
])
"""Every array of the running machine, passed whole to the compiled functions."""
