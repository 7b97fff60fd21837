"""Stream a trace of any format as chunks of page numbers, in bounded memory.

:class:`TraceReader` opens the trace (:mod:`pfsim.trace.source`), decides its format
(:mod:`pfsim.trace.formats`), and yields ``int64`` page numbers one block at a time: text
formats are read 4 MiB at a time and parsed up to the last complete line by a compiled parser,
binary formats 1 M records at a time. Memory is a few block-sized buffers whatever the trace's
length. The yielded array is reused for the next block: use it (or copy it) before asking for
the next one.

After the iteration the reader tells what it read: ``requests``, ``lines``, ``bad_lines``
(with ``skip_bad_lines``), ``first_bad`` (``file:line: ...`` of the first one), ``format``, the
unit it applied (:meth:`TraceReader.describe`), and ``warnings``: one today, when numbers read
as page numbers look like byte addresses (more than half are multiples of 8, and they reach
beyond the page numbers of a 48-bit address space or all lie above 2**20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pfsim.errors import ConfigError, TraceFormatError
from pfsim.trace import binary, formats, lackey, parsers, perf
from pfsim.trace.parsers import ERR_FIELDS, ERR_SPAN
from pfsim.trace.source import STDIN, Source, open_source

BLOCK_BYTES = 4 << 20
MAX_LINE_BYTES = 64 << 20
DEFAULT_PAGE_SIZE = 4096
_CSV_UNITS = {"page": "page", "vpn": "page", "obj_id": "page", "addr": "byte",
              "address": "byte"}
_FAULTS_WORD = np.frombuffer(b"faults", dtype=np.uint8)
_ADDRESS_WORD = np.frombuffer(b"address=0x", dtype=np.uint8)
_EXAMPLES = {
    "lackey": "a lackey record such as ' L 04222cac,8'",
    "pinatrace": "a pinatrace line such as '0x7f3c1a2b4c10: R 0x7ffd5e6f7a88'",
    "perf": "a perf script page-fault sample such as "
            "'ls 2389 5559.585075: page-faults: 55c4cb63d5c0'",
}

Progress = Callable[[int, "int | None", int], None]
"""Called after each block with (bytes of the file read, file size or None, requests)."""


class TraceReader:
    """A trace to stream: iterate it for chunks of ``int64`` page parsers.

    Args:
        trace: a path, or ``-`` for standard input (plain, gzip or zstd).
        fmt: one of :data:`~pfsim.trace.formats.FORMATS`; None detects it.
        unit: ``page`` or ``byte`` for the numbers of text, csv, npy and oracleGeneral
            traces; None keeps the format's default (stated by :meth:`describe`).
        page_size: bytes per page (a power of two): byte addresses become
            ``address // page_size``.
        column: csv only: the column holding the accesses, by header name or 1-based number.
        lackey_kinds: lackey only: the record kinds to keep, letters of ``ILSM``
            (default :data:`~pfsim.trace.lackey.DEFAULT_KINDS`).
        skip_bad_lines: count and skip lines that do not parse instead of failing.
        progress: see :data:`Progress`.

    Raises (on construction):
        ConfigError: a bad option, keyed by its command-line flag (``--format``...).
    """

    def __init__(self, trace: str | Path, *, fmt: str | None = None, unit: str | None = None,
                 page_size: int = DEFAULT_PAGE_SIZE, column: str | None = None,
                 lackey_kinds: str | None = None, skip_bad_lines: bool = False,
                 progress: Progress | None = None, block_bytes: int = BLOCK_BYTES) -> None:
        self.trace = trace
        self.name = str(trace)
        self.format_given = fmt is not None
        if fmt is not None:
            canonical = formats.canonical_format(fmt)
            if canonical is None:
                raise ConfigError("--format", f"unknown trace format {fmt!r}; valid formats: "
                                              f"{formats.format_names()}")
            fmt = canonical
        self.format = fmt
        if unit is not None and unit not in formats.UNITS:
            raise ConfigError("--unit", f"expected page or byte, got {unit!r}")
        self.unit = unit
        self.page_size = check_page_size(page_size)
        self.page_shift = self.page_size.bit_length() - 1
        self.column = column
        self.lackey_kinds = lackey_kinds
        if lackey_kinds is not None:
            try:
                self._kinds_mask = lackey.kinds_mask(lackey_kinds)
            except ValueError as exc:
                raise ConfigError("--lackey-kinds", str(exc)) from None
        else:
            self._kinds_mask = lackey.kinds_mask(lackey.DEFAULT_KINDS)
        self.skip_bad_lines = skip_bad_lines
        self.progress = progress
        self.block_bytes = block_bytes
        self.format_origin = "--format" if fmt is not None else None
        self.compression: str | None = None
        self.unit_text = ""
        self.requests = 0
        self.lines = 0
        self.bad_lines = 0
        self.first_bad: str | None = None
        self.warnings: list[str] = []
        self._stats = parsers.new_stats()
        self._stats_decided = False

    # ---- what was read -------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """The facts a report states about the trace (after or during the iteration)."""
        facts: dict[str, object] = {
            "trace": self.name,
            "format": self.format,
            "format_from": self.format_origin,
            "compression": self.compression,
            "unit": self.unit_text,
            "page_size": self.page_size,
        }
        if self.format == "lackey":
            facts["lackey_kinds"] = self.lackey_kinds or lackey.DEFAULT_KINDS
        if self.skip_bad_lines:
            facts["bad_lines"] = self.bad_lines
        return facts

    def detect(self) -> str:
        """The format the reader will use (opens the trace and looks at its start)."""
        if self.format is None:
            source = open_source(self.trace)
            try:
                self._decide_format(source)
            finally:
                source.close()
        return str(self.format)

    # ---- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        source = open_source(self.trace)
        try:
            self.compression = source.compression
            self._decide_format(source)
            self._check_options()
            chunks = self._binary(source) if self.format in formats.BINARY_FORMATS \
                else self._lines(source)
            for pages in chunks:
                if pages.size:
                    self.requests += int(pages.size)
                    yield pages
                if self.progress is not None:
                    self.progress(source.position(), source.size, self.requests)
            self._decide_units(final=True)
            if self.requests == 0:
                raise TraceFormatError(f"{self.name}: expected at least one access, found none")
        finally:
            source.close()

    def _decide_format(self, source: Source) -> None:
        if self.format is not None:
            return
        by_suffix = formats.suffix_format(self.name) if self.name != STDIN else None
        if by_suffix is not None:
            self.format, self.format_origin = by_suffix, "file name"
            return
        sniffed = formats.sniff_format(source.peek(1 << 16))
        if sniffed is not None:
            self.format, self.format_origin = sniffed, "content"
        else:
            self.format, self.format_origin = formats.guess_format(self.name), "file name"

    def _check_options(self) -> None:
        fmt = self.format
        if self.column is not None and fmt != "csv":
            raise ConfigError("--column", f"applies to csv traces; {self.name} is read as {fmt}")
        if self.lackey_kinds is not None and fmt != "lackey":
            raise ConfigError("--lackey-kinds",
                              f"applies to lackey traces; {self.name} is read as {fmt}")
        if fmt in formats.ADDRESS_FORMATS:
            if self.unit == "page":
                raise ConfigError("--unit", f"{fmt} traces hold byte addresses; "
                                            f"--unit page does not apply")
            self.unit_text = "byte (addresses of the format)"

    # ---- binary formats ------------------------------------------------------------------

    def _binary(self, source: Source) -> Iterator[np.ndarray]:
        shift = self.page_shift if self.unit == "byte" else 0
        default = self.unit is None
        self.unit_text = f"{self.unit or 'page'}" + (" (default of the format)" if default
                                                     else " (--unit)")
        if self.format == "npy":
            dtype, count = binary.npy_dtype(source)
            records = binary.iter_records(source, dtype, None, count, shift, "element")
        else:
            records = binary.iter_records(source, binary.ORACLE_GENERAL, "obj_id", None, shift,
                                          "record")
        for pages in records:
            if default:
                self._note_numbers(pages)
            yield pages

    def _note_numbers(self, pages: np.ndarray) -> None:
        if self._stats_decided or pages.size == 0:
            return
        stats = self._stats
        stats[parsers.STAT_COUNT] += pages.size
        stats[parsers.STAT_MULT8] += int(np.count_nonzero((pages & 7) == 0))
        stats[parsers.STAT_MIN] = min(int(stats[parsers.STAT_MIN]), int(pages.min()))
        stats[parsers.STAT_MAX] = max(int(stats[parsers.STAT_MAX]), int(pages.max()))
        self._decide_units(final=False)

    def _decide_units(self, final: bool) -> None:
        """Warn once if numbers read as page numbers look like byte addresses."""
        count, mult8, low, high = (int(x) for x in self._stats)
        if self._stats_decided or (count < (1 << 20) and not final) or count < 8:
            return
        self._stats_decided = True
        vpn_limit = 1 << (48 - self.page_shift)
        if 2 * mult8 > count and (high >= vpn_limit or low >= 1 << 20):
            self.warnings.append(
                f"{self.name}: the numbers read as page numbers look like byte addresses "
                f"({100 * mult8 / count:.0f} % are multiples of 8, from {low:,} to {high:,}); "
                f"pass --unit byte if they are addresses, or --unit page to keep them as pages")

    # ---- line formats --------------------------------------------------------------------

    def _lines(self, source: Source) -> Iterator[np.ndarray]:
        parse, line_base, describe_error = self._line_parser(source)
        buffer = bytearray(self.block_bytes)
        out = np.empty(len(buffer) // 2 + 2, dtype=np.int64)
        carry = 0
        self.lines = line_base
        while True:
            filled = carry + source.read_into(memoryview(buffer)[carry:])
            at_end = filled < len(buffer)
            end = filled if at_end else buffer.rfind(b"\n", 0, filled) + 1
            if end == 0 and not at_end:  # one line fills the buffer: make room for it
                if len(buffer) >= MAX_LINE_BYTES:
                    raise TraceFormatError(f"{self.name}:{self.lines + 1}: expected lines of "
                                           f"at most {MAX_LINE_BYTES >> 20} MiB")
                buffer = buffer + bytearray(len(buffer))
                out = np.empty(len(buffer) // 2 + 2, dtype=np.int64)
                carry = filled
                continue
            view = np.frombuffer(buffer, dtype=np.uint8)
            count, lines, first_bad, error, n_bad = parse(view, end, out)
            if first_bad and self.first_bad is None:
                self.first_bad = self._bad_line_message(view, end, first_bad, error,
                                                        describe_error)
                if not self.skip_bad_lines:
                    raise TraceFormatError(self.first_bad)
            self.bad_lines += n_bad
            self.lines += lines
            del view
            yield out[:count]
            if at_end:
                return
            buffer[:filled - end] = buffer[end:filled]
            carry = filled - end

    def _line_parser(self, source: Source):
        """(parse(buf, end, out), lines consumed before the first block, error wording)."""
        fmt, shift, skip = self.format, self.page_shift, self.skip_bad_lines
        if fmt == "lackey":
            mask = self._kinds_mask
            return (lambda buf, end, out: parsers.parse_lackey(buf, end, mask, shift, skip, out),
                    0, lambda error: f"an access of at most {self.page_size} bytes"
                    if error == ERR_SPAN else _EXAMPLES["lackey"])
        if fmt == "pinatrace":
            return (lambda buf, end, out: parsers.parse_pinatrace(buf, end, shift, skip, out),
                    0, lambda error: _EXAMPLES["pinatrace"])
        if fmt == "perf":
            self._check_perf_layout(source)
            return (lambda buf, end, out: parsers.parse_perf(buf, end, shift, skip, out,
                                                          _FAULTS_WORD, _ADDRESS_WORD),
                    0, lambda error: _EXAMPLES["perf"])
        delimiter, column, unit, column_name, line_base = 0, 0, self.unit, None, 0
        origin = "--unit" if unit is not None else "default of text"
        if fmt == "csv":
            delimiter = ord(",")
            column, column_name, line_base = self._csv_layout(source)
            if unit is None and column_name is not None and column_name in _CSV_UNITS:
                unit, origin = _CSV_UNITS[column_name], f"column {column_name!r}"
            elif unit is None and column_name is not None and "addr" in column_name:
                unit, origin = "byte", f"column {column_name!r}"
            elif unit is None:
                origin = "default of csv"
        if unit is None:
            shift_dec, shift_hex = 0, shift
            self.unit_text = f"page for decimal numbers, byte for 0x numbers ({origin})"
        else:
            shift_dec = shift_hex = shift if unit == "byte" else 0
            self.unit_text = f"{unit} ({origin})"
        if shift_dec != 0 or self.unit is not None:
            self._stats_decided = True  # the unit is stated: no warning
        stats = self._stats

        def parse(buf, end, out):
            if column == 0 and shift_dec == 0:
                count, lines = parsers.parse_plain_decimal(buf, end, out, stats)
                if count >= 0:
                    self._decide_units(final=False)
                    return count, lines, 0, 0, 0
            result = parsers.parse_numbers(buf, end, delimiter, column, shift_dec, shift_hex,
                                           skip, out, stats)
            self._decide_units(final=False)
            return result

        def describe_error(error: int) -> str:
            if error == ERR_FIELDS:
                return f"at least {column + 1} comma-separated fields (column {column_name!r})"
            if column_name is not None:
                return f"a number in column {column_name!r}"
            if unit is None:
                return "a page number or 0x address"
            return f"a decimal or 0x number ({unit})"

        return parse, line_base, describe_error

    def _csv_layout(self, source: Source) -> tuple[int, str | None, int]:
        """(column index, column name, header lines) of a CSV trace; drops the header."""
        head = source.peek(1 << 16)
        offset, line_no = 0, 1
        while offset < len(head):
            end = head.find(b"\n", offset)
            end = len(head) if end < 0 else end
            content = head[offset:end].decode("utf-8", "replace").split("#", 1)[0].strip()
            if content:
                fields = [field.strip().strip("\"'").lower() for field in content.split(",")]
                has_header = not all(formats.line_format(field) == "text" for field in fields)
                if self.column is not None:
                    return self._named_column(fields, has_header, source, end, line_no)
                if not has_header:
                    return 0, None, 0
                for name in _CSV_UNITS:
                    if name in fields:
                        source.head = source.head[end + 1:]
                        return fields.index(name), name, line_no
                raise TraceFormatError(
                    f"{self.name}:{line_no}: expected a header with a column named "
                    f"{', '.join(_CSV_UNITS)}, got {content[:60]!r} (name the column with "
                    f"--column NAME)")
            offset, line_no = end + 1, line_no + 1
        return 0, None, 0

    def _named_column(self, fields: list[str], has_header: bool, source: Source, end: int,
                      line_no: int) -> tuple[int, str | None, int]:
        wanted = str(self.column).strip().lower()
        skip = line_no if has_header else 0
        if has_header:
            source.head = source.head[end + 1:]
        if wanted.isdigit():
            index = int(wanted) - 1
            if index < 0:
                raise ConfigError("--column", "column numbers start at 1")
            return index, fields[index] if has_header and index < len(fields) else None, skip
        if not has_header:
            raise ConfigError("--column", f"{self.name} has no header row to find {wanted!r} "
                                          f"in; give the column's number (1 = first)")
        if wanted not in fields:
            raise ConfigError("--column", f"no column {wanted!r} in the header of {self.name}; "
                                          f"columns: {', '.join(fields)}")
        return fields.index(wanted), wanted, skip

    def _check_perf_layout(self, source: Source) -> None:
        for line in source.peek(1 << 16).decode("latin-1").splitlines()[:200]:
            if perf.DEFAULT_LAYOUT.search(line):
                raise TraceFormatError(
                    f"{self.name}: this perf script output shows the instruction pointer, not "
                    f"the faulting address; print it with: perf script -F "
                    f"comm,tid,time,event,addr (after perf record -e page-faults -c 1 -d)")
            if perf.PERF_SAMPLE.search(line):
                return

    def _bad_line_message(self, view: np.ndarray, end: int, line: int, error: int,
                          describe_error) -> str:
        text = _line_text(view, end, line)
        if self.format in ("text", "csv"):
            text = text.split("#", 1)[0].strip() or text
        where = f"{self.name}:{self.lines + line}"
        shown = text if len(text) <= 60 else text[:57] + "..."
        expected = describe_error(error)
        guess = formats.line_format(text)
        if guess != self.format and (guess in formats.ADDRESS_FORMATS or (
                guess == "csv" and self.format == "text")):
            hint = f"this line looks like {guess} output: try --format {guess}"
        elif self.skip_bad_lines:
            hint = ""
        else:
            hint = "--skip-bad-lines skips lines that are not accesses, such as a program's " \
                   "own output"
        return f"{where}: expected {expected}, got {shown!r}" + (f" ({hint})" if hint else "")


def check_page_size(page_size: int) -> int:
    """``page_size`` if it is a power of two from 512 B to 1 GiB, else a ConfigError."""
    size = int(page_size)
    if size < 512 or size > 1 << 30 or size & (size - 1):
        raise ConfigError("--page-size", f"expected a power of two from 512B to 1GiB "
                                         f"(4KiB, 2MiB, 1GiB...), got {page_size}")
    return size


def _line_text(view: np.ndarray, end: int, line: int) -> str:
    """Text of line ``line`` (1-based) of ``view[:end]``, stripped."""
    data = view[:end].tobytes()
    start = 0
    for _ in range(line - 1):
        start = data.index(b"\n", start) + 1
    stop = data.find(b"\n", start)
    stop = len(data) if stop < 0 else stop
    return data[start:stop].decode("utf-8", "replace").strip()


def read_trace(trace: str | Path, fmt: str | None = None, **options) -> np.ndarray:
    """The whole trace as one ``int64`` array of page numbers (see :class:`TraceReader`)."""
    chunks = [chunk.copy() for chunk in TraceReader(trace, fmt=fmt, **options)]
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
