"""Scheduler cost: CPU time per event of the compiled core for each guest policy (cfs, eevdf,
rr) on examples/overcommit.toml with many writer threads (each sleeps on every async page fault
and is woken by page ready: a wake-up, a placement and a pick per fault), in the same run (so
the ratios to cfs are meaningful on a noisy machine).

    python benchmarks/bench_sched.py [--threads 4,64,512] [--durations 1s,3s]
                                     [--variants 'guest.tick="off" guest.steal_time=false;']

``--variants``: override sets separated by ``;`` (each a space-separated list of config
overrides, the empty set is the config as it is), run one after the other for every policy,
with the CPU time of each as a ratio to the first variant's (e.g. the guest tick and steal
time off, as before they were modelled, against their defaults).

The steady state is the difference between the two durations (CPU time and events of the
window), so the start-up (imports, loading the compiled core, building the machine) cancels.

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
print(json.dumps({"cpu_s": cpu, "events": result["events"]}))
"""


def run(policy: str, threads: int, duration: str, extra: tuple[str, ...] = ()) -> dict:
    args = [sys.executable, "-c", CHILD, str(ROOT / "examples" / "overcommit.toml"),
            f'guest.sched.policy="{policy}"', f"processes[0].threads[0].count={threads}",
            f'sim.duration="{duration}"', *extra]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="4,64,512")
    parser.add_argument("--durations", default="1s,3s")
    parser.add_argument("--variants", default="")
    args = parser.parse_args()
    short, long = args.durations.split(",")
    variants = [tuple(v.split()) for v in args.variants.split(";")]
    for policy in ("cfs", "eevdf", "rr"):
        run(policy, 4, "20ms")  # warm the numba cache
    print(f"{'threads':>7} {'policy':6} {'variant':34} {'window cpu s':>12} {'window events':>13} "
          f"{'us/event':>8} {'cpu / cfs':>9} {'cpu / 1st variant':>17}")
    for threads in (int(n) for n in args.threads.split(",")):
        base = None
        for policy in ("cfs", "eevdf", "rr"):
            first = None
            for extra in variants:
                a, b = run(policy, threads, short, extra), run(policy, threads, long, extra)
                cpu, events = b["cpu_s"] - a["cpu_s"], b["events"] - a["events"]
                base = base or cpu
                first = first or cpu
                label = " ".join(extra) or "(as configured)"
                print(f"{threads:7} {policy:6} {label:34} {cpu:12.2f} {events:13} "
                      f"{cpu / events * 1e6:8.2f} {cpu / base:9.2f} {cpu / first:17.2f}")


if __name__ == "__main__":
    main()
