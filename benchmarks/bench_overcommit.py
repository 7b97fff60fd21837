"""Overcommit throughput (issue 3): simulated seconds per wall second, host faults per second,
and peak memory against simulated time (it must not grow with the run's length).

    python benchmarks/bench_overcommit.py [--modes off,kvm] [--durations 1s,2s,4s]

Each run is a fresh interpreter (so its peak RSS is its own) on examples/overcommit.toml with
the nvme preset; the compiled kernels are warmed (cached) by a short run first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import pfsim
config = pfsim.load_config(sys.argv[1], overrides=sys.argv[2:])
start = time.perf_counter()
result = pfsim.run(config)
wall = time.perf_counter() - start
host = result["host"]
print(json.dumps({"wall_s": wall, "sim_s": result["sim_time_ns"] / 1e9,
                  "host_faults": host["ept_violations"], "swap_ins": host["swap_ins"],
                  "events": result["events"],
                  "work": sum(p["work"] for p in result.processes.values()),
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(mode: str, duration: str) -> dict:
    args = [sys.executable, "-c", CHILD, str(ROOT / "examples" / "overcommit.toml"),
            f"hypervisor.async_pf={mode}", f'sim.duration="{duration}"', 'hypervisor.swap.device="nvme"']
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="off,kvm,s390")
    parser.add_argument("--durations", default="1s,2s,4s")
    args = parser.parse_args()
    run("kvm", "20ms")  # warm the numba cache
    print(f"{'mode':6} {'sim s':>6} {'wall s':>7} {'sim s/wall s':>12} {'host faults':>12} "
          f"{'faults/s':>10} {'events/s':>10} {'work':>11} {'peak RSS MiB':>12}")
    for mode in args.modes.split(","):
        for duration in args.durations.split(","):
            r = run(mode, duration)
            print(f"{mode:6} {r['sim_s']:6.2f} {r['wall_s']:7.2f} {r['sim_s'] / r['wall_s']:12.3f} "
                  f"{r['host_faults']:12,} {r['host_faults'] / r['wall_s']:10,.0f} "
                  f"{r['events'] / r['wall_s']:10,.0f} {r['work']:11,} {r['maxrss_mib']:12.1f}")


if __name__ == "__main__":
    main()
