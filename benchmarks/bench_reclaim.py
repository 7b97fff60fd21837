"""Guest reclaim throughput: a guest thrashing at 2x its memory with guest swap on nvme.

    python benchmarks/bench_reclaim.py [--quick]

One process with a 112 MiB anonymous heap in a 64 MiB guest (56 MiB for users: the heap is
twice that; guest swap on the nvme preset) writes its heap once and then makes uniform random accesses (30 % writes)
over it: more than half of them miss memory, so the guest keeps swapping in (major faults with
readahead) and kswapd and direct reclaim keep swapping out.  The baseline is the same run in a
guest with 256 MiB (no pressure at all; repeated 20 times, as one run takes milliseconds).
Reported per CPU second (process time of the runs, in the same invocation): simulated seconds
and guest swap-ins.  The thrashing run is measured on both engines: ``sim.engine = "reference"``
runs guest reclaim's readable Python reference, ``"compiled"`` (the default) its compiled
kernels (:mod:`pfsim.guest.reclaim_kernels`); their results are identical, and the script
checks that they are.
"""

from __future__ import annotations

import argparse
import time

import pfsim


def config(memory: str, accesses: int, engine: str = "compiled") -> dict:
    heap = {"name": "heap", "type": "anon", "size": "112MiB"}
    steps = [
        {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
         "accesses": 28672, "write_ratio": 1.0, "think": "100ns"},
        {"op": "access", "vseg": "heap", "pattern": "uniform", "accesses": accesses,
         "write_ratio": 0.3, "think": "100ns"},
    ]
    return {"sim": {"seed": 1, "engine": engine},
            "guest": {"vcpus": 1, "memory": memory, "swap": {"device": "nvme", "size": "256MiB"}},
            "processes": [{"name": "p", "vsegs": [heap], "threads": [{"steps": steps}]}]}


def measure(name: str, cfg: dict, repeat: int = 1) -> tuple[float, float, dict]:
    """Run ``cfg`` ``repeat`` times (a short run is repeated to be timed reliably)."""
    start = time.process_time()
    for _ in range(repeat):
        result = pfsim.run(cfg)
    cpu = (time.process_time() - start) / repeat
    memory = result["vms"]["vm0"]["memory"]
    sim_s = result["sim_time_ns"] / 1e9
    p = result.processes["p"]
    print(f"{name}: {sim_s:.3f} simulated s in {cpu:.4f} CPU s -> {sim_s / cpu:.3f} sim s per "
          f"CPU s; swap-ins {memory['swap_ins']:,} ({memory['swap_ins'] / cpu:,.0f} per CPU s), "
          f"swap-outs {memory['swap_outs']:,}, maj_flt {p['maj_flt']:,}, "
          f"pgscan {memory['pgscan_kswapd'] + memory['pgscan_direct']:,}, "
          f"allocstall {memory['allocstall']:,}")
    return sim_s / cpu, memory["swap_ins"] / cpu, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a fifth of the accesses")
    args = parser.parse_args()
    accesses = 100_000 // (5 if args.quick else 1)
    pfsim.run(config("256MiB", 1000))  # warm-up: imports and compiled kernels
    pfsim.run(config("32MiB", 1000))  # (the reclaim kernels too)
    base, _, _ = measure("no pressure (256 MiB guest)", config("256MiB", accesses), repeat=20)
    ref, ref_ins, ref_result = measure("thrashing, reference reclaim (64 MiB guest, 112 MiB heap)",
                                       config("64MiB", accesses, "reference"))
    com, com_ins, com_result = measure("thrashing, compiled reclaim (64 MiB guest, 112 MiB heap)",
                                       config("64MiB", accesses))
    same = [{k: v for k, v in r["vms"].items()} for r in (ref_result, com_result)]
    if same[0] != same[1]:
        raise SystemExit("the engines' results differ")
    print(f"compiled/reference: {com / ref:.2f}x the simulated seconds and {com_ins / ref_ins:.2f}x "
          f"the swap-ins per CPU second (identical results)")
    print(f"thrashing/no pressure (compiled): {com / base:.3f} of the simulated seconds per CPU "
          f"second")


if __name__ == "__main__":
    main()
