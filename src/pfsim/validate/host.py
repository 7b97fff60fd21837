"""The machine ``pfsim validate`` runs on: its kernel, the file system of the test directory,
the readahead and fault-around sizes, and the probe that measures the kernel.

The probe is probe.c compiled with the first of ``cc``, ``gcc``, ``clang`` found (into a
temporary directory), else pyprobe.py run by this Python; each case runs in a fresh process.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DISK_FILESYSTEMS = frozenset({"ext4", "ext3", "ext2", "xfs", "btrfs", "f2fs", "jfs", "reiserfs",
                              "bcachefs", "zfs"})
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "shm"})


@dataclass(frozen=True)
class Mount:
    fstype: str
    point: str
    options: str
    device: str


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel (``platform.release()``), (0, 0) if unreadable."""
    match = re.match(r"(\d+)\.(\d+)", release if release is not None else platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def mount_of(path: Path, mountinfo: str | None = None) -> Mount | None:
    """The mount holding ``path``: the longest mount point above it in /proc/self/mountinfo."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = str(path.resolve())
    best: Mount | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(tail[0], point, tail[2] if len(tail) > 2 else "", fields[2])
    return best


def readahead_kb(path: Path) -> int | None:
    """read_ahead_kb of the block device holding ``path`` (its disk's queue for a partition),
    None when it has none (overlay, network and memory file systems)."""
    try:
        dev = path.stat().st_dev
    except OSError:
        return None
    major, minor = os.major(dev), os.minor(dev)
    block = Path(f"/sys/dev/block/{major}:{minor}")
    for candidate in (Path(f"/sys/class/bdi/{major}:{minor}/read_ahead_kb"),
                      block / "queue" / "read_ahead_kb", block / ".." / "queue" / "read_ahead_kb"):
        try:
            return int(candidate.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def fault_around_bytes() -> tuple[int, bool]:
    """(fault_around_bytes, whether it was read): debugfs when readable, else the default."""
    try:
        return int(Path("/sys/kernel/debug/fault_around_bytes").read_text().strip()), True
    except (OSError, ValueError):
        return 65536, False


def large_folios(fstype: str, version: tuple[int, int]) -> bool:
    """Does this file system read into large folios on this kernel?  ext4 regular files since
    6.16, XFS since 5.18; the others (btrfs, tmpfs without huge=) use order-0 pages."""
    if fstype == "ext4":
        return version >= (6, 16)
    if fstype == "xfs":
        return version >= (5, 18)
    return False


def pick_directory(explicit: Path | None) -> tuple[Path, Mount | None]:
    """The directory for the test files: ``explicit``, else the first of the temporary
    directory, /var/tmp and the current directory that is writable and on a disk file system
    (else the first writable one)."""
    if explicit is not None:
        return explicit, mount_of(explicit)
    candidates = [Path(tempfile.gettempdir()), Path("/var/tmp"), Path.cwd()]
    usable = [c for c in candidates if c.is_dir() and os.access(c, os.W_OK | os.X_OK)]
    for c in usable:
        mount = mount_of(c)
        if mount is not None and mount.fstype in DISK_FILESYSTEMS:
            return c, mount
    first = usable[0] if usable else candidates[0]
    return first, mount_of(first)


class Probe:
    """Runs one case on this kernel in a fresh process."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.workdir = workdir
        self.kind = kind
        self.binary: Path | None = None
        if kind in ("auto", "c"):
            self.binary = self._compile()
            if self.binary is None and kind == "c":
                raise RuntimeError("no C compiler (cc, gcc or clang) could build the probe")
        self.name = "C (probe.c)" if self.binary is not None else "Python (pyprobe.py)"

    def _compile(self) -> Path | None:
        source = resources.files("pfsim.validate").joinpath("probe.c").read_text()
        src = self.workdir / "probe.c"
        src.write_text(source)
        out = self.workdir / "probe"
        for cc in ("cc", "gcc", "clang"):
            exe = shutil.which(cc)
            if exe is None:
                continue
            done = subprocess.run([exe, "-O2", "-o", str(out), str(src)], capture_output=True,
                                  timeout=120, check=False)
            if done.returncode == 0:
                return out
        return None

    def measure(self, case: str, n: int, data_dir: Path) -> tuple[int, int] | str:
        """(minor, major) faults of ``case`` at ``n`` pages, or why it was skipped."""
        path = str(data_dir / f".pfsim-validate-{os.getpid()}-{case}-{n}")
        if self.binary is not None:
            argv = [str(self.binary), case, str(n), path]
        else:
            argv = [sys.executable, "-m", "pfsim.validate.pyprobe", case, str(n), path]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the probe did not run: {exc}"
        finally:
            if os.path.exists(path):
                os.unlink(path)
        words = done.stdout.split()
        if done.returncode != 0 or not words:
            err = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"the probe failed (status {done.returncode}): {err}"
        if words[0] == "skip":
            return " ".join(words[1:])
        return int(words[0]), int(words[1])


__all__ = ["DISK_FILESYSTEMS", "MEMORY_FILESYSTEMS", "Mount", "Probe", "fault_around_bytes",
           "kernel_version", "large_folios", "mount_of", "pick_directory", "readahead_kb"]
