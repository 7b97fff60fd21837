"""Guest access-path throughput (issue 2 and 8 speed targets), beside a naive Python loop.

Times are CPU seconds of this process (``time.process_time``), so a loaded machine does not
change them much; the wall time is shown beside.

    python benchmarks/bench_guest.py [--quick]

Case A: 1 vCPU, 1 thread, uniform accesses over a resident 64 MiB vseg (pre-faulted by a
sequential write pass that is part of the run), 20 million accesses.  Target >= 10 M/s
(issue 2), >= 60 M per CPU second (issue 8).
Case B: 4 vCPUs, 16 threads of one process, Zipf accesses over a shared heap with about 1 %
first-touch faults.  Target >= 2 M/s (issue 2), >= 20 M per CPU second (issue 8).

The naive figure is a plain Python loop doing one dict lookup per access over the same
number of accesses (the best a one-Python-call-per-access simulator can do).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pfsim


def case_a(n: int) -> dict:
    vseg = {"name": "heap", "type": "anon", "size": "64MiB"}
    steps = [
        {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
         "accesses": 16384, "write_ratio": 1.0},
        {"op": "access", "vseg": "heap", "pattern": "uniform", "accesses": n, "write_ratio": 0.3,
         "think": "50ns"},
    ]
    return {"sim": {"seed": 1}, "guest": {"vcpus": 1, "memory": "256MiB"},
            "processes": [{"name": "p", "vsegs": [vseg], "threads": [{"steps": steps}]}]}


def case_b(per_thread: int) -> dict:
    vseg = {"name": "heap", "type": "anon", "size": "256MiB"}
    step = {"op": "access", "vseg": "heap", "pattern": "zipf", "alpha": 1.0,
            "accesses": per_thread, "write_ratio": 0.3, "think": "50ns"}
    return {"sim": {"seed": 1}, "guest": {"vcpus": 4, "memory": "512MiB"},
            "processes": [{"name": "p", "vsegs": [vseg],
                           "threads": [{"count": 16, "steps": [step]}]}]}


def naive_loop(n: int, npages: int) -> float:
    """Seconds for one dict lookup per access over ``n`` uniform page numbers."""
    pages = np.random.default_rng(0).integers(0, npages, size=n).tolist()
    table = dict.fromkeys(range(npages), 1)
    start = time.process_time()
    hits = 0
    for page in pages:
        if page in table:
            hits += 1
    elapsed = time.process_time() - start
    assert hits == n
    return elapsed


def measure(name: str, config: dict, naive_n: int, npages: int) -> None:
    pfsim.run(case_a(1000))  # warm-up: imports and compiled kernels
    start, cpu0 = time.perf_counter(), time.process_time()
    result = pfsim.run(config)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    p = result.processes["p"]
    accesses = p["accesses"]
    faults = p["min_flt"] + p["maj_flt"]
    naive = naive_loop(naive_n, npages) * accesses / naive_n
    print(f"{name}: {accesses:,} accesses, {faults:,} faults ({100 * faults / accesses:.2f} %), "
          f"{result['events']:,} events")
    print(f"  pfsim        {cpu:7.2f} CPU s  {accesses / cpu / 1e6:7.1f} M accesses/CPU s"
          f"  (wall {wall:.2f} s)")
    print(f"  naive loop   {naive:7.2f} CPU s  {accesses / naive / 1e6:7.1f} M accesses/CPU s "
          "(one dict lookup each)")
    print(f"  ratio pfsim/naive = {naive / cpu:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the accesses")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    measure("A: 1 vCPU, 1 thread, uniform, resident 64 MiB", case_a(20_000_000 // scale),
            2_000_000, 16384)
    measure("B: 4 vCPUs, 16 threads, Zipf, ~1% first-touch faults", case_b(400_000 // scale),
            2_000_000, 65536)


if __name__ == "__main__":
    main()
