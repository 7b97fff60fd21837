"""Scheduler cost: CPU seconds of the compiled core for each guest policy (cfs, eevdf, rr) on
examples/overcommit.toml with many compute threads, in the same run (so the ratios to cfs are
meaningful on a noisy machine).

    python benchmarks/bench_sched.py [--threads 4,64,512] [--duration 1s]

Each run is a fresh interpreter; the compiled kernels are warmed (cached) by a short run first.
Both fair picks are compiled linear scans of the run queue, so their cost grows with the
number of runnable threads per vCPU; rr pops the head of its queue.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import pfsim
config = pfsim.load_config(sys.argv[1], overrides=sys.argv[2:])
start = time.process_time()
result = pfsim.run(config)
cpu = time.process_time() - start
print(json.dumps({"cpu_s": cpu, "events": result["events"],
                  "switches": sum(t.get("switches_in", 0) for p in result.processes.values()
                                  for t in p.get("threads", []))}))
"""


def run(policy: str, threads: int, duration: str) -> dict:
    args = [sys.executable, "-c", CHILD, str(ROOT / "examples" / "overcommit.toml"),
            f'guest.sched.policy="{policy}"', f"processes[1].threads[0].count={threads}",
            f'sim.duration="{duration}"']
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="4,64,512")
    parser.add_argument("--duration", default="1s")
    args = parser.parse_args()
    for policy in ("cfs", "eevdf", "rr"):
        run(policy, 4, "20ms")  # warm the numba cache
    print(f"{'threads':>7} {'policy':6} {'cpu s':>7} {'events':>9} {'events/cpu s':>12} "
          f"{'cpu / cfs':>9}")
    for threads in (int(n) for n in args.threads.split(",")):
        base = None
        for policy in ("cfs", "eevdf", "rr"):
            r = run(policy, threads, args.duration)
            base = base or r["cpu_s"]
            print(f"{threads:7} {policy:6} {r['cpu_s']:7.2f} {r['events']:9} "
                  f"{r['events'] / r['cpu_s']:12.0f} {r['cpu_s'] / base:9.2f}")


if __name__ == "__main__":
    main()
