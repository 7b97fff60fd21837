"""Sweep speed: the same sweep run serially (one point after another in one process, the peer)
and on a Dask LocalCluster, in the same run of this script.

    python benchmarks/bench_sweep.py [--points 16] [--point-seconds 2] [--workers 2]

The sweep is examples/overcommit.toml in kvm mode with ``--points`` seeds; ``sim.duration`` is
calibrated first so that one point takes about ``--point-seconds`` of wall time here.  Each run
gets a fresh output directory, so each computes every point.

1. The commands as a user runs them, each a fresh process from start to exit:
   ``pfsim sweep FILE --serial`` and ``pfsim sweep FILE --workers N``: wall time and CPU time
   (the command and every process it started), and their ratio.
2. The Dask run again inside this process, to see where its time goes: the sum of the points'
   own wall times (measured around the simulation in the worker), when the first point started
   and when each worker finished, the scheduling gap between a worker's points (moving the
   config in, the result out, dispatching the next task) and the cost of writing a point's
   directory in the client (timed on the same outcomes afterwards).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pfsim.config import load_config  # noqa: E402
from pfsim.sweeps.execute import Engine  # noqa: E402
from pfsim.sweeps.run import run_sweep  # noqa: E402
from pfsim.sweeps.store import Store  # noqa: E402
from pfsim.sweeps.worker import run_point, warm  # noqa: E402

BASE = ROOT / "examples" / "overcommit.toml"


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def calibrate(target_s: float) -> int:
    """sim.duration in ms such that one kvm point takes about target_s of wall time."""
    probe_ms = 2000
    config = load_config(BASE, overrides=["hypervisor.async_pf=kvm",
                                          f'sim.duration="{probe_ms}ms"'])
    warm(config)
    for _step in range(2):  # the cost per simulated second grows at first: rescale once more
        wall = min(run_point(config)["wall_s"] for _ in range(2))
        probe_ms = max(100, round(probe_ms * target_s / wall))
        config = load_config(BASE, overrides=["hypervisor.async_pf=kvm",
                                              f'sim.duration="{probe_ms}ms"'])
    return probe_ms


class Collect:
    """A sweep reporter that keeps every point's outcome."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[object, dict]] = []

    def start(self, run) -> None:  # noqa: ANN001
        pass

    def point(self, point, outcome) -> None:  # noqa: ANN001
        self.outcomes.append((point, outcome))

    def close(self) -> None:
        pass


def gaps(outcomes: list[dict]) -> list[float]:
    """On each worker process, the time between the end of a point and the start of the next."""
    runs = defaultdict(list)
    for outcome in outcomes:
        runs[outcome["pid"]].append((outcome["started"], outcome["wall_s"]))
    found = []
    for points in runs.values():
        points.sort()
        found += [b[0] - (a[0] + a[1]) for a, b in zip(points, points[1:], strict=False)]
    return found


def write_cost(collected: list[tuple[object, dict]]) -> float:
    """Mean seconds to write one point's directory (result.json, point.json, rename)."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-write-") as out:
        store = Store(Path(out))
        store.prepare()
        started = time.monotonic()
        for point, outcome in collected:
            store.write_done(point, outcome, str(BASE), ())
        return (time.monotonic() - started) / len(collected)


def measure(sweep: dict, engine: Engine, label: str) -> dict:
    collect = Collect()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        cpu, wall, epoch = cpu_seconds(), time.monotonic(), time.time()
        run = run_sweep(sweep, out=Path(out), engine=engine, reporter=collect)
        wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    assert run.frame is not None and (run.frame["status"] == "ok").all()
    outcomes = [outcome for _point, outcome in collect.outcomes]
    between = gaps(outcomes)
    return {"label": label, "wall": wall, "cpu": cpu, "points": len(outcomes),
            "simulated": sum(o["wall_s"] for o in outcomes),
            "startup": run.timings.get("start_s", 0.0) + run.timings.get("warm_s", 0.0),
            "gap": statistics.mean(between) if between else 0.0,
            "gap_max": max(between, default=0.0), "write": write_cost(collect.outcomes),
            "frame": run.frame, "timeline": timeline(outcomes, epoch, wall)}


def timeline(outcomes: list[dict], epoch: float, wall: float) -> str:
    """When the first point started, when each worker finished its last, the sweep's end."""
    first = min(o["started"] for o in outcomes) - epoch
    ends = defaultdict(float)
    busy = defaultdict(float)
    for o in outcomes:
        ends[o["pid"]] = max(ends[o["pid"]], o["started"] + o["wall_s"] - epoch)
        busy[o["pid"]] += o["wall_s"]
    workers = ", ".join(f"busy {busy[p]:.2f} s until {ends[p]:.2f} s" for p in sorted(ends))
    return f"first point at {first:.2f} s; per worker: {workers}; sweep returned at {wall:.2f} s"


def command(sweep_file: Path, out: Path, *args: str) -> dict:
    """Run ``pfsim sweep`` in a fresh process: wall and CPU seconds, and its point table."""
    import subprocess

    import pandas as pd

    cpu, wall = cpu_seconds(), time.monotonic()
    subprocess.run([sys.executable, "-m", "pfsim", "sweep", str(sweep_file), "--out", str(out),
                    "--quiet", *args], check=True, capture_output=True)
    wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    frame = pd.read_parquet(out / "sweep.parquet")
    return {"wall": wall, "cpu": cpu, "frame": frame, "points": float(frame["wall_s"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--point-seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    duration_ms = calibrate(args.point_seconds)
    sweep = {"base": str(BASE), "seed": 1, "seeds": args.points,
             "set": {"hypervisor.async_pf": "kvm", "sim.duration": f"{duration_ms}ms"}}
    print(f"{args.points} points: {BASE.name}, kvm, sim.duration {duration_ms} ms "
          f"(calibrated to ~{args.point_seconds:g} s of wall time per point)")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as home:
        sweep_file = Path(home) / "sweep.toml"
        sweep_file.write_text(f'base = "{BASE}"\nseed = 1\nseeds = {args.points}\n[set]\n'
                              f'"hypervisor.async_pf" = "kvm"\n'
                              f'"sim.duration" = "{duration_ms}ms"\n')
        serial = command(sweep_file, Path(home) / "serial", "--serial")
        dask = command(sweep_file, Path(home) / "dask", "--workers", str(args.workers))
    print(f"{'command':34} {'wall s':>7} {'cpu s':>7} {'sum of point walls s':>20}")
    for label, row in (("pfsim sweep --serial (peer)", serial),
                       (f"pfsim sweep --workers {args.workers}", dask)):
        print(f"{label:34} {row['wall']:7.2f} {row['cpu']:7.2f} {row['points']:20.2f}")
    same = serial["frame"].drop(columns=["wall_s", "cpu_s"]).equals(
        dask["frame"].drop(columns=["wall_s", "cpu_s"]))
    print(f"dask wall / serial wall = {dask['wall'] / serial['wall']:.3f}   "
          f"tables identical (except times): {same}")

    inside = measure(sweep, Engine(workers=args.workers), f"dask, {args.workers} workers")
    print(f"inside one process: {inside['timeline']}")
    print(f"mean point {inside['simulated'] / inside['points']:.2f} s, cluster start "
          f"{inside['startup']:.2f} s, scheduling gap per point {inside['gap']:.3f} s (max "
          f"{inside['gap_max']:.3f} s), writing a point {inside['write']:.4f} s")


if __name__ == "__main__":
    main()
