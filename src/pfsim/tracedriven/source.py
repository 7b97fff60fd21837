"""A trace given as a file or as an array, streamed as chunks of dense page ids.

Both ``pfsim replay`` and ``pfsim mrc`` (and their Python functions) take a path, ``-`` or an
array of page numbers (or byte addresses with ``unit="byte"``); :func:`open_trace` turns any of
them into chunks of page numbers plus the facts a report states (:class:`TraceFacts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pfsim.errors import ConfigError
from pfsim.trace import DEFAULT_PAGE_SIZE, UNITS, TraceReader, check_page_size

ARRAY_CHUNK = 1 << 20


@dataclass
class TraceFacts:
    """What was read: the reader's description, counts and warnings."""

    facts: dict[str, object]
    requests: int = 0
    distinct_pages: int = 0
    warnings: list[str] = field(default_factory=list)
    first_bad: str | None = None


class ArrayTrace:
    """An in-memory trace with the interface of :class:`~pfsim.trace.TraceReader`."""

    def __init__(self, array, unit: str | None, page_size: int) -> None:
        pages = np.asarray(array)
        if pages.ndim != 1 or (pages.size and pages.dtype.kind not in "iu"):
            raise ConfigError("trace", f"expected a 1-D integer array of page numbers, got "
                                       f"{pages.dtype} of shape {pages.shape}")
        if pages.size and pages.dtype.kind == "i" and pages.min() < 0:
            raise ConfigError("trace", f"page numbers must be non-negative, got {pages.min()}")
        if unit is not None and unit not in UNITS:
            raise ConfigError("unit", f"expected page or byte, got {unit!r}")
        self.page_size = check_page_size(page_size)
        self.unit = unit or "page"
        self.pages = pages
        self.requests = 0
        self.warnings: list[str] = []
        self.first_bad = None

    def describe(self) -> dict[str, object]:
        return {"trace": f"array of {self.pages.size:,}", "format": "array",
                "format_from": None, "compression": None,
                "unit": self.unit + (" (unit=)" if self.unit == "byte" else " (default)"),
                "page_size": self.page_size}

    def __iter__(self) -> Iterator[np.ndarray]:
        shift = self.page_size.bit_length() - 1 if self.unit == "byte" else 0
        for start in range(0, self.pages.size, ARRAY_CHUNK):
            chunk = self.pages[start:start + ARRAY_CHUNK].astype(np.int64)
            if shift:
                chunk >>= shift
            self.requests += chunk.size
            yield chunk
        if self.pages.size == 0:
            raise ConfigError("trace", "expected at least one access, got an empty array")


def open_trace(trace, *, fmt: str | None = None, unit: str | None = None,
               page_size: int = DEFAULT_PAGE_SIZE, column: str | None = None,
               lackey_kinds: str | None = None, skip_bad_lines: bool = False,
               progress=None) -> TraceReader | ArrayTrace:
    """A reader for ``trace``: a path or ``-`` (see :class:`~pfsim.trace.TraceReader`), or an
    array / sequence of page numbers (or byte addresses with ``unit="byte"``)."""
    if isinstance(trace, (str, Path)):
        return TraceReader(trace, fmt=fmt, unit=unit, page_size=page_size, column=column,
                           lackey_kinds=lackey_kinds, skip_bad_lines=skip_bad_lines,
                           progress=progress)
    for name, value in (("fmt", fmt), ("column", column), ("lackey_kinds", lackey_kinds)):
        if value is not None:
            raise ConfigError(name, "applies to trace files, not to arrays")
    return ArrayTrace(trace, unit, page_size)
