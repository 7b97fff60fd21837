"""Scale: memory that grows with the pages touched, not with address space or guest memory.

    python benchmarks/bench_scale.py [--quick] [--cli] [--baseline SRC] [--cases 1,2,3,4]

Each case runs in a fresh process (so its peak resident memory is its own; a first run of
each tree fills its numba cache beforehand, so no case pays for compiling).  That process
imports pfsim, runs a small warm-up scenario (numba's compiler set-up and the cached kernels)
and then the case, and reports:

- ``run``: the case's ``Simulation.run`` alone, CPU and wall time: the simulated process from
  its first access to the end of its exit (faults, teardown of its memory and page tables);
  faults are counted from the result's ``min_flt``;
- ``process``: the whole child's CPU time (interpreter, imports, warm-up and the case) and its
  peak RSS (``ru_maxrss`` from ``wait4``).

``--cli`` also times what a user types, ``pfsim run CONFIG --quiet`` in a fresh interpreter
(the case written as TOML; interpreter start-up, imports, numba's set-up, the run and writing
result.json), by wall and CPU time.  Cases (issue 8):

1. first touch of 4 GiB by one thread (1 M faults) in a 8 GiB guest;
2. a 65 GiB guest (64 GiB for the process beside the kernel's reserve), one process with a
   1 TiB anonymous vseg, touching 64 GiB of distinct pages (16 M first-touch faults) and
   exiting;
3. a 1 TiB guest running a 1 GiB working set (256 K faults);
4. sixteen 64 GiB vsegs (1 TiB of address space) touching 1 GiB;
5. case 3 with the host model (``hypervisor.enabled``): the host's per-gfn arrays;
6. the ALMOS-MKH clusters (``examples/clusters.toml``'s 4 clusters of 2 vCPUs, 4 page-table
   copies) with one 1 TiB anon vseg, each of 8 threads writing 4096 pages (16 MiB) at the
   start of its eighth (32 K pages in all).

``--baseline SRC`` runs the same cases with the pfsim package of another source tree (e.g. a
``git worktree`` of an earlier commit: ``--baseline /tmp/old/src``) in the same run and prints
the ratios; a case the baseline refuses or cannot finish is shown with its exit status.
``--quick`` divides the touched sizes by 16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
GIB = 1 << 30

CHILD = """
import json, sys, time
from pfsim.config import load_config
from pfsim.simulation import Simulation
warm = {"guest": {"memory": "64MiB"}, "processes": [{"name": "p", "vsegs": [
    {"name": "h", "type": "anon", "size": "1MiB"}], "threads": [{"steps": [
    {"op": "access", "vseg": "h", "accesses": 100}]}]}]}
Simulation(load_config(warm)).run()  # imports and compiled kernels (numba cache) first
start, wall = time.process_time(), time.perf_counter()
result = Simulation(load_config(json.loads(sys.argv[1]))).run()
cpu, wall = time.process_time() - start, time.perf_counter() - wall
procs = result["vms"]["vm0"]["processes"]
print(json.dumps({"faults": sum(p["min_flt"] for p in procs.values()), "run_cpu": cpu,
                  "run_wall": wall}))
"""


def touch(guest: str, vsegs: list[tuple[str, str]], touched: int) -> dict:
    """One thread writes ``touched`` bytes of distinct pages, spread over ``vsegs`` (name,
    size) in order, then exits."""
    steps = []
    per = touched // len(vsegs)
    for name, _ in vsegs:
        steps.append({"op": "access", "vseg": name, "pattern": "sequential", "stride": "4KiB",
                      "accesses": per // 4096, "write_ratio": 1.0, "think": "10ns"})
    return {"sim": {"seed": 1}, "guest": {"vcpus": 1, "memory": guest},
            "processes": [{"name": "p", "vsegs": [{"name": n, "type": "anon", "size": s}
                                                  for n, s in vsegs],
                           "threads": [{"stack": False, "steps": steps}]}]}


def with_host(config: dict) -> dict:
    return {**config, "hypervisor": {"enabled": True}}


def clusters(vseg: str, pages: int) -> dict:
    """examples/clusters.toml's machine: 8 threads, each writing ``pages // 8`` consecutive
    pages from the start of its eighth of one ``vseg``-sized anon vseg."""
    share = {"op": "access", "vseg": "buf", "split": True, "pattern": "sequential",
             "stride": "4KiB", "accesses": pages // 8, "write_ratio": 1.0}
    return {"sim": {"seed": 11}, "guest": {"vcpus": 8, "clusters": 4, "memory": "1GiB"},
            "processes": [{"name": "solver", "cluster": 0,
                           "vsegs": [{"name": "buf", "type": "anon", "size": vseg}],
                           "threads": [{"count": 8, "steps": [share]}]}]}


def cases(scale: int) -> dict[str, dict]:
    return {
        "1": ("first touch of 4 GiB, 8 GiB guest",
              touch("8GiB", [("heap", "4GiB")], 4 * GIB // scale)),
        "2": ("1 TiB vseg touching 64 GiB, 65 GiB guest",
              touch("65GiB", [("arena", "1TiB")], 64 * GIB // scale)),
        "3": ("1 TiB guest, 1 GiB working set",
              touch("1TiB", [("heap", "1GiB")], GIB // scale)),
        "4": ("16 vsegs of 64 GiB touching 1 GiB, 64 GiB guest",
              touch("64GiB", [(f"v{k}", "64GiB") for k in range(16)], GIB // scale)),
        "5": ("1 TiB guest with the host model, 1 GiB working set",
              with_host(touch("1TiB", [("heap", "1GiB")], GIB // scale))),
        "6": ("4 clusters, a 1 TiB vseg, 32 K pages written by 8 threads",
              clusters("1TiB", 32768 // scale)),
    }


def toml(value: object) -> str:
    """``value`` as a TOML value (inline tables and arrays: the case configs are small)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # str (plain ASCII here), int or float


def spawn(src: Path, args: list[str]) -> tuple[dict, str]:
    """Run ``python ARGS`` importing pfsim from ``src``: its exit status, wall time, CPU time
    and peak RSS (``wait4``), the last line of its stderr, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    out = child.stdout.read()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    found = {"status": os.waitstatus_to_exitcode(status), "wall": time.perf_counter() - start,
             "cpu": usage.ru_utime + usage.ru_stime, "rss_gib": usage.ru_maxrss * 1024 / GIB,
             "error": (err.strip().splitlines() or ["?"])[-1][:160]}
    return found, out


def run_cli(src: Path, config: dict, where: Path) -> dict:
    """The whole ``pfsim run CONFIG --quiet`` a user types, in a fresh interpreter:
    interpreter start-up, imports and writing result.json included."""
    path = where / "case.toml"
    path.write_text("".join(f"{key} = {toml(value)}\n" for key, value in config.items()))
    found, out = spawn(src, ["-m", "pfsim", "run", str(path), "--quiet",
                             "--out", str(where / "out")])
    if found["status"] == 0 and "FINAL outcome=ok" not in out:
        found["status"] = 1
    return found


def run_case(src: Path, config: dict) -> dict:
    """Run ``config`` in a fresh interpreter (warm-up first, see ``CHILD``)."""
    found, out = spawn(src, ["-c", CHILD, json.dumps(config)])
    if found["status"] == 0:
        found.update(json.loads(out.strip().splitlines()[-1]))
    return found


def show(label: str, found: dict, cli: dict | None) -> str:
    if found["status"] != 0:
        return f"{label:9} exit {found['status']}: {found['error']}"
    faults = found["faults"]
    line = (f"{label:9} {faults:>11,} faults  run: CPU {found['run_cpu']:6.2f} s, wall "
            f"{found['run_wall']:6.2f} s, {faults / found['run_wall'] / 1e6:5.2f} M faults/wall s"
            f"  process: CPU {found['cpu']:6.2f} s, peak RSS {found['rss_gib']:5.2f} GiB, "
            f"{faults / found['cpu'] / 1e6:5.2f} M faults/CPU s")
    if cli is not None:
        line += f"\n{'':9} {'':18}pfsim run: " + (
            f"exit {cli['status']}: {cli['error']}" if cli["status"] != 0 else
            f"CPU {cli['cpu']:6.2f} s, wall {cli['wall']:6.2f} s, "
            f"{faults / cli['wall'] / 1e6:5.2f} M faults/wall s")
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="touch a sixteenth")
    parser.add_argument("--baseline", type=Path, help="another source tree's src/ to compare")
    parser.add_argument("--cases", default="1,2,3,4,5,6")
    parser.add_argument("--cli", action="store_true",
                        help="also time the whole `pfsim run CONFIG --quiet` of each case")
    args = parser.parse_args()
    table = cases(16 if args.quick else 1)
    small = touch("64MiB", [("heap", "1MiB")], 1 << 20)
    warm = [small, with_host(small), clusters("64MiB", 64)]
    for src in (SRC, args.baseline):
        for config in warm if src is not None else []:
            run_case(src, config)  # numba cache filled for every kind of run the cases make
    for key in args.cases.split(","):
        title, config = table[key]
        print(f"case {key}: {title}")
        found = {}
        for label, src in (("this tree", SRC), ("baseline", args.baseline)):
            if src is None:
                continue
            found[label] = run_case(src, config)
            cli = None
            if args.cli and found[label]["status"] == 0:
                with tempfile.TemporaryDirectory() as where:
                    cli = run_cli(src, config, Path(where))
            print("  " + show(label, found[label], cli))
        here, base = found["this tree"], found.get("baseline")
        if base is not None and here["status"] == 0 and base["status"] == 0:
            print(f"  ratios this/baseline: process CPU {here['cpu'] / base['cpu']:.2f}, "
                  f"run CPU {here['run_cpu'] / base['run_cpu']:.2f}, "
                  f"peak RSS {here['rss_gib'] / base['rss_gib']:.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
