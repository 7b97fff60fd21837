"""Trace records: fixed-size rows the engines append while a run is traced (``--trace``).

Both engines (the Python reference objects and the compiled core) append one row of
:data:`NFIELDS` int64 per point of interest (a context switch, a fault, a "page not present",
a swap-device request...) into one preallocated array; the writer (:mod:`pfsim.tracing`) turns
the rows into a Perfetto or Chrome JSON trace after the run.  Nothing is allocated while the
run goes on: a row that does not fit is counted in ``meta[M_DROPPED]`` and left out, and a row
outside the time window (``--trace-window``) is not stored at all.  Untraced, the array has no
row and ``meta[M_ON]`` is 0: a record call is one load and one branch.

Columns (what each kind puts in them is listed with the kinds):

======  ====================================================================================
TIME    when (ns)
KIND    one of the ``K_*`` kinds below
CPU     the vCPU (guest kinds) or host CPU (``K_HOST_SWITCH``) it happened on
TASK    the tid of the task involved (-1: none)
ARG     a page: the gfn, or the guest page-table slot; for switches the previous tid
ID      an identifier: the async-PF token, the swap request's page count
END     the end of a slice (swap I/O, lock wait); else equal to TIME
AUX     a detail: the previous task's state (switches), the fault class, read/write...
======  ====================================================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pfsim.machine.scan import (
    FF_ANON_PAGE,
    FF_COW_REUSE,
    FF_GUEST,
    FF_HOST_TOUCH,
    FF_ZERO_PAGE,
    LOG_BEGIN,
    LOG_CLASS,
    LOG_GFN,
    LOG_HANDLED,
)

TIME, KIND, CPU, TASK, ARG, ID, END, AUX = range(8)
NFIELDS = 8

# ---------------------------------------------------------------- kinds
K_GUEST_SWITCH = 1
"""Guest ``__schedule`` on vCPU CPU: TASK the next tid (-1: idle), ARG the previous tid (-1:
idle), AUX the previous task's state (pfsim.sched.TaskState)."""
K_HOST_SWITCH = 2
"""Host ``__schedule`` on host CPU CPU: TASK the next host thread's tid (a vCPU thread or a
host task; -1: idle), ARG the previous one, AUX the previous one's state."""
K_GUEST_FAULT = 3
"""A guest page fault handled by the kernel (``exc_page_fault``) on vCPU CPU for TASK: ARG the
guest frame it allocated (-1: none), END when the handler returned."""
K_SCAN_FAULTS = 4
"""Faults resolved inside one run of the clusters' compiled per-access loop on core CPU for
TASK, from TIME to END: ID the minor faults, AUX the host first touches in the run (the flat
VMM's loop records each fault instead: ``K_FAST_FAULT``)."""
K_HOST_FAULT = 5
"""An EPT violation on vCPU CPU: ARG the gfn, AUX its class (``HF_*``)."""
K_NOT_PRESENT = 6
"""The guest took "page not present" for token ID (kvm: #PF with the token; s390: the pfault
initial interrupt, ID the task's pid) on vCPU CPU, TASK the faulting task."""
K_PAGE_READY = 7
"""The guest took "page ready" for token ID (kvm: the page-ready interrupt; s390: the pfault
completion interrupt) on vCPU CPU."""
K_SWAP_IO = 8
"""A swap-device request from TIME (submitted) to END (completed): ID the pages, AUX 1 for a
write (swap-out), 0 for a read (swap-in)."""
K_LOCK_WAIT = 9
"""A cluster lock wait from TIME to END by TASK on core CPU: AUX the lock (``LOCK_*``)."""
K_FAST_FAULT = 10
"""A guest page fault resolved inside the compiled per-access loop on vCPU CPU for TASK (the
flat VMM's loop, :func:`pfsim.machine.scan.run_accesses`): TIME the trap, END the end of its
handling (the host's first touch of a new frame included), ARG the frame it mapped, ID its
class (``FF_ZERO_PAGE``, ``FF_ANON_PAGE``, ``FF_COW_REUSE``), AUX 1 when the host backed the
frame on its first touch.  (A first touch on an access that needed no guest fault is a
``K_HOST_FAULT`` with class ``HF_FIRST_TOUCH``.)"""
KIND_NAMES = {K_GUEST_SWITCH: "guest switch", K_HOST_SWITCH: "host switch",
              K_GUEST_FAULT: "guest fault", K_SCAN_FAULTS: "scan faults",
              K_HOST_FAULT: "host fault", K_NOT_PRESENT: "page not present",
              K_PAGE_READY: "page ready", K_SWAP_IO: "swap I/O", K_LOCK_WAIT: "lock wait",
              K_FAST_FAULT: "fast-path fault"}
FAST_FAULT_NAMES = {FF_ZERO_PAGE: "minor fault (zero page)",
                    FF_ANON_PAGE: "minor fault (new anonymous page)",
                    FF_COW_REUSE: "minor fault (COW reuse)"}

HF_RESIDENT, HF_SWAPCACHE, HF_FIRST_TOUCH, HF_MAJOR, HF_INIO = 0, 1, 2, 3, 4
HOST_FAULT_NAMES = ("EPT violation (resident)", "host minor fault (swap cache)",
                    "host minor fault (first touch)", "host major fault (swap-in)",
                    "host fault (page in I/O)")
LOCK_PTE, LOCK_PT2, LOCK_RWLOCK = 0, 1, 2
LOCK_NAMES = ("PTE lock", "PT2 lock", "vseg-list rwlock")

# ---------------------------------------------------------------- meta
M_ON, M_N, M_DROPPED, M_FROM, M_TO = range(5)
M_FIELDS = 5
NEVER = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def record(rec, meta, time, kind, cpu, task, arg, ident, end, aux):  # noqa: PLR0913
    """Append one row (see the module docstring) unless tracing is off, its TIME lies outside
    the window ``[meta[M_FROM], meta[M_TO])`` or the array is full (then it is counted)."""
    if meta[M_ON] == 0:
        return
    if time >= meta[M_TO] or time < meta[M_FROM]:
        return
    n = meta[M_N]
    if n >= rec.shape[0]:
        meta[M_DROPPED] += 1
        return
    rec[n, TIME] = time
    rec[n, KIND] = kind
    rec[n, CPU] = cpu
    rec[n, TASK] = task
    rec[n, ARG] = arg
    rec[n, ID] = ident
    rec[n, END] = end
    rec[n, AUX] = aux
    meta[M_N] = n + 1


@njit(cache=True, nogil=True)
def record_fault_log(rec, meta, log, nlog, cpu, task):  # noqa: PLR0913
    """One row per fault of a run of the per-access loop, from its fault log (``log[LOG_*,
    :nlog]``, :mod:`pfsim.machine.scan`): a ``K_FAST_FAULT`` per guest fault, a
    ``K_HOST_FAULT`` (first touch) per access the host backed without one."""
    if meta[M_ON] == 0:
        return
    for k in range(nlog):
        cls = log[LOG_CLASS, k]
        guest = cls & FF_GUEST
        if guest:
            record(rec, meta, log[LOG_BEGIN, k], K_FAST_FAULT, cpu, task, log[LOG_GFN, k],
                   guest, log[LOG_HANDLED, k], 1 if cls & FF_HOST_TOUCH else 0)
        elif cls & FF_HOST_TOUCH:
            record(rec, meta, log[LOG_BEGIN, k], K_HOST_FAULT, cpu, task, log[LOG_GFN, k], 0,
                   log[LOG_HANDLED, k], HF_FIRST_TOUCH)


class TraceRecorder:
    """The record array of one run, shared by the Python objects and the compiled core.

    Args:
        capacity: rows kept at most (0: tracing off).
        window: ``(from_ns, to_ns)``: rows outside are not stored (to_ns None: no end).
    """

    def __init__(self, capacity: int = 0, window: tuple[int, int | None] = (0, None)) -> None:
        self.rec = np.zeros((capacity, NFIELDS), dtype=np.int64)  # pages are touched on use
        self.meta = np.zeros(M_FIELDS, dtype=np.int64)
        self.meta[M_ON] = capacity > 0
        self.meta[M_FROM] = window[0]
        self.meta[M_TO] = NEVER if window[1] is None else window[1]
        self.on = capacity > 0

    def add(self, time: int, kind: int, cpu: int, task: int, arg: int = 0, ident: int = 0,
            end: int | None = None, aux: int = 0) -> None:
        """:func:`record` for the Python engine (same rules)."""
        meta = self.meta
        if time >= meta[M_TO] or time < meta[M_FROM]:
            return
        end = time if end is None else end
        n = int(meta[M_N])
        if n >= self.rec.shape[0]:
            meta[M_DROPPED] += 1
            return
        self.rec[n] = (time, kind, cpu, task, arg, ident, end, aux)
        meta[M_N] = n + 1

    def reset(self) -> None:
        """Forget every row (the run starts again, e.g. on the reference path)."""
        self.meta[M_N] = 0
        self.meta[M_DROPPED] = 0

    @property
    def rows(self) -> np.ndarray:
        """The stored rows, in the order they were recorded."""
        return self.rec[:int(self.meta[M_N])]

    @property
    def dropped(self) -> int:
        return int(self.meta[M_DROPPED])


OFF = TraceRecorder(0)
"""The recorder of an untraced run (the Python objects test ``recorder.on`` first)."""
