"""The Python probe of ``pfsim validate`` (used when no C compiler is found): the cases of
probe.c with ``mmap`` and ``resource.getrusage``, run as ``python -m pfsim.validate.pyprobe
CASE NPAGES [FILE]``; prints ``min maj`` or ``skip REASON``.

Page reads iterate a strided memoryview (``sum``: small ints are cached, nothing is
allocated per page); page writes assign a strided slice from a buffer made beforehand, after
one warm-up assignment of the same size elsewhere, again after fork (CPython copies through a
temporary of that size).  A few faults of the interpreter itself may still land in the measured part; the C
probe has none.
"""

from __future__ import annotations

import mmap
import os
import resource
import sys

PG = 4096


def _now() -> tuple[int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_majflt


def _anon(n: int) -> mmap.mmap:
    m = mmap.mmap(-1, n * PG, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    return m


def _cold_file(path: str, n: int) -> int:
    block = b"x" * (1 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = n * PG
        while left > 0:
            k = min(left, len(block))
            os.write(fd, block[:k])
            left -= k
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return os.open(path, os.O_RDONLY)


def measure(case: str, n: int, path: str | None) -> tuple[int, int]:
    ones = b"\x01" * n
    scratch = bytearray(2 * n)

    def warm() -> None:  # CPython copies into a strided view through a temporary of n bytes
        memoryview(scratch)[::2] = ones
        _now()

    warm()
    if case.startswith(("anon", "zero", "fork")):
        m = _anon(n)
        view = memoryview(m)
        pages = view[::PG]
        if case == "anon-first-touch":
            a = _now()
            pages[:] = ones
            b = _now()
        elif case == "zero-read-write":
            a = _now()
            sum(pages)
            pages[:] = ones
            b = _now()
        else:
            pages[:] = ones
            child_reads = case == "fork-child-read"
            rd, wr = os.pipe()
            pid = os.fork()
            if pid == 0:
                warm()  # after fork the heap is copy-on-write: write it before measuring
                a = _now()
                if child_reads:
                    sum(pages)
                else:
                    pages[:] = ones
                b = _now()
                os.write(wr, f"{b[0] - a[0]} {b[1] - a[1]}".encode())
                os._exit(0)
            got = os.read(rd, 100).decode().split()
            os.waitpid(pid, 0)
            a, b = (0, 0), (int(got[0]), int(got[1]))
            if case == "fork-parent-rewrite":
                warm()
                a = _now()
                pages[:] = ones
                b = _now()
        return b[0] - a[0], b[1] - a[1]
    assert path is not None
    fd = _cold_file(path, n)
    try:
        m = mmap.mmap(fd, n * PG, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        if case != "file-seq-cold":
            m.madvise(mmap.MADV_RANDOM)
        pages = memoryview(m)[::PG]
        a = _now()
        sum(pages)
        b = _now()
        if case == "file-random-hot":
            a = _now()
            sum(pages)
            b = _now()
        return b[0] - a[0], b[1] - a[1]
    finally:
        os.close(fd)
        os.unlink(path)


def main(argv: list[str]) -> int:
    case, n = argv[0], int(argv[1])
    path = argv[2] if len(argv) > 2 else None
    try:
        minflt, majflt = measure(case, n, path)
    except OSError as exc:
        print(f"skip {exc.strerror or exc}")
        return 0
    print(f"{minflt} {majflt}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
