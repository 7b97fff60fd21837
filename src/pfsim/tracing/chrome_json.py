"""The Chrome JSON trace (``--trace-format json``): the Trace Event Format's ``traceEvents``,
which ui.perfetto.dev, chrome://tracing and Speedscope-like tools load.

The same timeline as the Perfetto trace, in the format's own terms: a "process" per kind of
CPU (guest vCPUs, host CPUs) with a "thread" per CPU holding complete events (``"ph": "X"``)
for each task run; a thread per vCPU for its faults (instants, ``"ph": "i"``) and its async
page faults, each drawn as a 1 ns complete event carrying a flow step: ``"ph": "s"``
at the earlier end, ``"ph": "f"`` (``"bp": "e"``: bound to the enclosing event) at the later,
with the fault's flow id, one pair per async fault.  Timestamps are microseconds with the
nanoseconds kept as decimals.  The format is verbose (about twice the Perfetto file): it is
the fallback for smaller runs.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from pfsim.machine import trace_records as T
from pfsim.tracing.perfetto import host_spans, swap_span_name
from pfsim.tracing.timeline import Names, Timeline, instant_args, instant_name

PID_VCPUS, PID_HOST, PID_EVENTS, PID_SWAP, PID_LOCKS = 1, 2, 3, 4, 5
CHUNK = 20_000
"""Events encoded per ``json.dumps`` call."""


def _us(ns: int) -> float:
    return ns / 1000


def _meta(pid: int, tid: int | None, name: str, sort: int | None = None) -> list[dict[str, Any]]:
    kind = "process_name" if tid is None else "thread_name"
    event: dict[str, Any] = {"ph": "M", "name": kind, "pid": pid, "args": {"name": name}}
    out = [event]
    if tid is not None:
        event["tid"] = tid
    if sort is not None:
        key = "process_sort_index" if tid is None else "thread_sort_index"
        sorted_event = {"ph": "M", "name": key, "pid": pid, "args": {"sort_index": sort}}
        if tid is not None:
            sorted_event["tid"] = tid
        out.append(sorted_event)
    return out


def events(timeline: Timeline, names: Names) -> list[dict[str, Any]]:
    """Every trace event of ``timeline``."""
    out: list[dict[str, Any]] = []
    out += _meta(PID_VCPUS, None, "guest vCPUs (tasks)", 0)
    out += _meta(PID_HOST, None, "host CPUs (vCPU threads)", 1)
    out += _meta(PID_EVENTS, None, "faults and async PF per vCPU", 2)
    sw = timeline.guest
    comm = {tid: name for tid, (name, _pid, _proc) in names.guest_threads.items()}
    for c in range(names.vcpus):
        out += _meta(PID_VCPUS, c, f"vCPU {c}", c)
        out += _meta(PID_EVENTS, c, f"vCPU {c}", c)
        times = sw.time[sw.cpu == c].tolist() + [names.end_ns]
        for k, tid in enumerate(sw.next_tid[sw.cpu == c].tolist()):
            if tid >= 0 and times[k + 1] > times[k]:
                out.append({"ph": "X", "pid": PID_VCPUS, "tid": c,
                            "name": comm.get(tid, f"tid {tid}"),
                            "ts": _us(times[k]), "dur": _us(times[k + 1] - times[k]),
                            "args": {"tid": tid}})
    for h in range(names.host_cpus):
        out += _meta(PID_HOST, h, f"host CPU {h}", h)
        for begin, end, name in host_spans(timeline, names, h):
            out.append({"ph": "X", "pid": PID_HOST, "tid": h, "name": name, "ts": _us(begin),
                        "dur": _us(end - begin)})
    table = timeline.rows
    inst = timeline.instants
    # per column: tolist of a 2-D array is several times slower than of its columns
    columns = [table[inst, c].tolist() for c in range(T.NFIELDS)]
    fast_names = T.FAST_FAULT_NAMES
    for r, time, kind, cpu, task, arg, ident, end, aux in zip(inst.tolist(), *columns,
                                                              strict=True):
        if kind == T.K_FAST_FAULT:  # most instants: instant_name and instant_args inlined
            out.append({"pid": PID_EVENTS, "tid": cpu, "ts": time / 1000, "ph": "i", "s": "t",
                        "name": fast_names[ident],
                        "args": {"gfn": arg, "tid": task, "handled_ns": end - time,
                                 "host_first_touch": aux}})
            continue
        row = [time, kind, cpu, task, arg, ident, end, aux]
        ts = _us(time)
        base = {"pid": PID_EVENTS, "tid": cpu, "ts": ts}
        flow = timeline.flow_of.get(r)
        if flow is None:
            out.append({**base, "ph": "i", "s": "t", "name": instant_name(row),
                        "args": instant_args(row)})
            continue
        out.append({**base, "ph": "X", "dur": 0.001, "name": instant_name(row),
                    "args": instant_args(row)})  # 1 ns: open at ts, so the step binds to it
        step = {**base, "name": "async page fault", "cat": "apf", "id": flow[0]}
        out.append({**step, "ph": "s"} if flow[1] else {**step, "ph": "f", "bp": "e"})
    if len(timeline.swap):
        out += _meta(PID_SWAP, None, f"swap device ({names.swap_device})", 3)
        lanes = timeline.swap_lane.tolist()
        for lane in range(max(lanes) + 1):
            out += _meta(PID_SWAP, lane, f"swap I/O {lane}", lane)
        for row, lane in zip(table[timeline.swap].tolist(), lanes, strict=True):
            out.append({"ph": "X", "pid": PID_SWAP, "tid": lane, "name": swap_span_name(row),
                        "ts": _us(row[T.TIME]), "dur": _us(row[T.END] - row[T.TIME])})
    if len(timeline.locks):
        out += _meta(PID_LOCKS, None, "cluster lock waits per core", 4)
        for row in table[timeline.locks].tolist():
            out.append({"ph": "X", "pid": PID_LOCKS, "tid": row[T.CPU],
                        "name": f"{T.LOCK_NAMES[row[T.AUX]]} wait", "ts": _us(row[T.TIME]),
                        "dur": _us(row[T.END] - row[T.TIME]), "args": {"tid": row[T.TASK]}})
    return out


def write(timeline: Timeline, names: Names, out: TextIO) -> None:
    """Write ``timeline`` as one JSON object ``{"traceEvents": [...], ...}`` into ``out``."""
    # json.dumps in slices rather than json.dump: dump encodes in pure Python (per value),
    # dumps in C, about ten times faster; the slices keep the text in memory small
    listed = events(timeline, names)
    tail = {"displayTimeUnit": "ns",
            "otherData": {"generator": "pfsim", "async_pf": names.async_pf}}
    out.write('{"traceEvents":[')
    for start in range(0, len(listed), CHUNK):
        if start:
            out.write(",")
        out.write(json.dumps(listed[start:start + CHUNK], separators=(",", ":"))[1:-1])
    out.write("]," + json.dumps(tail, separators=(",", ":"))[1:])
