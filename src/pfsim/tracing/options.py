"""``--trace``, ``--trace-format``, ``--trace-window`` and ``--trace-limit``, checked before the
run (a bad value or path is one ``pfsim: error:`` line and exit status 2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pfsim.errors import ConfigError, OutputError, clip
from pfsim.machine.trace_records import TraceRecorder
from pfsim.output import OutputDir
from pfsim.units import parse_time

FORMATS = ("perfetto", "json")
DEFAULT_LIMIT = 2_000_000
"""Records kept by default: 128 MiB of rows at most, a Perfetto file of about 100 MB at most
(about 55 bytes a record; the overcommit example records about 60,000 a simulated second)."""


@dataclass(frozen=True)
class TraceOptions:
    path: Path
    fmt: str
    window: tuple[int, int | None]
    limit: int
    out: OutputDir
    """The trace's directory, checked (and created) before the run."""

    def recorder(self) -> TraceRecorder:
        return TraceRecorder(self.limit, self.window)


def parse_window(text: str) -> tuple[int, int | None]:
    """``2s..3s`` (also ``..3s``, ``2s..``) -> (from_ns, to_ns or None)."""
    if ".." not in text:
        raise ConfigError("--trace-window", f"expected FROM..TO such as 2s..3s, got {text!r}")
    left, _, right = text.partition("..")
    try:
        start = parse_time(left.strip()) if left.strip() else 0
        end = parse_time(right.strip()) if right.strip() else None
    except ValueError as exc:
        raise ConfigError("--trace-window", str(exc)) from None
    if start < 0 or (end is not None and end <= start):
        raise ConfigError("--trace-window", f"{text!r} is empty: TO must be after FROM")
    return start, end


def trace_options(path: Path, fmt: str | None, window: str | None,
                  limit: int | None) -> TraceOptions:
    """Check the trace flags and prepare the trace's directory."""
    if fmt is None:
        fmt = "json" if path.suffix.lower() == ".json" else "perfetto"
    elif fmt not in FORMATS:
        raise ConfigError("--trace-format", f"expected perfetto or json, got {fmt!r}")
    span = parse_window(window) if window is not None else (0, None)
    if limit is not None and limit < 1:
        raise ConfigError("--trace-limit", f"expected a positive number of records, got {limit}")
    if path.name in ("", ".", "..") or str(path).endswith(os.sep):
        raise OutputError(f"--trace {clip(str(path), 120)}: names a directory, not a file")
    if path.is_dir():
        raise OutputError(f"--trace {clip(str(path), 120)}: is a directory, not a file")
    if path.exists() and not path.is_file():  # /dev/null, a pipe: never replaced
        raise OutputError(f"--trace {clip(str(path), 120)}: exists and is not a regular file")
    out = OutputDir(path.parent if str(path.parent) else Path("."), "--trace").prepare()
    return TraceOptions(path, fmt, span, DEFAULT_LIMIT if limit is None else limit, out)
