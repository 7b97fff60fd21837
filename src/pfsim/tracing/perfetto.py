"""The Perfetto trace (protobuf, ``--trace-format perfetto``), built with Perfetto's own Python
package (``perfetto.trace_builder``: the ``Trace`` / ``TracePacket`` messages compiled from
Perfetto's .proto files).

What goes where, and why:

- **Guest scheduling** is written the way a Linux kernel's ftrace writes it: one
  ``FtraceEventBundle`` per vCPU (the bundle's ``cpu``) holding the vCPU's ``sched_switch``
  events in the columnar ``compact_sched`` form that ``traced_probes`` itself emits, and a
  ``ProcessTree`` naming the guest's processes and threads.  Perfetto's trace processor turns
  these into its ``sched`` and ``thread_state`` tables, so the UI shows a "CPU n" track per vCPU
  with one slice per task run, the per-thread state tracks (Running, Runnable (Preempted),
  Sleeping, Uninterruptible Sleep) and its scheduling queries and aggregations: the
  scheduling views work as on a real kernel trace.  (Track-event slices per task would show
  the same bars but none of those views.)
- **Host CPUs** are not a second kernel's CPUs in one trace (Perfetto's CPU tracks belong to
  one machine), so each host CPU is a named track of slices, one per vCPU thread (or host
  task) run on it.
- **Faults, "page not present" and "page ready"** are instants on a per-vCPU track (the
  faults resolved in the compiled per-access loop, most of a trace's instants, with interned
  names: :func:`_intern`); each
  async page fault's two instants are linked by one **flow** (``flow_ids`` on the earlier,
  ``terminating_flow_ids`` on the later: a page ready that beat its not-present is drawn
  from the page ready).
- **Swap-device requests** are slices on the "swap device" track's lanes (requests overlap up
  to the queue depth; each lane's slices do not), **cluster lock waits** slices on a track per
  core.

``prev_state`` follows ``__trace_sched_switch_state`` (include/trace/events/sched.h, Linux
6.6): 0 running, 1 << (index - 1) for a sleeping state (1 S, 2 D, 0x10 X for a dead task),
``TASK_REPORT_MAX`` (0x100) for a preempted task.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
from perfetto.trace_builder.proto_builder import TraceProtoBuilder

from pfsim.machine import trace_records as T
from pfsim.tracing.timeline import Names, Timeline, instant_args, instant_name

# TaskState (pfsim.sched.task) -> sched_switch prev_state
PREV_STATE = {0: 0, 1: 0x100, 2: 0x1, 3: 0x2, 4: 0x10}
SEQUENCE = 1  # trusted_packet_sequence_id of every track-event packet
TRACK_VCPU, TRACK_HOST, TRACK_SWAP, TRACK_LOCK = 1000, 2000, 3000, 4000
CHUNK = 8192  # sched_switch events per bundle
NEEDS_STATE = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE  # a packet that uses interned names
ARG_GFN, ARG_TID, ARG_HANDLED, ARG_HOST_TOUCH = 1, 2, 3, 4
FAST_ARGS = {ARG_GFN: "gfn", ARG_TID: "tid", ARG_HANDLED: "handled_ns",
             ARG_HOST_TOUCH: "host_first_touch"}
"""The interned debug-annotation names of a fast-path fault instant (the arguments
:func:`pfsim.tracing.timeline.instant_args` gives it)."""


def _track(builder: TraceProtoBuilder, uuid: int, name: str, parent: int | None = None,
           rank: int | None = None) -> None:
    packet = builder.add_packet()
    packet.trusted_packet_sequence_id = SEQUENCE
    desc = packet.track_descriptor
    desc.uuid = uuid
    desc.name = name
    if parent is not None:
        desc.parent_uuid = parent
    if rank is not None:
        desc.sibling_order_rank = rank


def _process_tree(builder: TraceProtoBuilder, names: Names) -> None:
    tree = builder.add_packet().process_tree
    pids = {}
    for _tid, (_name, pid, process) in sorted(names.guest_threads.items()):
        pids.setdefault(pid, process)
    for pid, process in sorted(pids.items()):
        proc = tree.processes.add()
        proc.pid = pid
        proc.ppid = 0
        proc.cmdline.append(process)
    for tid, (name, pid, _process) in sorted(names.guest_threads.items()):
        thread = tree.threads.add()
        thread.tid = tid
        thread.tgid = pid
        thread.name = name


def _sched(builder: TraceProtoBuilder, timeline: Timeline, names: Names) -> None:
    """``compact_sched`` bundles, one vCPU at a time, CHUNK switches per bundle."""
    sw = timeline.guest
    comm = {tid: name for tid, (name, _pid, _proc) in names.guest_threads.items()}
    for cpu in range(names.vcpus):
        sel = np.flatnonzero(sw.cpu == cpu)
        for start in range(0, len(sel), CHUNK):
            part = sel[start:start + CHUNK]
            bundle = builder.add_packet().ftrace_events
            bundle.cpu = cpu
            compact = bundle.compact_sched
            times = sw.time[part]
            compact.switch_timestamp.extend(np.diff(times, prepend=0).tolist())
            compact.switch_prev_state.extend(
                PREV_STATE.get(int(s), 0) for s in sw.prev_state[part].tolist())
            nxt = sw.next_tid[part].tolist()
            compact.switch_next_pid.extend(0 if t < 0 else t for t in nxt)
            compact.switch_next_prio.extend([120] * len(nxt))
            table: dict[str, int] = {}
            index = []
            for t in nxt:
                name = f"swapper/{cpu}" if t < 0 else comm.get(t, f"tid {t}")
                index.append(table.setdefault(name, len(table)))
            compact.intern_table.extend(table)
            compact.switch_next_comm_index.extend(index)


def _slices(builder: TraceProtoBuilder, track: int, spans: list[tuple[int, int, str]]) -> None:
    for begin, end, name in spans:
        packet = builder.add_packet()
        packet.timestamp = begin
        packet.trusted_packet_sequence_id = SEQUENCE
        event = packet.track_event
        event.type = pb.TrackEvent.TYPE_SLICE_BEGIN
        event.track_uuid = track
        event.name = name
        packet = builder.add_packet()
        packet.timestamp = end
        packet.trusted_packet_sequence_id = SEQUENCE
        event = packet.track_event
        event.type = pb.TrackEvent.TYPE_SLICE_END
        event.track_uuid = track


def host_spans(timeline: Timeline, names: Names, hcpu: int) -> list[tuple[int, int, str]]:
    """(begin, end, thread name) of every run of a host thread on host CPU ``hcpu``."""
    sw = timeline.host
    sel = np.flatnonzero(sw.cpu == hcpu)
    times = sw.time[sel].tolist() + [names.end_ns]
    spans = []
    for k, tid in enumerate(sw.next_tid[sel].tolist()):
        if tid >= 0 and times[k + 1] > times[k]:
            spans.append((times[k], times[k + 1], names.host_threads.get(tid, f"tid {tid}")))
    return spans


def _intern(first: pb.TracePacket) -> None:
    """Put the names of the fast-path fault instants in the sequence's interned data (on its
    first packet, which clears the incremental state): those instants, most of a trace's,
    then carry small ids instead of strings (``name_iid``, ``DebugAnnotation.name_iid``), as
    Perfetto's own track-event SDK writes them."""
    interned = first.interned_data
    for cls, name in sorted(T.FAST_FAULT_NAMES.items()):
        entry = interned.event_names.add()
        entry.iid = cls  # the fault class is the name's id
        entry.name = name
    for iid, name in FAST_ARGS.items():
        entry = interned.debug_annotation_names.add()
        entry.iid = iid
        entry.name = name


def swap_span_name(row: list[int]) -> str:
    pages = row[T.ID]
    return f"swap-{'out' if row[T.AUX] else 'in'} {pages} page{'s' if pages != 1 else ''}"


def write(timeline: Timeline, names: Names, out: BinaryIO) -> None:
    """Serialize ``timeline`` as a Perfetto trace into ``out``."""
    builder = TraceProtoBuilder()
    first = builder.add_packet()  # opens the track-event sequence
    first.trusted_packet_sequence_id = SEQUENCE
    first.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    _process_tree(builder, names)
    _sched(builder, timeline, names)
    for c in range(names.vcpus):
        _track(builder, TRACK_VCPU + c, f"vCPU {c} faults and async PF", rank=c)
    for h in range(names.host_cpus):
        _track(builder, TRACK_HOST + h, f"host CPU {h}", rank=100 + h)
        _slices(builder, TRACK_HOST + h, host_spans(timeline, names, h))
    instant = pb.TrackEvent.TYPE_INSTANT
    _intern(first)
    table = timeline.rows
    inst = timeline.instants
    columns = [table[inst, c].tolist() for c in (T.TIME, T.KIND, T.CPU, T.TASK, T.ARG, T.ID,
                                                   T.END, T.AUX)]
    for r, time, kind, cpu, task, arg, ident, end, aux in zip(inst.tolist(), *columns,
                                                              strict=True):
        packet = builder.add_packet()
        packet.timestamp = time
        packet.trusted_packet_sequence_id = SEQUENCE
        event = packet.track_event
        event.type = instant
        event.track_uuid = TRACK_VCPU + cpu
        if kind == T.K_FAST_FAULT:  # most of a trace's instants: the compact form
            packet.sequence_flags = NEEDS_STATE
            event.name_iid = ident
            add = event.debug_annotations.add  # the four arguments, unrolled
            annotation = add()
            annotation.name_iid = ARG_GFN
            annotation.int_value = arg
            annotation = add()
            annotation.name_iid = ARG_TID
            annotation.int_value = task
            annotation = add()
            annotation.name_iid = ARG_HANDLED
            annotation.int_value = end - time
            annotation = add()
            annotation.name_iid = ARG_HOST_TOUCH
            annotation.int_value = aux
            continue
        row = table[r].tolist()
        event.name = instant_name(row)
        for key, value in instant_args(row).items():
            annotation = event.debug_annotations.add()
            annotation.name = key
            annotation.int_value = value
        flow = timeline.flow_of.get(r)
        if flow is not None:
            (event.flow_ids if flow[1] else event.terminating_flow_ids).append(flow[0])
    if len(timeline.swap):
        _track(builder, TRACK_SWAP, f"swap device ({names.swap_device})", rank=200)
        lanes = timeline.swap_lane.tolist()
        for lane in range(max(lanes) + 1):
            _track(builder, TRACK_SWAP + 1 + lane, f"swap I/O {lane}", parent=TRACK_SWAP,
                   rank=lane)
        for row, lane in zip(table[timeline.swap].tolist(), lanes, strict=True):
            _slices(builder, TRACK_SWAP + 1 + lane,
                    [(row[T.TIME], row[T.END], swap_span_name(row))])
    locks = table[timeline.locks].tolist()
    for core in sorted({row[T.CPU] for row in locks}):
        _track(builder, TRACK_LOCK + core, f"core {core} lock waits", rank=300 + core)
    for row in locks:
        _slices(builder, TRACK_LOCK + row[T.CPU],
                [(row[T.TIME], row[T.END], f"{T.LOCK_NAMES[row[T.AUX]]} wait")])
    out.write(builder.serialize())
