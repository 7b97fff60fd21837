"""``pfsim run --trace``: the Perfetto and Chrome JSON timelines of a run.

The traces are parsed back with the libraries that read them (Perfetto's own protobuf
bindings, ``json``) and checked against what the simulator counted by itself in result.json
(``not_present``, ``page_ready``, ``early_completions``, ``context_switches``, each task's
``switches_in``, the swap device's reads and writes): the trace code computes none of these.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from pfsim.api import run
from pfsim.cli import main
from pfsim.config import load_config
from pfsim.machine import trace_records as T
from pfsim.machine.trace_records import TraceRecorder
from pfsim.simulation import Simulation
from pfsim.tracing import parse_window, trace_options
from pfsim.tracing.timeline import _lanes, instant_args, instant_name, pair_async_faults

SCENARIO = """
[sim]
seed = 3
duration = "{duration}"
engine = "{engine}"

[guest]
vcpus = 2
memory = "256MiB"

[hypervisor]
enabled = true
host_cpus = 2
memory_limit = "24MiB"
reclaim = "lru"
async_pf = "{mode}"
swap = {{ device = "nvme", latency = "{latency}" }}

[[processes]]
name = "writers"
vsegs = [{{ name = "array", type = "anon", size = "64MiB" }}]
[[processes.threads]]
count = 2
steps = [{{ op = "access", vseg = "array", pattern = "uniform", duration = "600s", write_ratio = 1.0, think = "2us" }}]

[[processes]]
name = "counters"
[[processes.threads]]
count = 2
steps = [{{ op = "compute", duration = "600s", unit = "1us" }}]
"""
"""Two vCPUs on a host that grants 24 MiB: swap-ins start at once.  A 2 us device completes
many swap-ins before their "page not present" reaches the guest (early completions)."""


def scenario(tmp_path: Path, mode: str = "kvm", engine: str = "compiled", latency: str = "2us",
             duration: str = "100ms") -> Path:
    path = tmp_path / f"{mode}-{engine}-{latency}.toml"
    path.write_text(SCENARIO.format(mode=mode, engine=engine, latency=latency, duration=duration))
    return path


def read_perfetto(path: Path) -> pb.Trace:
    return pb.Trace.FromString(path.read_bytes())


def track_names(trace: pb.Trace) -> dict[int, str]:
    return {p.track_descriptor.uuid: p.track_descriptor.name for p in trace.packet
            if p.HasField("track_descriptor")}


def sched_switches(trace: pb.Trace) -> dict[int, list[tuple[int, int, int]]]:
    """cpu -> [(ts, next_pid, prev_state)] decoded from the compact_sched bundles the way
    Perfetto's trace processor does (the timestamps are deltas within a bundle)."""
    out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for packet in trace.packet:
        if not packet.HasField("ftrace_events"):
            continue
        bundle = packet.ftrace_events
        compact = bundle.compact_sched
        n = len(compact.switch_timestamp)
        for field in (compact.switch_prev_state, compact.switch_next_pid,
                      compact.switch_next_prio, compact.switch_next_comm_index):
            assert len(field) == n
        ts = 0
        for k in range(n):
            ts += compact.switch_timestamp[k]
            assert compact.switch_next_comm_index[k] < len(compact.intern_table)
            out[bundle.cpu].append((ts, compact.switch_next_pid[k], compact.switch_prev_state[k]))
    return out


def apf_instants(trace: pb.Trace) -> list[tuple[int, str, list[int], list[int]]]:
    """(ts, name, flow_ids, terminating_flow_ids) of the async-PF instants."""
    out = []
    for packet in trace.packet:
        event = packet.track_event
        if packet.HasField("track_event") and event.name in ("page not present", "page ready"):
            assert event.type == pb.TrackEvent.TYPE_INSTANT
            out.append((packet.timestamp, event.name, list(event.flow_ids),
                        list(event.terminating_flow_ids)))
    return out


@pytest.mark.parametrize("mode", ["kvm", "s390"])
def test_every_async_fault_has_one_flow_from_not_present_to_page_ready(tmp_path, mode):
    trace_path = tmp_path / "t.perfetto-trace"
    result = run(scenario(tmp_path, mode), trace=trace_path)
    apf = result.vm["async_pf"]
    assert apf["not_present"] > 100 and apf["early_completions"] > 10  # the scenario's point
    trace = read_perfetto(trace_path)
    instants = apf_instants(trace)
    names = Counter(name for _ts, name, _f, _t in instants)
    assert names["page not present"] == apf["not_present"]
    assert names["page ready"] == apf["page_ready"]
    ends: dict[int, list[tuple[int, str, bool]]] = defaultdict(list)
    for ts, name, starts, terminates in instants:
        assert len(starts) + len(terminates) <= 1
        for fid in starts:
            ends[fid].append((ts, name, True))
        for fid in terminates:
            ends[fid].append((ts, name, False))
    for fid, pair in ends.items():  # one not-present and one page-ready per flow, in time order
        assert sorted(name for _ts, name, _s in pair) == ["page not present", "page ready"], fid
        start = [ts for ts, _n, s in pair if s]
        end = [ts for ts, _n, s in pair if not s]
        assert len(start) == len(end) == 1 and start[0] <= end[0]
    in_flight = apf["not_present"] - apf["page_ready"]
    assert len(ends) == apf["not_present"] - max(0, in_flight)
    early = sum(1 for pair in ends.values()
                for _ts, name, starts in pair if starts and name == "page ready")
    assert early == apf["early_completions"]  # the completions that arrived first


def test_vcpu_sched_slices_follow_the_schedulers_count(tmp_path):
    trace_path = tmp_path / "t.perfetto-trace"
    result = run(scenario(tmp_path, "kvm", latency="16us"), trace=trace_path)
    trace = read_perfetto(trace_path)
    switches = sched_switches(trace)
    end = result["sim_time_ns"]
    assert sorted(switches) == [0, 1]
    running: dict[int, list[tuple[int, int]]] = defaultdict(list)  # tid -> its slices
    for cpu, events in switches.items():
        assert len(events) == result.vcpus[cpu]["context_switches"]
        times = [ts for ts, _pid, _state in events]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= end
        bounds = [*times, end]
        total = times[0]  # idle before the first switch
        for k, (ts, pid, _state) in enumerate(events):
            total += bounds[k + 1] - ts
            if pid:
                running[pid].append((ts, bounds[k + 1]))
        assert total == end  # the slices of a vCPU tile [0, end): no gap, no overlap
    for tid, slices in running.items():  # a task never runs on two vCPUs at once
        slices.sort()
        assert all(a[1] <= b[0] for a, b in zip(slices, slices[1:], strict=False)), tid
    tasks = {t["tid"]: t for t in result.tasks.values()}
    switches_in = Counter(pid for events in switches.values() for _ts, pid, _s in events if pid)
    assert switches_in == {tid: t["switches_in"] for tid, t in tasks.items() if t["switches_in"]}
    tree = [p.process_tree for p in trace.packet if p.HasField("process_tree")][0]
    threads = {**result.tasks, **result.vm["kernel_threads"]}  # kswapd0 too (asleep here)
    assert {t.tid: t.name for t in tree.threads} == {tid: name for name, t in threads.items()
                                                     for tid in [t["tid"]]}
    names = track_names(trace)
    assert {names[u] for u in names} >= {"host CPU 0", "host CPU 1", "swap device (nvme)"}
    swap = [p for p in trace.packet if p.HasField("track_event")
            and p.track_event.name.startswith("swap-")]
    reads = sum(1 for p in swap if p.track_event.name.startswith("swap-in"))
    writes = sum(1 for p in swap if p.track_event.name.startswith("swap-out"))
    assert (reads, writes) == (result["host"]["swap_reads"], result["host"]["swap_writes"])


@pytest.mark.parametrize("engine", ["compiled", "reference"])
def test_tracing_changes_nothing_in_the_result(tmp_path, engine):
    config = scenario(tmp_path, "s390", engine=engine)
    plain = run(config)
    traced = run(config, trace=tmp_path / "t.perfetto-trace")
    assert traced.to_json() == plain.to_json()


def test_both_engines_record_the_same_rows(tmp_path):
    rows = {}
    for engine in ("compiled", "reference"):
        config = load_config(scenario(tmp_path, "kvm", engine=engine))
        recorder = TraceRecorder(1 << 16)
        Simulation(config, recorder).run()
        assert recorder.dropped == 0
        rows[engine] = recorder.rows.copy()
    assert len(rows["compiled"]) > 1000
    np.testing.assert_array_equal(rows["compiled"], rows["reference"])


@pytest.mark.parametrize("engine", ["compiled", "reference"])
def test_every_fault_is_one_instant(tmp_path, engine):
    """Faults resolved inside the compiled per-access loop are recorded one by one: the guest
    faults of the trace (the loop's and the kernel's) are the run's minor faults, and its host
    faults (EPT violations, first touches in the loop included) are the host's count; each
    fault lies in a slice of its task on its vCPU."""
    config = load_config(scenario(tmp_path, "kvm", engine=engine, duration="40ms"))
    recorder = TraceRecorder(1 << 18)
    result = Simulation(config, recorder).run()
    assert recorder.dropped == 0
    rows = recorder.rows
    kind = rows[:, T.KIND]
    fast = rows[kind == T.K_FAST_FAULT]
    vm = result["vms"]["vm0"]
    min_flt = sum(p["min_flt"] for p in vm["processes"].values())
    assert len(fast) > 1000 and not np.any(kind == T.K_SCAN_FAULTS)
    assert len(fast) + int(np.sum(kind == T.K_GUEST_FAULT)) == min_flt
    assert set(fast[:, T.ID].tolist()) <= {T.FF_ZERO_PAGE, T.FF_ANON_PAGE, T.FF_COW_REUSE}
    assert np.all(fast[:, T.END] > fast[:, T.TIME])
    host_touch = int(np.sum(fast[:, T.AUX] == 1))
    assert host_touch > 0
    assert int(np.sum(kind == T.K_HOST_FAULT)) + host_touch == result["host"]["ept_violations"]
    # each fault in a slice of its task: the last guest switch on its vCPU before it ran it
    switches = rows[kind == T.K_GUEST_SWITCH]
    for cpu in (0, 1):
        mine = switches[switches[:, T.CPU] == cpu]
        faults = fast[fast[:, T.CPU] == cpu]
        at = np.searchsorted(mine[:, T.TIME], faults[:, T.TIME], side="right") - 1
        assert np.all(at >= 0)
        np.testing.assert_array_equal(mine[at, T.TASK], faults[:, T.TASK])


def test_fast_path_faults_in_the_perfetto_trace_use_interned_names(tmp_path):
    """The loop's faults are written with interned names: the trace's first track-event
    packet clears the incremental state and interns them; each of these instants needs that
    state and resolves to a fault name and to the arguments gfn, tid, handled_ns,
    host_first_touch; there is one per K_FAST_FAULT row of the run."""
    config = scenario(tmp_path, "kvm", duration="20ms")
    recorder = TraceRecorder(1 << 18)
    Simulation(load_config(config), recorder).run()
    expected = recorder.rows[recorder.rows[:, T.KIND] == T.K_FAST_FAULT]
    run(config, trace=tmp_path / "t.perfetto-trace")
    trace = read_perfetto(tmp_path / "t.perfetto-trace")
    sequence = [p for p in trace.packet if p.trusted_packet_sequence_id == 1]
    first = sequence[0]
    assert first.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    names = {e.iid: e.name for e in first.interned_data.event_names}
    args = {e.iid: e.name for e in first.interned_data.debug_annotation_names}
    assert sorted(names.values()) == sorted(T.FAST_FAULT_NAMES.values())
    found = []
    for packet in sequence:
        event = packet.track_event
        if packet.HasField("track_event") and event.name_iid:
            assert packet.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
            values = {args[a.name_iid]: a.int_value for a in event.debug_annotations}
            assert list(values) == ["gfn", "tid", "handled_ns", "host_first_touch"]
            found.append((packet.timestamp, names[event.name_iid], values["gfn"]))
    assert len(found) == len(expected) > 100
    assert sorted(found) == sorted((int(r[T.TIME]), T.FAST_FAULT_NAMES[int(r[T.ID])],
                                    int(r[T.ARG])) for r in expected)


def test_chrome_json_holds_one_flow_pair_per_async_fault(tmp_path):
    trace_path = tmp_path / "t.json"
    result = run(scenario(tmp_path, "kvm"), trace=trace_path)
    doc = json.loads(trace_path.read_text())
    events = doc["traceEvents"]
    steps: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if event["ph"] in ("s", "f"):
            steps[event["id"]].append(event["ph"])
    apf = result.vm["async_pf"]
    assert len(steps) == min(apf["not_present"], apf["page_ready"])
    assert all(sorted(phases) == ["f", "s"] for phases in steps.values())
    names = Counter(e["name"] for e in events if e["ph"] in ("X", "i"))
    assert names["page not present"] == apf["not_present"]
    assert names["page ready"] == apf["page_ready"]
    # the loop's faults: the names and arguments the timeline gives their rows
    recorder = TraceRecorder(1 << 18)
    Simulation(load_config(scenario(tmp_path, "kvm")), recorder).run()
    rows = recorder.rows[recorder.rows[:, T.KIND] == T.K_FAST_FAULT]
    fast = [e for e in events if e["ph"] == "i" and e["name"].startswith("minor fault (")]
    assert len(fast) == len(rows) > 100
    expected = sorted((int(r[T.TIME]), instant_name(r), sorted(instant_args(r).items()))
                      for r in rows)
    assert sorted((round(e["ts"] * 1000), e["name"], sorted(e["args"].items()))
                  for e in fast) == expected


def test_window_and_limit(tmp_path, capsys):
    config = scenario(tmp_path, "kvm", latency="16us")
    trace_path = tmp_path / "w.perfetto-trace"
    window = trace_options(trace_path, None, "20ms..40ms", None)
    run(config, trace=window)
    stamps = [p.timestamp for p in read_perfetto(trace_path).packet
              if p.HasField("track_event") and p.track_event.type == pb.TrackEvent.TYPE_INSTANT]
    assert stamps and 20_000_000 <= min(stamps) and max(stamps) < 40_000_000
    limited = trace_options(tmp_path / "l.perfetto-trace", None, None, 500)
    result = run(config, trace=limited)
    assert result.trace_warning is not None and "records dropped" in result.trace_warning
    read_perfetto(tmp_path / "l.perfetto-trace")  # still a whole trace


def test_pairing_by_hand():
    def row(time, kind, token):
        return [time, kind, 0, -1, 0, token, time, 0]

    rows = np.array([row(1, T.K_NOT_PRESENT, 7), row(2, T.K_PAGE_READY, 9),  # 9: ready first
                     row(3, T.K_NOT_PRESENT, 9), row(4, T.K_PAGE_READY, 7),
                     row(5, T.K_NOT_PRESENT, 7), row(6, T.K_PAGE_READY, 7),  # token 7 reused
                     row(7, T.K_NOT_PRESENT, 5)], dtype=np.int64)  # still in flight
    pairs = [(p.token, p.not_present, p.page_ready) for p in pair_async_faults(rows)]
    assert pairs == [(7, 0, 3), (9, 2, 1), (7, 4, 5), (5, 6, None)]


def test_swap_lanes_by_hand():
    start = np.array([0, 1, 2, 5, 6])
    end = np.array([4, 3, 5, 9, 7])
    # 0:[0,4) lane 0; 1:[1,3) lane 1; 2:[2,5) lane 2; 3:[5,9) lane 0 (free at 4); 4:[6,7) lane 1
    assert _lanes(start, end).tolist() == [0, 1, 2, 0, 1]


def test_parse_window():
    assert parse_window("2s..3s") == (2_000_000_000, 3_000_000_000)
    assert parse_window("..500ms") == (0, 500_000_000)
    assert parse_window("1s..") == (1_000_000_000, None)


@pytest.mark.parametrize(("args", "words"), [
    (["--trace-format", "svg"], "--trace-format"),
    (["--trace-window", "3s..2s"], "--trace-window"),
    (["--trace-window", "soon"], "--trace-window"),
    (["--trace-limit", "0"], "--trace-limit"),
])
def test_bad_trace_flags_exit_2_with_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["run", str(scenario(tmp_path)), "--out", str(out), "--trace",
              str(tmp_path / "t.pftrace"), *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("pfsim: error:")
    assert not out.exists()


@pytest.mark.parametrize("where", ["dir", "devnull", "below-file", "no-trace", "compare"])
def test_bad_trace_paths_exit_2_with_one_line(tmp_path, capsys, where):
    out = tmp_path / "out"
    (tmp_path / "file").write_text("x")
    extra = {"dir": ["--trace", str(tmp_path)], "devnull": ["--trace", "/dev/null"],
             "below-file": ["--trace", str(tmp_path / "file" / "t.pftrace")],
             "no-trace": ["--trace-window", "1s..2s"],
             "compare": ["--trace", str(tmp_path / "t.pftrace"),
                         "--compare", "hypervisor.async_pf=kvm,s390"]}[where]
    with pytest.raises(SystemExit) as stop:
        main(["run", str(scenario(tmp_path)), "--out", str(out), *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pfsim: error:") and "--trace" in err[0]
    assert not out.exists()
    assert Path("/dev/null").is_char_device()


def test_cli_writes_the_trace_and_names_it(tmp_path, capsys):
    trace_path = tmp_path / "traces" / "t.perfetto-trace"
    with pytest.raises(SystemExit) as stop:
        main(["run", str(scenario(tmp_path)), "--out", str(tmp_path / "out"), "--quiet",
              "--trace", str(trace_path)])
    assert stop.value.code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("FINAL ") and line.endswith(f"trace={trace_path}")
    assert len(read_perfetto(trace_path).packet) > 100


CLUSTERS = """
[sim]
seed = 11

[guest]
vcpus = 8
clusters = 4
memory = "512MiB"
fast_faults = {fast}

[guest.vmm]
remote_ops = "rpc"
vsl_lock = "{lock}"

[[processes]]
name = "solver"
cluster = 0
vsegs = [{{ name = "grid", type = "data", size = "16MiB" }}]
[[processes.threads]]
count = 8
steps = [
  {{ op = "access", vseg = "grid", split = true, pattern = "sequential", stride = "4KiB", accesses = 512, write_ratio = 1.0 }},
  {{ op = "access", vseg = "grid", pattern = "uniform", accesses = 20_000, write_ratio = 0.2 }},
]
"""


@pytest.mark.parametrize(("fast", "lock"), [("true", "rwlock"), ("true", "queuelock"),
                                            ("false", "rwlock")])
def test_cluster_lock_waits_are_slices_matching_the_wait_counters(tmp_path, fast, lock):
    config = tmp_path / "clusters.toml"
    config.write_text(CLUSTERS.format(fast=fast, lock=lock))
    trace_path = tmp_path / "c.json"
    result = run(config, trace=trace_path)
    tasks = result.tasks.values()
    waits = defaultdict(list)
    for event in json.loads(trace_path.read_text())["traceEvents"]:
        if event["ph"] == "X" and event["name"].endswith(" wait"):
            waits[event["name"]].append(round(event["dur"] * 1000))
    assert len(waits["PTE lock wait"]) == sum(t["pte_lock_waits"] for t in tasks)
    assert len(waits["PT2 lock wait"]) == sum(t["pt2_lock_waits"] for t in tasks)
    assert len(waits["vseg-list rwlock wait"]) == sum(t["rwlock_waits"] for t in tasks)
    assert sum(waits["PTE lock wait"]) + sum(waits["PT2 lock wait"]) == sum(
        t["pte_lock_wait_ns"] for t in tasks)  # PT2 waits are counted in pte_lock_wait_ns
    assert sum(waits["vseg-list rwlock wait"]) == sum(t["rwlock_wait_ns"] for t in tasks)
    assert sum(len(v) for v in waits.values()) > 3  # the scenario has waits to check
