"""Cost of ``pfsim run --trace``: the wall time of the command with and without a trace, the
CPU time of the run and of writing the trace, and the trace's size per simulated second.

    python benchmarks/bench_trace.py [--modes kvm,s390] [--duration 1s] [--repeat 5]
                                     [--engine compiled] [--baseline OTHER/src]
                                     [--variants off,perfetto,json,baseline]

Each measurement is a fresh interpreter running ``pfsim run examples/overcommit.toml`` (1 s
simulated by default) as a user would, timed from outside (median of ``--repeat``); inside,
the child also reports the CPU time of the simulation alone and of the trace writer.  The
compiled core is warmed (cached) by a first run that is not counted.

"Off" is the same command without ``--trace`` on this checkout.  ``--baseline`` points to the
``src`` directory of another checkout (e.g. a git worktree of the commit before tracing was
added): its untraced runs are timed in the same loop, so "off" versus the baseline is what the
record calls cost when nothing is traced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
import pfsim
from pfsim.config import load_config
config = load_config(Path(sys.argv[1]), overrides=sys.argv[3:])
trace = sys.argv[2] or None
start = time.process_time()
if trace is None:
    result = pfsim.run(config)
    write_s = 0.0
else:
    from pfsim.simulation import Simulation
    from pfsim.tracing import names_of, trace_options, write_trace
    options = trace_options(Path(trace), None, None, None)
    recorder = options.recorder()
    simulation = Simulation(config, recorder)
    data = simulation.run()
    mid = time.process_time()
    write_trace(options, recorder, names_of(simulation, data["sim_time_ns"]))
    write_s = time.process_time() - mid
    result = {"records": len(recorder.rows), "dropped": recorder.dropped}
total = time.process_time() - start
print(json.dumps({"cpu_s": total, "write_s": write_s, **({} if trace is None else result)}))
"""


def child(src: Path, overrides: list[str], trace: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, "-c", CHILD, str(ROOT / "examples" / "overcommit.toml"), trace,
            *overrides]
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - start
    return {"wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="kvm,s390")
    parser.add_argument("--duration", default="1s")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--engine", default="compiled")
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--variants", default="off,perfetto,json,baseline",
                        help="which of off, perfetto, json, baseline to time")
    args = parser.parse_args()
    chosen = set(args.variants.split(","))
    src = ROOT / "src"
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            overrides = [f"hypervisor.async_pf={mode}", f"sim.duration={args.duration}",
                         f"sim.engine={args.engine}"]
            variants = {"off": (src, ""),
                        "perfetto": (src, f"{tmp}/t.perfetto-trace"),
                        "json": (src, f"{tmp}/t.json")}
            if args.baseline is not None:
                variants["baseline"] = (args.baseline, "")
            variants = {k: v for k, v in variants.items() if k in chosen or k == "off"}
            for where, _trace in variants.values():
                child(where, overrides, "")  # warm the compiled core's cache
            runs: dict[str, list[dict]] = {name: [] for name in variants}
            for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits all alike
                for name, (where, trace) in variants.items():
                    runs[name].append(child(where, overrides, trace))
            sizes = {name: Path(trace).stat().st_size for name, (_w, trace) in variants.items()
                     if trace}
            med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s",
                                                                           "write_s")}
                   for name, rs in runs.items()}
            sim_s = _seconds(args.duration)
            print(f"{mode} ({args.engine}, {args.duration} simulated, median of {args.repeat}):")
            print(f"  {'variant':9} {'wall s':>7} {'x off':>6} {'run+write CPU s':>16} "
                  f"{'write CPU s':>12} {'records':>9} {'MB/sim s':>9}")
            for name, m in med.items():
                records = runs[name][0].get("records", "")
                size = sizes.get(name)
                print(f"  {name:9} {m['wall_s']:7.2f} {m['wall_s'] / med['off']['wall_s']:6.2f} "
                      f"{m['cpu_s']:16.3f} {m['write_s']:12.3f} {records!s:>9} "
                      f"{'' if size is None else f'{size / 1e6 / sim_s:9.1f}':>9}")
            if "baseline" in med:
                off, base = med["off"], med["baseline"]
                print(f"  off / baseline: wall {off['wall_s'] / base['wall_s']:.3f}, "
                      f"run CPU {off['cpu_s'] / base['cpu_s']:.3f}")


def _seconds(text: str) -> float:
    from pfsim.units import parse_time

    return parse_time(text) / 1e9


if __name__ == "__main__":
    main()
