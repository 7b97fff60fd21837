"""Read a memory trace into a numpy ``int64`` array of 4 KiB page numbers, in access order.

Formats (``fmt``):

- ``text``: one access per line, a decimal page number or a ``0x`` hex byte address
  (page = address >> 12). Blank lines and ``#`` comments are skipped.
- ``csv``: comma-separated values. A header row may name the column to read: ``page`` or
  ``vpn`` (page numbers, read as they are) or ``addr`` / ``address`` (byte addresses, >> 12).
  Without a header the first column is read with the ``text`` rules.
- ``npy``: a 1-D array of non-negative integer page numbers (``numpy.save``).
- ``lackey``: valgrind ``--tool=lackey --trace-mem=yes`` output. Every ``I``/``L``/``S``/``M``
  record is one access to page address >> 12; an access whose last byte lies in the next
  page counts both pages, in order. ``==pid==`` and ``--pid--`` lines from valgrind itself
  are skipped.

Without ``fmt`` the format comes from the file suffix (``.txt``/``.trace``, ``.csv``,
``.npy``, ``.lackey``/``.out``), else from the first meaningful lines of the file.

NOTE: perf: the text formats are parsed by one compiled pass over the file's bytes: per 10 M
lines about 0.1 s for bare decimals and 0.5-0.8 s for hex addresses, CSV or lackey records,
where ``str.split`` plus ``int`` conversion takes about 4 s. Only when that pass stops at a
bad line does Python look at the line, to write the error message.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from numba import njit

from pfsim.errors import ConfigError, TraceFormatError
from pfsim.units import PAGE_SHIFT

FORMATS = ("text", "csv", "npy", "lackey")

_SUFFIX_FORMATS = {
    ".txt": "text",
    ".trace": "text",
    ".csv": "csv",
    ".npy": "npy",
    ".lackey": "lackey",
    ".out": "lackey",
}

# How a number becomes a page number: hex is an address and decimal a page (text rules),
# always an address, or always a page.
_MODE_AUTO, _MODE_ADDRESS, _MODE_PAGE = 0, 1, 2
_CSV_COLUMNS = {"page": _MODE_PAGE, "vpn": _MODE_PAGE, "addr": _MODE_ADDRESS,
                "address": _MODE_ADDRESS}

# Why the compiled pass stopped.
_ERR_NUMBER, _ERR_FIELDS, _ERR_RECORD, _ERR_SPAN = 1, 2, 3, 4

_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)$")
_LACKEY_RECORD = re.compile(r"^ ?[ILSM] +[0-9a-fA-F]+,[0-9]+\s*$")
_VALGRIND_BANNER = re.compile(r"^(==|--)[0-9]+(==|--)")
_NPY_MAGIC = b"\x93NUMPY"
_INT64_MAX = np.iinfo(np.int64).max


# ---- compiled byte parsers ------------------------------------------------------------------
# Each parser makes one pass over the bytes and returns (count, bad line number or 0, error).
# NOTE: perf: byte classes come from 256-entry tables; chains of comparisons ran 2.4x slower.

_IS_BLANK = np.zeros(256, dtype=np.bool_)  # whitespace other than newline
_IS_BLANK[list(b" \t\r\x0b\x0c")] = True
_ENDS_TOKEN = _IS_BLANK.copy()  # what ends a number: whitespace, newline, '#', ','
_ENDS_TOKEN[list(b"\n#,")] = True
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)  # 0-15 for a hex digit, 255 otherwise
for _value, _digit in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_digit] = _HEX_VALUE[ord(chr(_digit).upper())] = _value


@njit(cache=True)
def _skip_line(buf, pos):
    """Position of the newline ending the line at ``pos`` (or the end of ``buf``)."""
    while pos < buf.size and buf[pos] != 10:
        pos += 1
    return pos


@njit(cache=True)
def _scan_number(buf, pos, mode):
    """(page number or -1 if malformed, position after the token) of the token at ``pos``."""
    size = buf.size
    is_hex = pos + 1 < size and buf[pos] == 48 and (buf[pos + 1] | 32) == 120  # "0x" or "0X"
    value = np.uint64(0)
    digits = 0
    bad = False
    if is_hex:
        pos += 2
        while pos < size and not _ENDS_TOKEN[buf[pos]]:
            nibble = _HEX_VALUE[buf[pos]]
            bad |= nibble > 15
            value = (value << np.uint64(4)) | np.uint64(nibble & 15)
            digits += 1
            pos += 1
        valid = not bad and 0 < digits <= 16
    else:
        while pos < size and not _ENDS_TOKEN[buf[pos]]:
            digit = np.uint8(buf[pos] - np.uint8(48))  # wraps above 9 for non-digits
            bad |= digit > 9
            value = value * np.uint64(10) + np.uint64(digit)
            digits += 1
            pos += 1
        valid = not bad and 0 < digits <= 19  # 19 decimal digits always fit in 64 bits
    if mode == _MODE_ADDRESS or (mode == _MODE_AUTO and is_hex):
        value = value >> np.uint64(PAGE_SHIFT)
    if not valid or value > np.uint64(_INT64_MAX):
        return np.int64(-1), pos
    return np.int64(value), pos


@njit(cache=True)
def _parse_plain_decimal(buf, start, out):
    """Fast path: parse lines that are all bare decimal numbers; -1 at anything else."""
    count = 0
    value = 0
    length = 0
    for i in range(start, buf.size):
        byte = buf[i]
        if byte == 10:
            if length == 0 or length > 18:
                return -1
            out[count] = value
            count += 1
            value = 0
            length = 0
        else:
            digit = np.int64(byte) - 48
            if digit < 0 or digit > 9:
                return -1
            value = value * 10 + digit
            length += 1
    if length > 18:
        return -1
    if length > 0:
        out[count] = value
        count += 1
    return count


@njit(cache=True)
def _parse_lines(buf, pos, line, delimiter, column, mode, out):
    """Parse one number per line, from byte ``pos`` (on line ``line``), into ``out``.

    ``delimiter`` 0 means the line holds only the number; otherwise the number is field
    ``column`` (0-based) of the ``delimiter``-separated line. ``#`` starts a comment.
    """
    size = buf.size
    count = 0
    while pos < size:
        while pos < size and _IS_BLANK[buf[pos]]:
            pos += 1
        if pos < size and buf[pos] != 10 and buf[pos] != 35:
            for _ in range(column):
                while pos < size and buf[pos] != delimiter and buf[pos] != 10 and buf[pos] != 35:
                    pos += 1
                if pos == size or buf[pos] != delimiter:
                    return count, line, _ERR_FIELDS
                pos += 1
            while pos < size and _IS_BLANK[buf[pos]]:
                pos += 1
            page, pos = _scan_number(buf, pos, mode)
            while pos < size and _IS_BLANK[buf[pos]]:
                pos += 1
            at_end = pos == size or buf[pos] == 10 or buf[pos] == 35
            if page < 0 or not (at_end or (delimiter != 0 and buf[pos] == delimiter)):
                return count, line, _ERR_NUMBER
            out[count] = page
            count += 1
        pos = _skip_line(buf, pos) + 1
        line += 1
    return count, 0, 0


@njit(cache=True)
def _parse_lackey(buf, out):
    """Parse lackey records (``" L 04222cac,8"``) into pages; a straddling access gives two."""
    size = buf.size
    count = 0
    line = 1
    pos = 0
    while pos < size:
        first = buf[pos]
        banner = pos + 1 < size and (first == 61 or first == 45) and buf[pos + 1] == first
        while not banner and pos < size and _IS_BLANK[buf[pos]]:
            pos += 1
        if not banner and pos < size and buf[pos] != 10:
            op = buf[pos]  # 'I', 'L', 'S' or 'M', then at least one space
            if not (op == 73 or op == 76 or op == 83 or op == 77):
                return count, line, _ERR_RECORD
            pos += 1
            if pos == size or buf[pos] != 32:
                return count, line, _ERR_RECORD
            while pos < size and buf[pos] == 32:
                pos += 1
            address = np.uint64(0)
            digits = 0
            while pos < size and _HEX_VALUE[buf[pos]] < 16:
                address = (address << np.uint64(4)) | np.uint64(_HEX_VALUE[buf[pos]])
                digits += 1
                pos += 1
            if digits == 0 or digits > 16 or pos == size or buf[pos] != 44:
                return count, line, _ERR_RECORD
            pos += 1  # the comma
            length = 0
            digits = 0
            while pos < size and 48 <= buf[pos] <= 57 and digits < 9:
                length = length * 10 + np.int64(buf[pos]) - 48
                digits += 1
                pos += 1
            while pos < size and _IS_BLANK[buf[pos]]:
                pos += 1
            if digits == 0 or (pos < size and buf[pos] != 10):
                return count, line, _ERR_RECORD
            first_page = address >> np.uint64(PAGE_SHIFT)
            last_page = (address + np.uint64(max(length, 1) - 1)) >> np.uint64(PAGE_SHIFT)
            if last_page - first_page > np.uint64(1):
                return count, line, _ERR_SPAN
            out[count] = np.int64(first_page)
            count += 1
            if last_page != first_page:
                out[count] = np.int64(last_page)
                count += 1
        pos = _skip_line(buf, pos) + 1
        line += 1
    return count, 0, 0


# ---- public functions -----------------------------------------------------------------------

def read_trace(path: str | Path, fmt: str | None = None) -> np.ndarray:
    """Read the trace at ``path`` into 4 KiB page numbers.

    Args:
        path: trace file.
        fmt: one of :data:`FORMATS`; ``None`` detects it from the suffix, then the content.

    Returns:
        1-D ``int64`` array of page numbers (4 KiB pages), one per access, in trace order.

    Raises:
        ConfigError: ``fmt`` is not a known format.
        TraceFormatError: the file is missing, unreadable, malformed or holds no access;
            the one-line message names the file, the line and what was expected.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(None, f"unknown trace format {fmt!r}; "
                                f"valid formats: {', '.join(FORMATS)}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    fmt = fmt or detect_format(path, data[:65536])
    if fmt == "npy":
        pages = _read_npy(path, data)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        pages = _read_lackey(path, buf) if fmt == "lackey" else _read_delimited(path, buf, fmt)
    if pages.size == 0:
        raise TraceFormatError(f"{path}: expected at least one access, found none")
    return pages


def detect_format(path: str | Path, head: bytes | None = None) -> str:
    """Trace format of ``path`` from its suffix, else from ``head`` (the file's first bytes)."""
    path = Path(path)
    by_suffix = _SUFFIX_FORMATS.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    if head is None:
        try:
            with path.open("rb") as handle:
                head = handle.read(65536)
        except OSError:
            return "text"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    for line in head.decode("latin-1").splitlines()[:64]:
        if _VALGRIND_BANNER.match(line) or _LACKEY_RECORD.match(line):
            return "lackey"
        content = line.split("#", 1)[0].strip()
        if content:
            return "csv" if "," in content else "text"
    return "text"


# ---- per-format readers ---------------------------------------------------------------------

def _read_delimited(path: Path, buf: np.ndarray, fmt: str) -> np.ndarray:
    """Pages of a ``text`` or ``csv`` trace."""
    start, first_line, column, mode, column_name = 0, 1, 0, _MODE_AUTO, None
    delimiter = 0
    if fmt == "csv":
        delimiter = ord(",")
        start, first_line, column, mode, column_name = _csv_layout(path, buf)
    out = np.empty(_count_lines(buf), dtype=np.int64)
    count = _parse_plain_decimal(buf, start, out) if column == 0 else -1
    if count >= 0:
        return out[:count] >> PAGE_SHIFT if mode == _MODE_ADDRESS else out[:count]
    count, bad_line, error = _parse_lines(buf, start, first_line, delimiter, column, mode, out)
    if bad_line:
        text = _line_text(buf, bad_line).split("#", 1)[0].strip()
        if error == _ERR_FIELDS:
            expected = f"at least {column + 1} comma-separated fields (column {column_name!r})"
        elif column_name is not None:
            expected = f"a number in column {column_name!r}"
        else:
            expected = "a page number or 0x address"
        raise TraceFormatError(f"{path}:{bad_line}: expected {expected}, got {text!r}")
    return out[:count]


def _csv_layout(path: Path, buf: np.ndarray) -> tuple[int, int, int, int, str | None]:
    """(start byte, its line number, column index, mode, column name) of a CSV trace."""
    data = buf.tobytes() if buf.size < 65536 else buf[:65536].tobytes()
    offset, line_no = 0, 1
    while offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        content = data[offset:end].decode("utf-8", "replace").split("#", 1)[0].strip()
        if content:
            fields = [field.strip().strip("\"'").lower() for field in content.split(",")]
            if all(_NUMBER.match(field) for field in fields):
                return 0, 1, 0, _MODE_AUTO, None
            for name, mode in _CSV_COLUMNS.items():
                if name in fields:
                    return end + 1, line_no + 1, fields.index(name), mode, name
            raise TraceFormatError(
                f"{path}:{line_no}: expected a header with a column named page, vpn, addr or "
                f"address, got {content[:60]!r}")
        offset, line_no = end + 1, line_no + 1
    return 0, 1, 0, _MODE_AUTO, None


def _read_lackey(path: Path, buf: np.ndarray) -> np.ndarray:
    """Pages of a valgrind lackey trace; a page-straddling access gives two pages."""
    out = np.empty(2 * _count_lines(buf), dtype=np.int64)
    count, bad_line, error = _parse_lackey(buf, out)
    if bad_line:
        text = _line_text(buf, bad_line)
        if error == _ERR_SPAN:
            raise TraceFormatError(
                f"{path}:{bad_line}: expected an access of at most 4096 bytes, got {text!r}")
        raise TraceFormatError(
            f"{path}:{bad_line}: expected a lackey record such as ' L 04222cac,8', got {text!r}")
    return out[:count]


def _read_npy(path: Path, data: bytes) -> np.ndarray:
    """Pages of a ``.npy`` file holding a 1-D integer array."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise TraceFormatError(f"{path}: expected a .npy array file, could not load it: {exc}") \
            from None
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
        shape = getattr(array, "shape", "?")
        dtype = getattr(array, "dtype", type(array).__name__)
        raise TraceFormatError(
            f"{path}: expected a 1-D integer array of page numbers, got {dtype} of shape {shape}")
    bad = np.flatnonzero(array < 0) if array.dtype.kind == "i" else np.flatnonzero(
        array > _INT64_MAX)
    if bad.size:
        raise TraceFormatError(
            f"{path}: element {bad[0]}: expected a page number in 0..2**63-1, got {array[bad[0]]}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _count_lines(buf: np.ndarray) -> int:
    """Number of lines in ``buf`` (a last line without newline counts)."""
    return int(np.count_nonzero(buf == 10)) + 1


def _line_text(buf: np.ndarray, line_no: int) -> str:
    """Text of line ``line_no`` (1-based), stripped and cut to 60 characters."""
    newlines = np.flatnonzero(buf == 10)
    start = 0 if line_no == 1 else int(newlines[line_no - 2]) + 1
    end = int(newlines[line_no - 1]) if line_no - 1 < newlines.size else buf.size
    text = buf[start:end].tobytes().decode("utf-8", "replace").strip()
    return text if len(text) <= 60 else text[:57] + "..."
