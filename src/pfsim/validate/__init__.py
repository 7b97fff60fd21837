"""``pfsim validate``: fault counts of small programs on this machine's kernel against pfsim.

Each case of :mod:`pfsim.validate.cases` runs on the real kernel (the probe of
:mod:`pfsim.validate.host`) and in pfsim, at each size; the verdict compares (minor, major):
``exact``, ``within 10 %`` (each count within 10 % of the kernel's), or ``off``.  The run
passes when every anonymous case is exact and every file case is exact or within 10 %; a case
the kernel cannot measure here is skipped with the reason.
"""

from __future__ import annotations

import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pfsim.validate.cases import CASES, FILE_CASES, Machine, simulate
from pfsim.validate.host import (
    DISK_FILESYSTEMS,
    MEMORY_FILESYSTEMS,
    Probe,
    fault_around_bytes,
    kernel_version,
    large_folios,
    mount_of,
    pick_directory,
    readahead_kb,
)

SIZES = (1000, 10_000, 100_000)
EXACT, WITHIN, OFF = "exact", "within 10 %", "off"


@dataclass
class Row:
    case: str
    n: int
    kernel: tuple[int, int] | None = None
    pfsim: tuple[int, int] | None = None
    verdict: str = ""
    skipped: str = ""


@dataclass
class Report:
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        for row in self.rows:
            if row.skipped:
                continue
            if row.verdict == OFF or (row.case not in FILE_CASES and row.verdict != EXACT):
                return False
        return True

    def lines(self) -> list[str]:
        out = list(self.notes)
        out.append("")
        head = f"{'case':<20} {'N':>7}  {'kernel min':>10} {'maj':>7}  {'pfsim min':>10} {'maj':>7}  verdict"
        out += [head, "-" * len(head)]
        for r in self.rows:
            if r.skipped:
                out.append(f"{r.case:<20} {r.n:>7}  skipped: {r.skipped}")
                continue
            assert r.kernel is not None and r.pfsim is not None
            out.append(f"{r.case:<20} {r.n:>7}  {r.kernel[0]:>10} {r.kernel[1]:>7}  "
                       f"{r.pfsim[0]:>10} {r.pfsim[1]:>7}  {r.verdict}")
        out.append("")
        out.append("result: pass (anonymous cases exact, file cases within 10 %)" if self.passed
                   else "result: FAIL (an anonymous case is not exact or a file case is off)")
        return out


def verdict(kernel: tuple[int, int], pfsim: tuple[int, int]) -> str:
    """exact, within 10 % (each of min and maj within 10 % of the kernel's count), or off."""
    if kernel == pfsim:
        return EXACT
    if all(abs(p - k) * 10 <= k for k, p in zip(kernel, pfsim, strict=True)):
        return WITHIN
    return OFF


def _file_setup(directory: Path, report: Report) -> tuple[Machine | None, dict[str, str]]:
    """The file-path parameters of this machine, and the file cases that cannot run here."""
    version = kernel_version()
    mount = mount_of(directory)
    fstype = mount.fstype if mount is not None else "unknown"
    around, read = fault_around_bytes()
    report.notes.append(f"fault-around: {around} bytes"
                        + ("" if read else " (the default; debugfs not readable)"))
    skips: dict[str, str] = {}
    if fstype in MEMORY_FILESYSTEMS:
        huge = re.search(r"huge=(\w+)", mount.options) if mount is not None else None
        if huge and huge.group(1) not in ("never", "deny"):
            reason = f"{fstype} mounted huge={huge.group(1)}: pfsim does not model shmem THP"
            return None, {c: reason for c in FILE_CASES}
        report.notes.append(f"file cases: {fstype} keeps files in memory: the 'cold' read "
                            "finds the file cached (no readahead, order-0 pages)")
        return Machine(0, around, False, True), skips
    if fstype not in DISK_FILESYSTEMS:
        reason = (f"file system {fstype} (not a local disk file system): pfsim models the "
                  "page cache of ext4/XFS-like file systems; pass --dir on one")
        return None, {c: reason for c in FILE_CASES}
    ra = readahead_kb(directory)
    folios = large_folios(fstype, version)
    if ra is None:
        skips["file-seq-cold"] = f"read_ahead_kb of the device under {directory} not found"
        ra = 128
    else:
        report.notes.append(f"readahead: read_ahead_kb = {ra} ({ra // 4} pages)")
    report.notes.append(f"large folios: {'yes' if folios else 'no'} ({fstype} on Linux "
                        f"{version[0]}.{version[1]})")
    if folios and version < (6, 18):
        skips["file-seq-cold"] = (f"Linux {version[0]}.{version[1]} maps a large folio only "
                                  "inside the fault-around window; pfsim follows 6.18")
    return Machine(ra, around, folios, False), skips


def validate(sizes: tuple[int, ...] = SIZES, directory: Path | None = None,
             probe: str = "auto", cases: tuple[str, ...] = CASES) -> Report:
    """Run ``cases`` at ``sizes`` on this kernel and in pfsim."""
    report = Report()
    data_dir, mount = pick_directory(directory)
    report.notes.append(f"kernel: Linux {platform.release()} ({platform.machine()})")
    fs = f"{mount.fstype} ({mount.device}, mounted on {mount.point})" if mount else "unknown"
    report.notes.append(f"test files in: {data_dir} on {fs}")
    with tempfile.TemporaryDirectory(prefix="pfsim-validate-") as work:
        runner = Probe(probe, Path(work))
        report.notes.append(f"probe: {runner.name}, getrusage() around the measured part")
        machine, skips = (None, {})
        if any(c in FILE_CASES for c in cases):
            machine, skips = _file_setup(data_dir, report)
        for case in cases:
            for n in sizes:
                row = Row(case, n)
                report.rows.append(row)
                if case in skips:
                    row.skipped = skips[case]
                    continue
                got = runner.measure(case, n, data_dir)
                if isinstance(got, str):
                    row.skipped = got
                    continue
                row.kernel = got
                row.pfsim = simulate(case, n, machine)
                row.verdict = verdict(row.kernel, row.pfsim)
    return report

__all__ = ["CASES", "EXACT", "OFF", "SIZES", "WITHIN", "Report", "Row", "validate", "verdict"]
