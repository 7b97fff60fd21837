"""Benchmark: whole-process ``pfsim replay`` / ``pfsim mrc`` against libCacheSim, and a large
lackey trace (parse rate, peak memory).

Run with ``python benchmarks/bench_replay_process.py`` (not collected by pytest). Every figure
is the CPU time (user + system) of a fresh child process, best of ``--repeats``, as a user
would run it: interpreter start, imports, numba cache loads, reading the trace and the replay.

1. Zipf(1.0), 10 M requests over 1 M pages (the trace of bench_replay.py), memory 10 % of the
   distinct pages: ``pfsim replay zipf.npy --policy P`` against a Python process running
   libCacheSim's ``process_trace`` on the same trace as an oracleGeneral file (its fastest
   reader), for the policies whose definitions match libCacheSim's request by request (the
   miss ratios printed must agree); then ``pfsim mrc`` (exact, every size) against one ``pfsim replay --policy lru``.
2. A generated lackey trace of ``--lackey-lines`` data records (``valgrind --tool=lackey``
   layout, 16 bytes a line) replayed with LRU: lines per CPU second and peak RSS. libCacheSim
   has no lackey reader, so it has no figure there.

The machine is shared and noisy: compare ratios within one run, not times across runs.
"""

# ruff: noqa: T201  (a benchmark script: its output is the table it prints)

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_replay import write_oracle_general, zipf_trace  # noqa: E402

LCS = """
import sys, libcachesim as lcs
reader = lcs.TraceReader(sys.argv[1], lcs.TraceType.ORACLE_GENERAL_TRACE)
miss_ratio, _ = getattr(lcs, sys.argv[2])(int(sys.argv[3])).process_trace(reader)
print(miss_ratio)
"""


def child_cpu(command: list[str], repeats: int) -> tuple[float, int, str]:
    """(best CPU s of the child over ``repeats`` runs, its peak RSS in KiB, its stdout)."""
    best, peak, out = float("inf"), 0, ""
    for _ in range(repeats):
        with tempfile.TemporaryFile() as stdout:
            child = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
            _pid, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                raise SystemExit(f"{command} exited with {child.returncode}")
            stdout.seek(0)
            out = stdout.read().decode()
        best = min(best, usage.ru_utime + usage.ru_stime)
        peak = max(peak, usage.ru_maxrss)
    return best, peak, out


def peak_rss_kib(command: list[str]) -> int | None:
    """Peak RSS (KiB) of ``command`` run by GNU time, which forks it from its own small process.

    NOTE: a child spawned from this process inherits this process's peak in ``ru_maxrss``
    (Linux keeps the larger of the two across exec, and vfork shares this process's memory),
    so ``child_cpu``'s figure is at least this benchmark's own size; None without GNU time.
    """
    if not Path("/usr/bin/time").exists():
        return None
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1])


def write_lackey(path: Path, lines: int, pages: int, seed: int) -> None:
    """``lines`` lackey data records over ``pages`` pages (Zipf-like), written in blocks."""
    rng = np.random.default_rng(seed)
    kinds = np.array([b" L ", b" S ", b" M "])
    with path.open("wb") as handle:
        handle.write(b"==1== Lackey, an example Valgrind tool\n")
        block = 1_000_000
        for start in range(0, lines, block):
            n = min(block, lines - start)
            page = (rng.zipf(1.2, n) % pages) + 0x4000
            address = page * 4096 + rng.integers(0, 512, n) * 8
            text = [kinds[k] + b"%09x,8" % a for k, a in zip(rng.integers(0, 3, n), address)]
            handle.write(b"\n".join(text) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--lackey-lines", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pfsim = [sys.executable, "-m", "pfsim"]
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        pages = zipf_trace(args.requests, args.pages, 1.0, 42)
        np.save(folder / "zipf.npy", pages)
        write_oracle_general(folder / "zipf.oracleGeneral", pages,
                             np.full(pages.size, pages.size))
        frames = np.unique(pages).size // 10
        subprocess.run([*pfsim, "replay", str(folder / "zipf.npy"), "--policy",
                        "lru,fifo,clock,sieve,arc,2q,s3fifo",
                        "--frames", "10"], check=True, capture_output=True)  # numba cache
        print(f"Zipf(1.0): {args.requests:,} requests over {args.pages:,} pages, "
              f"{frames:,} frames; CPU s of the whole process, best of {args.repeats}")
        print(f"{'policy':7} {'pfsim s':>8} {'libCacheSim s':>13} {'ratio':>6} "
              f"{'pfsim faults':>13} {'lcs miss ratio':>14}")
        lru_s = 0.0
        for name, cache in (("lru", "LRU"), ("fifo", "FIFO"), ("clock", "Clock"),
                            ("sieve", "Sieve"), ("arc", "ARC"), ("2q", "TwoQ"),
                            ("s3fifo", "S3FIFO")):
            ours, _, out = child_cpu([*pfsim, "replay", str(folder / "zipf.npy"), "--policy",
                                      name, "--frames", str(frames)], args.repeats)
            theirs, _, lcs_out = child_cpu([sys.executable, "-c", LCS,
                                            str(folder / "zipf.oracleGeneral"), cache,
                                            str(frames)], args.repeats)
            faults = out.split("faults=")[1].split()[0]
            lru_s = ours if name == "lru" else lru_s
            print(f"{name:7} {ours:8.2f} {theirs:13.2f} {theirs / ours:5.1f}x {faults:>13} "
                  f"{float(lcs_out):14.6f}")
        mrc_s, _, _ = child_cpu([*pfsim, "mrc", str(folder / "zipf.npy")], args.repeats)
        print(f"pfsim mrc (exact, every size): {mrc_s:.2f} s = {mrc_s / lru_s:.1f}x one "
              f"pfsim replay --policy lru")
        (folder / "zipf.npy").unlink()
        (folder / "zipf.oracleGeneral").unlink()
        del pages  # a forked child's peak RSS starts from this process's size

        lackey = folder / "big.lackey"
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, "
                        f"{str(Path(__file__).resolve().parent)!r}); from pathlib import Path; "
                        f"from bench_replay_process import write_lackey; "
                        f"write_lackey(Path({str(lackey)!r}), {args.lackey_lines}, 200_000, 7)"],
                       check=True)
        size = lackey.stat().st_size
        command = [*pfsim, "replay", str(lackey), "--policy", "lru", "--frames", "10000"]
        cpu, peak, out = child_cpu(command, 1)
        peak = peak_rss_kib(command) or peak
        print(f"lackey: {args.lackey_lines:,} lines ({size / 1e9:.2f} GB), pfsim replay "
              f"--policy lru: {cpu:.1f} CPU s, {args.lackey_lines / cpu / 1e6:.1f} M lines/s, "
              f"peak RSS {peak / 1024:.0f} MiB; libCacheSim: no lackey reader")


if __name__ == "__main__":
    main()
