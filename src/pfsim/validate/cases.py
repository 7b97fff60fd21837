"""The cases of ``pfsim validate`` and how pfsim runs each of them.

Every case is one small program, run the same way on the real kernel (probe.c, pyprobe.py)
and in pfsim (a scenario built here): its page faults counted in the measured part only.

==========================  ====================================================================
case                        program (N pages; counts of the measured part)
==========================  ====================================================================
anon-first-touch            write one byte per page of fresh anonymous memory
zero-read-write             read every page (the zero page), then write every page
fork-child-read             after the parent wrote all N pages and forked: the child reads them
fork-child-write            the same, the child writes them (copy-on-write: N copies)
fork-parent-rewrite         the child wrote all and exited; the parent writes them again (reuse)
file-seq-cold               read one byte per page of a cold N-page file mapped MAP_SHARED
file-random-cold            the same after MADV_RANDOM (no readahead)
file-random-hot             a second pass over that MADV_RANDOM mapping (every page mapped)
==========================  ====================================================================

pfsim counts the measured part as the difference of two runs: the program up to the end of
the measured part, minus the program up to its start (the same seed: the same run up to there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pfsim.api import run

CASES = ("anon-first-touch", "zero-read-write", "fork-child-read", "fork-child-write",
         "fork-parent-rewrite", "file-seq-cold", "file-random-cold", "file-random-hot")
FILE_CASES = frozenset(c for c in CASES if c.startswith("file-"))
BASE = 0x40000000
"""Where the vseg is mapped: 2 MiB aligned, as ``thp_get_unmapped_area`` places file mappings
of at least 2 MiB (ext4, XFS) so that a 2 MiB folio never crosses a page table."""


@dataclass(frozen=True)
class Machine:
    """What pfsim must know of the measured kernel's file path."""

    readahead_kb: int
    fault_around_bytes: int
    large_folios: bool
    cached_file: bool
    """The file system keeps the file in memory (tmpfs): the cold read finds it cached."""


def _access(n: int, write: bool) -> dict[str, Any]:
    return {"op": "access", "vseg": "m", "pattern": "sequential", "stride": "4KiB",
            "accesses": n, "write_ratio": 1.0 if write else 0.0}


def _config(case: str, n: int, machine: Machine | None, measured: bool) -> tuple[dict[str, Any], str]:
    """The scenario of ``case`` up to the end (``measured``) or the start of its measured
    part, and the process whose counts are read."""
    memory = max(256 << 20, ((3 * n * 4096) + (64 << 20) + (1 << 20) - 1) & ~((1 << 20) - 1))
    guest: dict[str, Any] = {"memory": memory, "vcpus": 2}
    who = "p"
    if case in FILE_CASES:
        assert machine is not None
        vseg = {"name": "m", "type": "file", "size": n * 4096, "base": BASE,
                "cached": machine.cached_file,
                "advice": "normal" if case == "file-seq-cold" else "random"}
        guest["disk"] = {"readahead": max(4096, machine.readahead_kb * 1024),
                         "fault_around": max(4096, machine.fault_around_bytes),
                         "latency": "10us", "bandwidth": "4GiB"}
        guest["pagecache"] = {"large_folios": machine.large_folios}
        passes = {"file-random-hot": 2}.get(case, 1) - (0 if measured else 1)
        steps = [_access(n, False) for _ in range(passes)]
    else:
        vseg = {"name": "m", "type": "anon", "size": n * 4096, "base": BASE}
        if case == "anon-first-touch":
            steps = [_access(n, True)] if measured else []
        elif case == "zero-read-write":
            steps = [_access(n, False), _access(n, True)] if measured else []
        else:
            child = [_access(n, case != "fork-child-read")] if (
                measured or case == "fork-parent-rewrite") else []
            child = child or [{"op": "compute", "units": 1}]
            if case == "fork-parent-rewrite" and not measured:
                child = [_access(n, True)]
            steps = [_access(n, True), {"op": "fork", "name": "c", "steps": child},
                     {"op": "wait"}]
            if case == "fork-parent-rewrite":
                steps += [_access(n, True)] if measured else []
            else:
                who = "c"
    steps = steps or [{"op": "compute", "units": 1}]
    proc = {"name": "p", "vsegs": [vseg], "threads": [{"cpu": 0, "steps": steps}]}
    return {"guest": guest, "processes": [proc]}, who


def simulate(case: str, n: int, machine: Machine | None = None) -> tuple[int, int]:
    """(minor, major) faults pfsim counts in the measured part of ``case`` at ``n`` pages."""
    counts = []
    for measured in (True, False):
        data, who = _config(case, n, machine, measured)
        procs = run(data).processes
        counts.append((procs[who]["min_flt"], procs[who]["maj_flt"]))
    return counts[0][0] - counts[1][0], counts[0][1] - counts[1][1]


__all__ = ["BASE", "CASES", "FILE_CASES", "Machine", "simulate"]
