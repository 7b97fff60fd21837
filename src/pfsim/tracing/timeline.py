"""From trace records to what a timeline shows: scheduling slices, instants, flows, I/O lanes.

Both writers (:mod:`pfsim.tracing.perfetto`, :mod:`pfsim.tracing.chrome_json`) draw the same
:class:`Timeline`; it is built once from the rows of :mod:`pfsim.machine.trace_records`, with
numpy where the rows are many (scheduling, swap I/O) and a Python pass over the async-PF rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pfsim.machine import trace_records as T


@dataclass(frozen=True)
class Names:
    """Who the tids of a run are (from the simulation's objects after the run)."""

    guest_threads: dict[int, tuple[str, int, str]]
    """guest tid -> (thread name, pid, process name)."""
    host_threads: dict[int, str]
    """host tid -> name (vcpu0..., host0...)."""
    vcpus: int
    host_cpus: int
    swap_device: str
    async_pf: str
    end_ns: int
    """When the run ended (the last slice of every CPU closes there)."""


@dataclass
class Switches:
    """The context switches of one scheduler, in time order (numpy columns)."""

    time: np.ndarray
    cpu: np.ndarray
    next_tid: np.ndarray
    prev_tid: np.ndarray
    prev_state: np.ndarray


@dataclass
class Pair:
    """One async page fault: its "page not present" and its "page ready" rows (either may be
    missing when it lies outside the trace: in flight at the end, or cut by the window)."""

    token: int
    not_present: int | None  # row index
    page_ready: int | None


@dataclass
class Timeline:
    rows: np.ndarray
    guest: Switches
    host: Switches
    instants: np.ndarray
    """Row indices of the instant kinds (faults, not present, page ready), in time order."""
    pairs: list[Pair]
    swap: np.ndarray
    """Row indices of K_SWAP_IO rows, in submission order."""
    swap_lane: np.ndarray
    """The lane (a track) of each swap request: overlapping requests get different lanes."""
    locks: np.ndarray
    """Row indices of K_LOCK_WAIT rows."""
    flow_of: dict[int, tuple[int, bool]] = field(default_factory=dict)
    """row index -> (flow id, True where the flow starts at this row)."""


INSTANT_KINDS = (T.K_GUEST_FAULT, T.K_FAST_FAULT, T.K_SCAN_FAULTS, T.K_HOST_FAULT,
                 T.K_NOT_PRESENT, T.K_PAGE_READY)


def _switches(rows: np.ndarray, kind: int) -> Switches:
    sel = rows[rows[:, T.KIND] == kind]
    order = np.argsort(sel[:, T.TIME], kind="stable")
    sel = sel[order]
    return Switches(sel[:, T.TIME], sel[:, T.CPU], sel[:, T.TASK], sel[:, T.ARG], sel[:, T.AUX])


def pair_async_faults(rows: np.ndarray) -> list[Pair]:
    """Match every "page not present" with the "page ready" of the same token, in the order
    they happened; a page ready that came first (kvm: the wake beat the #PF and left a dummy
    node; s390: the completion beat the initial interrupt) waits for its not-present."""
    idx = np.flatnonzero((rows[:, T.KIND] == T.K_NOT_PRESENT) | (rows[:, T.KIND] == T.K_PAGE_READY))
    waiting: dict[int, list[tuple[int, Pair]]] = {}  # token -> pairs with one end only
    pairs: list[Pair] = []
    kinds = rows[idx, T.KIND].tolist()
    tokens = rows[idx, T.ID].tolist()
    for i, kind, token in zip(idx.tolist(), kinds, tokens, strict=True):
        ready = kind == T.K_PAGE_READY
        queue = waiting.setdefault(token, [])
        if queue and queue[0][0] != kind:  # the oldest open pair has the other end
            _, pair = queue.pop(0)
            if ready:
                pair.page_ready = i
            else:
                pair.not_present = i
            continue
        pair = Pair(token, None if ready else i, i if ready else None)
        pairs.append(pair)
        queue.append((kind, pair))
    return pairs


def _lanes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Greedy interval partitioning: each interval goes to the lowest lane free at its start
    (intervals sorted by start); as many lanes as requests overlap at most."""
    lanes = np.zeros(len(start), dtype=np.int64)
    free_at: list[int] = []
    for i, (s, e) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        for lane, busy in enumerate(free_at):
            if busy <= s:
                free_at[lane] = e
                lanes[i] = lane
                break
        else:
            lanes[i] = len(free_at)
            free_at.append(e)
    return lanes


def build(rows: np.ndarray) -> Timeline:
    """The timeline of ``rows`` (a recorder's :attr:`~TraceRecorder.rows`)."""
    kind = rows[:, T.KIND]
    instants = np.flatnonzero(np.isin(kind, INSTANT_KINDS))
    instants = instants[np.argsort(rows[instants, T.TIME], kind="stable")]
    swap = np.flatnonzero(kind == T.K_SWAP_IO)
    swap = swap[np.argsort(rows[swap, T.TIME], kind="stable")]
    pairs = pair_async_faults(rows)
    flow_of: dict[int, tuple[int, bool]] = {}
    for fid, pair in enumerate(pairs, start=1):
        if pair.not_present is None or pair.page_ready is None:
            continue  # one end only: no flow to draw
        first, second = sorted((pair.not_present, pair.page_ready),
                               key=lambda r: (int(rows[r, T.TIME]), r))
        flow_of[first] = (fid, True)
        flow_of[second] = (fid, False)
    return Timeline(rows=rows, guest=_switches(rows, T.K_GUEST_SWITCH),
                    host=_switches(rows, T.K_HOST_SWITCH), instants=instants, pairs=pairs,
                    swap=swap, swap_lane=_lanes(rows[swap, T.TIME], rows[swap, T.END]),
                    locks=np.flatnonzero(kind == T.K_LOCK_WAIT), flow_of=flow_of)


def instant_name(row: np.ndarray) -> str:
    """What an instant row is called on its track."""
    kind = int(row[T.KIND])
    if kind == T.K_HOST_FAULT:
        return T.HOST_FAULT_NAMES[int(row[T.AUX])]
    if kind == T.K_SCAN_FAULTS:
        return "minor faults (fast path)" if row[T.ID] else "host first touches"
    if kind == T.K_FAST_FAULT:
        return T.FAST_FAULT_NAMES[int(row[T.ID])]
    if kind == T.K_GUEST_FAULT:
        return "guest page fault"
    return T.KIND_NAMES[kind]


def instant_args(row: np.ndarray) -> dict[str, int]:
    """The details shown with an instant."""
    kind = int(row[T.KIND])
    if kind in (T.K_NOT_PRESENT, T.K_PAGE_READY):
        args = {"token": int(row[T.ID])}
        if row[T.TASK] >= 0:
            args["tid"] = int(row[T.TASK])
        return args
    if kind == T.K_HOST_FAULT:
        return {"gfn": int(row[T.ARG]), "tid": int(row[T.TASK])}
    if kind == T.K_SCAN_FAULTS:
        return {"minor_faults": int(row[T.ID]), "host_first_touches": int(row[T.AUX]),
                "until_ns": int(row[T.END]), "tid": int(row[T.TASK])}
    if kind == T.K_FAST_FAULT:
        return {"gfn": int(row[T.ARG]), "tid": int(row[T.TASK]),
                "handled_ns": int(row[T.END] - row[T.TIME]),
                "host_first_touch": int(row[T.AUX])}
    return {"gfn": int(row[T.ARG]), "tid": int(row[T.TASK]),
            "handled_ns": int(row[T.END] - row[T.TIME])}
