"""Overcommit throughput: simulated seconds per CPU second, host faults and swap-ins per CPU
second, and peak memory against simulated time, for the reference and the compiled engine in
the same run (so their ratio is meaningful on a noisy machine).

    python benchmarks/bench_overcommit.py [--modes off,kvm] [--durations 4s,8s]
                                          [--engines reference,compiled]
                                          [--variants 'guest.tick="off" guest.steal_time=false;']

``--variants``: override sets separated by ``;`` (each a space-separated list of config
overrides; the empty set is the example as it is), each run for every mode and engine; the
steady-state lines then give each variant's CPU time as a ratio to the first variant's.

The steady state is the difference between two durations (e.g. 4s and 8s: the 4 s -> 8 s window).

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
start = time.process_time()
result = pfsim.run(config)
wall = time.process_time() - start
host = result["host"]
print(json.dumps({"wall_s": wall, "sim_s": result["sim_time_ns"] / 1e9,
                  "host_faults": host["ept_violations"], "swap_ins": host["swap_ins"],
                  "events": result["events"],
                  "work": sum(p["work"] for p in result.processes.values()),
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(mode: str, duration: str, engine: str = "reference", extra: tuple[str, ...] = ()) -> dict:
    args = [sys.executable, "-c", CHILD, str(ROOT / "examples" / "overcommit.toml"),
            f"hypervisor.async_pf={mode}", f'sim.duration="{duration}"',
            'hypervisor.swap.device="nvme"', f"sim.engine={engine}", *extra]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="off,halt,kvm,s390")
    parser.add_argument("--durations", default="4s,8s")
    parser.add_argument("--engines", default="reference,compiled")
    parser.add_argument("--variants", default="")
    args = parser.parse_args()
    variants = [tuple(v.split()) for v in args.variants.split(";")]
    for engine in args.engines.split(","):
        run("kvm", "20ms", engine)  # warm the numba cache
    print(f"{'engine':9} {'mode':5} {'variant':34} {'sim s':>6} {'cpu s':>7} {'sim s/cpu s':>11} "
          f"{'host faults':>12} {'swap-ins':>9} {'events':>9} {'peak RSS MiB':>12}")
    window: dict[tuple[str, str, str], list[dict]] = {}
    for mode in args.modes.split(","):
        for engine in args.engines.split(","):
            for extra in variants:
                label = " ".join(extra) or "(as configured)"
                for duration in args.durations.split(","):
                    r = run(mode, duration, engine, extra)
                    window.setdefault((mode, engine, label), []).append(r)
                    print(f"{engine:9} {mode:5} {label:34} {r['sim_s']:6.2f} {r['wall_s']:7.2f} "
                          f"{r['sim_s'] / r['wall_s']:11.3f} {r['host_faults']:12,} "
                          f"{r['swap_ins']:9,} {r['events']:9,} {r['maxrss_mib']:12.1f}")
    same = {"work", "host_faults", "swap_ins", "events", "sim_s"}
    labels = [" ".join(extra) or "(as configured)" for extra in variants]
    for mode in args.modes.split(","):
        for label in labels:
            ref = window.get((mode, "reference", label))
            comp = window.get((mode, "compiled", label))
            if ref and comp:
                agree = all({k: a[k] for k in same} == {k: b[k] for k in same}
                            for a, b in zip(ref, comp, strict=True))
                print(f"{mode} {label}: compiled and reference agree on work, faults, swap-ins "
                      f"and events: {'yes' if agree else 'NO'}")
    print("steady state (between the first and the last duration), CPU time:")
    for (mode, engine, label), runs in window.items():
        a, b = runs[0], runs[-1]
        cpu = b["wall_s"] - a["wall_s"]
        sim = b["sim_s"] - a["sim_s"]
        ref = window.get((mode, "reference", label))
        ratio = ""
        if ref is not None and engine != "reference":
            ref_cpu = ref[-1]["wall_s"] - ref[0]["wall_s"]
            ratio = f"  {ref_cpu / cpu:.1f}x the reference"
        first = window[(mode, engine, labels[0])]
        if label != labels[0]:
            first_cpu = first[-1]["wall_s"] - first[0]["wall_s"]
            ratio += f"  {cpu / first_cpu:.2f}x the CPU time of {labels[0]}"
        print(f"  {engine:9} {mode:5} {label:34} {sim / cpu:6.3f} sim s/cpu s "
              f"{(b['swap_ins'] - a['swap_ins']) / cpu:10,.0f} swap-ins/cpu s "
              f"{(b['host_faults'] - a['host_faults']) / cpu:10,.0f} host faults/cpu s{ratio}")


if __name__ == "__main__":
    main()
