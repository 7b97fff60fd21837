"""``pfsim trace record -- CMD ARGS``: run a program under valgrind's lackey tool and keep its data
accesses as a ``.npy`` array of page numbers, ready for ``pfsim replay`` and ``pfsim mrc``.

valgrind writes lackey's records to a pipe (``--log-fd``) that the streaming lackey reader
(:class:`pfsim.trace.TraceReader`) parses block by block while the program runs; the page
numbers go straight to a temporary file beside the output, whose ``.npy`` header is written
last (the length is known only at the end) before it is renamed over the output: memory stays a
few blocks whatever the trace's length, and a failed recording leaves nothing behind. The
program's own output goes to the terminal as usual.

The file holds 8 bytes per access (``int64`` page numbers, unit page), against about 16 for a
lackey text line: a compact input that needs no parsing when replayed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pfsim.errors import ConfigError, TraceFormatError
from pfsim.replacement import PageIds
from pfsim.trace import DEFAULT_PAGE_SIZE, TraceReader
from pfsim.trace.lackey import DEFAULT_KINDS
from pfsim.tracedriven.output import bytes_text, check_output, size_text, write_atomically

NPY_HEADER_BYTES = 128  # magic, version, length, dict padded with spaces: room for any length


@dataclass
class Recording:
    """What ``record`` wrote: the file, its accesses and distinct pages, the program's status."""

    path: Path
    requests: int
    distinct_pages: int
    page_size: int
    lackey_kinds: str
    exit_status: int


def npy_header(count: int) -> bytes:
    """A ``.npy`` version 1.0 header for ``count`` little-endian ``int64`` values, padded to
    :data:`NPY_HEADER_BYTES` so it can be rewritten in place once the count is known."""
    text = f"{{'descr': '<i8', 'fortran_order': False, 'shape': ({count},), }}"
    text = text.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    header = b"\x93NUMPY\x01\x00" + (len(text)).to_bytes(2, "little") + text.encode("latin1")
    assert len(header) == NPY_HEADER_BYTES and ast.literal_eval(text)["shape"] == (count,)
    return header


def find_valgrind() -> str:
    """The valgrind executable; a ConfigError when it is not installed."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ConfigError(None, "valgrind is not installed (pfsim trace record runs the "
                                "command under valgrind --tool=lackey): install it, e.g. "
                                "'apt-get install valgrind'")
    return valgrind


def record(command: list[str], out: Path, *, lackey_kinds: str | None = None,
           page_size: int = DEFAULT_PAGE_SIZE) -> Recording:
    """Run ``command`` under valgrind lackey and write its accesses' pages to ``out`` (.npy).

    Raises:
        ConfigError: no valgrind, an empty or unknown command, an output that cannot be
            written, or a bad ``lackey_kinds``/``page_size`` (keyed by its flag).
        TraceFormatError: valgrind ran but produced no access (the command could not start).
    """
    if not command:
        raise ConfigError("COMMAND", "expected a command to record, e.g. "
                                     "'pfsim trace record -- ls -R /etc'")
    program = shutil.which(command[0])
    if program is None:
        raise ConfigError("COMMAND", f"{command[0]}: command not found")
    if Path(program).resolve() == out.resolve():  # -o given the program's name without .npy
        raise ConfigError("--out", f"{out} is the program recorded, which would be written over")
    check_output(out, "--out")  # before valgrind runs the command, however long it takes
    valgrind = find_valgrind()
    kinds = lackey_kinds or DEFAULT_KINDS
    facts: dict[str, int] = {}

    def write(handle) -> None:
        read_end, write_end = os.pipe()
        try:
            reader = TraceReader(f"/dev/fd/{read_end}", fmt="lackey", lackey_kinds=kinds,
                                 page_size=page_size, skip_bad_lines=True)  # checks options
            program = subprocess.Popen(
                [valgrind, "--tool=lackey", "--trace-mem=yes", f"--log-fd={write_end}",
                 *command], pass_fds=(write_end,))
        except OSError as exc:
            os.close(read_end)
            raise ConfigError("COMMAND", f"cannot start valgrind: {exc.strerror or exc}") \
                from None
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        handle.write(npy_header(0))
        page_ids = PageIds()
        finished = False
        try:
            for pages in reader:
                page_ids.map(pages)
                handle.write(pages.astype("<i8", copy=False).tobytes())
            finished = True
        except TraceFormatError:
            if reader.requests:
                raise
        finally:
            os.close(read_end)
            if not finished and reader.requests:
                program.kill()
            status = program.wait()
        if reader.requests == 0:
            raise TraceFormatError(f"valgrind recorded no data access of '{' '.join(command)}' "
                                   f"(exit status {status}): did the command start?")
        handle.seek(0)
        handle.write(npy_header(reader.requests))
        facts.update(requests=reader.requests, distinct=page_ids.n_pages, status=status)

    write_atomically(out, "--out", write, binary=True)
    return Recording(path=out, requests=facts["requests"], distinct_pages=facts["distinct"],
                     page_size=page_size, lackey_kinds=kinds, exit_status=facts["status"])


def record_command(command: list[str], out: Path | None, *, lackey_kinds: str | None,
                   page_size: int) -> Recording:
    """``pfsim trace record``: record, then print what was written and how to replay it."""
    if out is None and command:
        out = Path(Path(command[0]).name + ".npy")
    recording = record(command, out if out is not None else Path("trace.npy"),
                       lackey_kinds=lackey_kinds, page_size=page_size)
    import click

    path = recording.path
    click.echo(f"# recorded '{' '.join(command)}' under valgrind lackey (kinds "
               f"{recording.lackey_kinds}): {recording.requests:,} accesses, "
               f"{recording.distinct_pages:,} distinct pages of {size_text(page_size)}")
    if recording.exit_status:
        click.echo(f"# the command exited with status {recording.exit_status}")
    click.echo(f"# wrote {path} ({bytes_text(path.stat().st_size)}); replay it with: pfsim "
               f"replay {path} --policy lru,linux --frames {max(1, recording.distinct_pages // 2)}")
    return recording
