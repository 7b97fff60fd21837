"""ALMOS-MKH cluster VMM throughput (issue 4 speed target), beside the Python fault path.

    python benchmarks/bench_clusters.py [--quick] [--accesses N]

One process with 32 threads (one per vCPU, 32 vCPUs) shares a 256 MiB DATA vseg (65,536
pages, distributed over the clusters by page number) with uniform accesses, 30 % writes.
The same workload runs with 1, 2, 4 and 8 clusters (the 8-cluster case is the issue's
8 x 4 vCPUs; 1 cluster runs the ALMOS-MKH VMM too, ``model = "almos"``).  Every page faults
once per cluster copy: one true fault (local or global) and, in the other clusters, false
faults, so the fault count grows with the cluster count while the accesses stay the same.

Reported per cluster count: wall time, simulated accesses per wall second (target >= 2 M/s
at 8 clusters), faults per wall second, and the mean simulated cost of each fault class:
it may grow with the cluster count only through the modelled remote costs (more hops, more
remote pages), never through the simulator.  The last line runs the 2-cluster case through
the Python reference fault path (``fast_faults = false``) on fewer accesses, for scale.
"""

from __future__ import annotations

import argparse
import time

import pfsim


def config(clusters: int, per_thread: int, fast: bool = True) -> dict:
    step = {"op": "access", "vseg": "grid", "pattern": "uniform", "accesses": per_thread,
            "write_ratio": 0.3, "think": "100ns"}
    return {"sim": {"seed": 1},
            "guest": {"vcpus": 32, "clusters": clusters, "memory": "2GiB", "fast_faults": fast,
                      "vmm": {"model": "almos"}},
            "processes": [{"name": "p", "cluster": 0,
                           "vsegs": [{"name": "grid", "type": "data", "size": "256MiB"}],
                           "threads": [{"count": 32, "stack": False, "steps": [step]}]}]}


def measure(clusters: int, per_thread: int, fast: bool = True) -> dict:
    start = time.perf_counter()
    result = pfsim.run(config(clusters, per_thread, fast))
    wall = time.perf_counter() - start
    p = result.processes["p"]
    faults = p["false_pgfault_nr"] + p["local_pgfault_nr"] + p["global_pgfault_nr"]
    row = {"clusters": clusters, "wall": wall, "accesses": p["accesses"], "faults": faults,
           "events": result["events"], "remote": p["remote_accesses"]}
    for kind in ("false", "local", "global"):
        n = p[f"{kind}_pgfault_nr"]
        row[kind] = n
        row[f"{kind}_ns"] = p[f"{kind}_pgfault_cost"] / n if n else 0.0
    return row


def show(row: dict, label: str = "") -> None:
    print(f"{row['clusters']:>8} {row['wall']:7.2f} s {row['accesses'] / row['wall'] / 1e6:9.2f} M/s "
          f"{row['faults'] / row['wall'] / 1e3:9.1f} k/s {row['faults']:>9,} "
          f"{row['false']:>8,} {row['local'] + row['global']:>8,} "
          f"{row['false_ns']:8.0f} {row['local_ns']:8.0f} {row['global_ns']:8.0f} "
          f"{row['events']:>8,}{label}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a fifth of the accesses")
    parser.add_argument("--accesses", type=int, default=500_000, help="accesses per thread")
    args = parser.parse_args()
    per_thread = args.accesses // (5 if args.quick else 1)
    pfsim.run(config(2, 2000))  # warm-up: imports and compiled kernels
    print(f"32 threads x {per_thread:,} uniform accesses over a shared 256 MiB DATA vseg")
    print(f"{'clusters':>8} {'wall':>9} {'accesses':>11} {'faults':>11} {'faults':>9} "
          f"{'false':>8} {'true':>8} {'false ns':>8} {'local ns':>8} {'glob. ns':>8} {'events':>8}")
    for clusters in (1, 2, 4, 8):
        show(measure(clusters, per_thread))
    python_accesses = max(2000, per_thread // 50)
    show(measure(2, python_accesses, fast=False),
         f"   <- Python fault path, {python_accesses:,} accesses per thread")


if __name__ == "__main__":
    main()
