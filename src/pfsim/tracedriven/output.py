"""What ``pfsim replay`` and ``pfsim mrc`` print and write: a header stating how the trace was
read, one row per (policy, frames), CSV files, and a progress line on a terminal."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from pfsim.errors import ConfigError
from pfsim.tracedriven.source import TraceFacts


def size_text(size: int) -> str:
    """``4KiB``, ``2MiB``, ``1GiB`` (or bytes) for a power-of-two size."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def header_lines(trace: TraceFacts) -> list[str]:
    """``# ...`` lines: format and where it came from, unit, page size, counts, skipped lines."""
    facts = trace.facts
    origin = f" (from the {facts['format_from']})" if facts.get("format_from") else ""
    compression = f", {facts['compression']}" if facts.get("compression") else ""
    kinds = f", lackey kinds {facts['lackey_kinds']}" if "lackey_kinds" in facts else ""
    lines = [f"# trace {facts['trace']}: format {facts['format']}{origin}{compression}{kinds}",
             f"# unit {facts['unit']}, page size {size_text(int(facts['page_size']))}, "
             f"{trace.requests:,} requests, {trace.distinct_pages:,} distinct pages"]
    if "bad_lines" in facts:
        first = f" (first: {trace.first_bad})" if trace.first_bad else ""
        lines.append(f"# skipped {facts['bad_lines']:,} bad lines{first}")
    return lines


def row_text(row: dict) -> str:
    """``key=value`` pairs, floats with 6 decimals."""
    return " ".join(f"{key}={value:.6f}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in row.items())


def bytes_text(size: int) -> str:
    """``7.0 MiB``-style size."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"


def mrc_summary(curve) -> list[str]:
    """The header lines ``pfsim mrc`` adds: footprint, compulsory misses, sampling."""
    estimate = " (estimated)" if curve.sample_rate < 1 else ""
    lines = [f"# footprint {curve.footprint:,} pages "
             f"({bytes_text(curve.footprint * curve.page_size)}){estimate}, compulsory misses "
             f"{curve.compulsory_misses:,}{estimate}"]
    if curve.sample_rate < 1:
        lines.append(f"# SHARDS sampling at rate {curve.sample_rate:g}: faults are estimates")
    return lines


def echo_rows(rows: Iterable[dict], trace: TraceFacts, as_json: bool,
              extra: list[str] = ()) -> None:
    """Print the header (stderr with ``--json``) and the rows, warnings on stderr."""
    for warning in trace.warnings:
        print(f"pfsim: warning: {warning}", file=sys.stderr)
    for line in [*header_lines(trace), *extra]:
        print(line, file=sys.stderr if as_json else sys.stdout)
    for row in rows:
        print(json.dumps(row) if as_json else row_text(row))


IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff",
                  ".webp")
"""Image files ``--plot`` writes (matplotlib's Agg back end, with Pillow for jpg, tif, webp)."""


def check_output(path: Path, flag: str, trace: str | None = None) -> None:
    """Fail early (before a long replay) if ``path`` cannot be written: a file is created and
    removed beside it, since ``access(W_OK)`` says yes to root in read-only places (/proc,
    a read-only mount).  ``path`` may not be the ``trace`` being read."""
    parent = path.parent if str(path.parent) else Path(".")
    if trace not in (None, "-") and Path(trace).resolve() == path.resolve():
        raise ConfigError(flag, f"{path} is the trace TRACE, which would be written over")
    if path.is_dir():
        raise ConfigError(flag, f"{path} is a directory, expected a file name")
    if not parent.is_dir():
        raise ConfigError(flag, f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(flag, f"directory {parent} is not writable")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise ConfigError(flag, f"cannot create a file in {parent} "
                                f"({exc.strerror or exc})") from None


def check_image_output(path: Path, flag: str, trace: str | None = None) -> None:
    """:func:`check_output` for an image whose type its suffix names."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        names = [f"{suffix}" for suffix in IMAGE_SUFFIXES]
        raise ConfigError(flag, f"{path}: the file name must end in {', '.join(names[:-1])} "
                                f"or {names[-1]}")
    check_output(path, flag, trace)


def write_atomically(path: Path, flag: str, write, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``
    (nothing half-written is left if anything fails)."""
    check_output(path, flag)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent)
                                    else ".")
    except OSError as exc:
        raise ConfigError(flag, f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) \
                as handle:
            write(handle)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ConfigError(flag, f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_csv(rows: list[dict], path: Path, flag: str = "--csv") -> None:
    """The rows as a CSV file with a header row."""
    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(path, flag, write)


class TerminalProgress:
    """A progress line on stderr, redrawn at most twice a second, erased at the end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int | None, requests: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        share = f" {100 * done / total:3.0f} % of {total / 1e6:,.0f} MB," if total else \
            f" {done / 1e6:,.0f} MB,"
        sys.stderr.write(f"\r{self.name}:{share} {requests / 1e6:,.1f} M requests "
                         f"({requests / elapsed / 1e6:,.1f} M/s)\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def terminal_progress(name: str) -> TerminalProgress | None:
    """A progress line if stderr is a terminal, else None."""
    return TerminalProgress(name) if sys.stderr.isatty() else None
