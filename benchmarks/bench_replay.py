"""Benchmark: pfsim's compiled reclaim kernels against libCacheSim's C loop, on one Zipf trace.

Run with ``python benchmarks/bench_replay.py`` (not collected by pytest). The trace has 10 M
requests over 1 M pages, Zipf(alpha = 1.0), seeded; memory holds 10 % of the distinct pages.
libCacheSim runs ``process_trace`` over an oracleGeneral binary file of the same trace, its
fastest path (it reads the binary records without parsing text). Each side is timed as the best of ``--repeats`` runs, after a
warm-up call for pfsim so that numba compilation (or cache loading) is reported separately.
The machine is noisy: compare the ratio within one run, not absolute times across runs.
"""

# ruff: noqa: T201  (a benchmark script: its output is the table it prints)

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libcachesim as lcs
import numpy as np

from pfsim.replacement import PageIds, make_policy
from pfsim.replacement.opt import next_use_of

POLICIES = [("lru", "LRU"), ("fifo", "FIFO"), ("clock", "Clock"), ("opt", "Belady")]
ORACLE_GENERAL = np.dtype([("time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"),
                           ("next_access_vtime", "<i8")])  # 24-byte packed records


def zipf_trace(requests: int, pages: int, alpha: float, seed: int) -> np.ndarray:
    """``requests`` page numbers, P(rank k) proportional to 1/k**alpha, ranks scattered."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, pages + 1) ** alpha
    ranks = rng.choice(pages, size=requests, p=weights / weights.sum())
    return rng.permutation(pages).astype(np.int64)[ranks]


def write_oracle_general(path: Path, pages: np.ndarray, next_use: np.ndarray) -> None:
    """Write the trace as libCacheSim oracleGeneral records (object size 1, -1 = no reuse)."""
    records = np.empty(pages.size, dtype=ORACLE_GENERAL)
    records["time"] = np.arange(pages.size, dtype=np.uint32)
    records["obj_id"] = pages
    records["obj_size"] = 1
    records["next_access_vtime"] = np.where(next_use < pages.size, next_use, -1)
    records.tofile(path)


def run_policy(name: str, ids: np.ndarray, n_pages: int, frames: int) -> int:
    """Faults of policy ``name`` over the dense ids ``ids`` (one chunk)."""
    policy = make_policy(name, frames)
    policy.feed(ids, n_pages)
    policy.finish()
    return policy.faults


def best_time(run, repeats: int) -> tuple[float, int]:
    """(fastest wall time in s over ``repeats`` calls of ``run``, its result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def time_libcachesim(trace_file: Path, cache_class: str, frames: int, requests: int,
                     repeats: int) -> tuple[float, int]:
    """(fastest time in s of libCacheSim's C loop ``process_trace``, faults) over ``repeats``.

    Opening the reader and building the cache (a 2**24-slot hash table) are not timed.
    """
    times, faults = [], 0
    for _ in range(repeats):
        reader = lcs.TraceReader(str(trace_file), lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = getattr(lcs, cache_class)(frames)
        start = time.perf_counter()
        miss_ratio, _ = cache.process_trace(reader)
        times.append(time.perf_counter() - start)
        faults = round(miss_ratio * requests)
    return min(times), faults


FIRST_CALL = """
import time
import numpy as np
from pfsim.replacement import simulate
start = time.perf_counter()
simulate({name!r}, np.array([1, 2, 1, 3]), 2)
print(time.perf_counter() - start)
"""


def first_call_times(name: str) -> tuple[float, float]:
    """(s to compile, s to load from numba's cache) for the first call of ``name``'s kernel.

    Each is measured in a fresh interpreter whose numba cache lives in an empty directory,
    so the first run compiles and the second loads what the first saved.
    """
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        runs = [subprocess.run([sys.executable, "-c", FIRST_CALL.format(name=name)], env=env,
                               capture_output=True, text=True, check=True)
                for _ in range(2)]
    compile_s, cached_s = (float(run.stdout) for run in runs)
    return compile_s, cached_s


def main() -> None:
    """Generate the trace, time both simulators per policy and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    for name, _ in POLICIES:
        run_policy(name, np.array([0, 1, 0, 2], dtype=np.int32), 3, 2)  # compile/load now

    start = time.perf_counter()
    pages = zipf_trace(args.requests, args.pages, args.alpha, args.seed)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    page_ids = PageIds()
    ids = page_ids.map(pages)
    n_pages = page_ids.n_pages
    densify_s = time.perf_counter() - start
    start = time.perf_counter()
    next_use = next_use_of(ids, n_pages)
    next_use_s = time.perf_counter() - start
    frames = n_pages // 10
    print(f"trace: {args.requests:,} requests over {args.pages:,} pages, Zipf alpha={args.alpha}, "
          f"seed={args.seed}; {n_pages:,} distinct pages, {frames:,} frames (10 %)")
    print(f"generate {generate_s:.2f} s; renumber to dense ids {densify_s:.3f} s; "
          f"next-use array (OPT only) {next_use_s:.3f} s")

    with tempfile.TemporaryDirectory() as directory:
        trace_file = Path(directory) / "trace.oracleGeneral"
        write_oracle_general(trace_file, pages, next_use)
        header = (f"{'policy':7} {'compile s':>9} {'cached s':>8} {'pfsim s':>8} "
                  f"{'pfsim Mreq/s':>12} {'libCacheSim s':>13} {'lcs Mreq/s':>10} {'speedup':>8} "
                  f"{'faults pfsim':>13} {'faults lcs':>11}")
        print(header)
        print("-" * len(header))
        for name, cache_class in POLICIES:
            ours_s, ours = best_time(lambda name=name: run_policy(name, ids, n_pages, frames),
                                     args.repeats)
            theirs_s, theirs = time_libcachesim(trace_file, cache_class, frames, args.requests,
                                                args.repeats)
            compile_s, cached_s = first_call_times(name)
            print(f"{name:7} {compile_s:9.3f} {cached_s:8.3f} {ours_s:8.3f} "
                  f"{args.requests / ours_s / 1e6:12.1f} {theirs_s:13.3f} "
                  f"{args.requests / theirs_s / 1e6:10.1f} {theirs_s / ours_s:7.1f}x "
                  f"{ours:13,} {theirs:11,}")
    print("compile s / cached s: first kernel call in a fresh interpreter with a cold / warm "
          "numba cache; pfsim s excludes them and the renumbering; "
          "speedup = libCacheSim s / pfsim s")


if __name__ == "__main__":
    main()
