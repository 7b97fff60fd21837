"""Sweep speed: the same sweep run serially (one point after another in this process, the
peer) and on a Dask LocalCluster, in the same run of this script.

    python benchmarks/bench_sweep.py [--points 16] [--point-seconds 2] [--workers 2]

The sweep is examples/overcommit.toml in kvm mode with ``--points`` seeds; ``sim.duration`` is
calibrated first so that one point takes about ``--point-seconds`` of wall time here.  Each
engine gets a fresh output directory, so both compute every point.  Reported per engine: wall
time, CPU time of this process and of its children (the Dask workers, reaped when the cluster
closes), the sum of the points' own wall times, and the overhead per point: the worker time
not spent simulating while the points ran (scheduling, moving results, writing them), that is
(wall of the point phase x workers - sum of point walls) / points; the cluster start and the
warm-up (loading the compiled core in every worker) are reported apart.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pfsim.config import load_config  # noqa: E402
from pfsim.sweeps.execute import Engine  # noqa: E402
from pfsim.sweeps.run import run_sweep  # noqa: E402
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
    wall = min(run_point(config)["wall_s"] for _ in range(2))
    return max(100, round(probe_ms * target_s / wall))


def measure(sweep: dict, engine: Engine, label: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        cpu, wall = cpu_seconds(), time.monotonic()
        run = run_sweep(sweep, out=Path(out), engine=engine)
        wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    assert run.frame is not None and (run.frame["status"] == "ok").all()
    points = len(run.frame)
    simulated = float(run.frame["wall_s"].sum())
    startup = run.timings.get("start_s", 0.0) + run.timings.get("warm_s", 0.0)
    workers = 1 if engine.serial else engine.local_workers(points)
    overhead = ((wall - startup) * workers - simulated) / points
    return {"label": label, "wall": wall, "cpu": cpu, "points": points, "simulated": simulated,
            "startup": startup, "overhead": overhead, "frame": run.frame}


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
    serial = measure(sweep, Engine(serial=True), "serial (peer)")
    dask = measure(sweep, Engine(workers=args.workers), f"dask, {args.workers} workers")
    print(f"{'engine':18} {'wall s':>7} {'cpu s':>7} {'point walls s':>13} {'mean point s':>12} "
          f"{'startup s':>9} {'overhead/point s':>16}")
    for row in (serial, dask):
        print(f"{row['label']:18} {row['wall']:7.2f} {row['cpu']:7.2f} {row['simulated']:13.2f} "
              f"{row['simulated'] / row['points']:12.2f} {row['startup']:9.2f} "
              f"{row['overhead']:16.3f}")
    same = serial["frame"].drop(columns=["wall_s", "cpu_s"]).equals(
        dask["frame"].drop(columns=["wall_s", "cpu_s"]))
    print(f"dask wall / serial wall = {dask['wall'] / serial['wall']:.3f}   "
          f"tables identical (except times): {same}")


if __name__ == "__main__":
    main()
