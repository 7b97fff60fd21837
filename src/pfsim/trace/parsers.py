"""The compiled line parsers of the text trace formats, and the scanners they share.

Every parser makes one pass over a block of bytes that ends at a line boundary and returns
``(pages written, lines read, first bad line or 0, error code, bad lines)``; line numbers are
1-based within the block. Without ``skip_bad`` a parser stops at the first bad line; with it,
bad lines are counted and passed over. The formats themselves are described in
:mod:`pfsim.trace.formats` and beside each parser.

All of them live in this one file because numba's on-disk cache is keyed by the file of the
function it caches: a helper or table in another file could change without the callers'
cached machine code noticing.

NOTE: perf: byte classes come from 256-entry tables; chains of comparisons ran 2.4x slower.
About 0.1 s per 10 M lines of bare decimals (fast path), 0.5-0.8 s for hex, CSV or lackey,
where ``str.split`` plus ``int`` takes about 4 s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INT64_MAX = np.iinfo(np.int64).max

IS_BLANK = np.zeros(256, dtype=np.bool_)  # whitespace other than newline
IS_BLANK[list(b" \t\r\x0b\x0c")] = True
ENDS_TOKEN = IS_BLANK.copy()  # what ends a number: whitespace, newline, '#', ','
ENDS_TOKEN[list(b"\n#,")] = True
HEX_VALUE = np.full(256, 255, dtype=np.uint8)  # 0-15 for a hex digit, 255 otherwise
for _value, _digit in enumerate(b"0123456789abcdef"):
    HEX_VALUE[_digit] = HEX_VALUE[ord(chr(_digit).upper())] = _value

# Why a line is bad (the reader turns the code into words).
ERR_NUMBER, ERR_FIELDS, ERR_RECORD, ERR_SPAN, ERR_EVENT = 1, 2, 3, 4, 5


@njit(cache=True, nogil=True)
def skip_line(buf, pos, end):
    """Position of the newline ending the line at ``pos`` (or ``end``)."""
    while pos < end and buf[pos] != 10:
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def skip_blanks(buf, pos, end):
    while pos < end and IS_BLANK[buf[pos]]:
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def scan_hex(buf, pos, end):
    """(value, digits, position after) of the hex digits at ``pos`` (no ``0x``); more than 16
    digits give ``digits`` 17."""
    value = np.uint64(0)
    digits = 0
    while pos < end:
        nibble = HEX_VALUE[buf[pos]]
        if nibble > 15:
            break
        value = (value << np.uint64(4)) | np.uint64(nibble)
        digits += 1
        pos += 1
    return value, min(digits, 17), pos


@njit(cache=True, nogil=True)
def page_of(address, shift):
    """``address >> shift`` as a page number, or -1 if it does not fit in ``int64``."""
    page = address >> np.uint64(shift)
    if page > np.uint64(INT64_MAX):
        return np.int64(-1)
    return np.int64(page)

# ---- text and csv ---------------------------------------------------------------------------
# A number is decimal (4198400) or hex with 0x (0x401000). Each kind has its own shift:
# shift_dec and shift_hex are 0 where the number is a page number and the page shift where it
# is a byte address, so one pass serves every --unit. '#' starts a comment; blank lines are
# skipped. ``stats`` (int64[4]) accumulates, over the decimal numbers read as page numbers,
# their count, how many are multiples of 8, the smallest and the largest: the reader's evidence
# that a trace of "page numbers" holds byte addresses.

STAT_COUNT, STAT_MULT8, STAT_MIN, STAT_MAX = 0, 1, 2, 3


def new_stats() -> np.ndarray:
    """Empty decimal-number statistics."""
    return np.array([0, 0, np.iinfo(np.int64).max, -1], dtype=np.int64)


@njit(cache=True, nogil=True)
def _note_decimal(stats, value):
    stats[STAT_COUNT] += 1
    if value & 7 == 0:
        stats[STAT_MULT8] += 1
    stats[STAT_MIN] = min(stats[STAT_MIN], value)
    stats[STAT_MAX] = max(stats[STAT_MAX], value)


@njit(cache=True, nogil=True)
def parse_plain_decimal(buf, end, out, stats):
    """Fast path: lines that are all bare decimal page numbers (no blank, comment or sign).

    Returns (pages, lines), or (-1, 0) at the first other byte (nothing is kept then).
    """
    count = 0
    value = 0
    length = 0
    mult8 = 0
    low = stats[STAT_MIN]
    high = stats[STAT_MAX]
    for i in range(end):
        byte = buf[i]
        if byte == 10:
            if length == 0 or length > 18:
                return -1, 0
            out[count] = value
            count += 1
            if value & 7 == 0:
                mult8 += 1
            low = min(low, value)
            high = max(high, value)
            value = 0
            length = 0
        else:
            digit = np.int64(byte) - 48
            if digit < 0 or digit > 9:
                return -1, 0
            value = value * 10 + digit
            length += 1
    lines = count
    if length > 18:
        return -1, 0
    if length > 0:
        out[count] = value
        count += 1
        lines += 1
        if value & 7 == 0:
            mult8 += 1
        low = min(low, value)
        high = max(high, value)
    stats[STAT_COUNT] += count
    stats[STAT_MULT8] += mult8
    stats[STAT_MIN] = low
    stats[STAT_MAX] = high
    return count, lines


@njit(cache=True, nogil=True)
def _scan_number(buf, pos, end, shift_dec, shift_hex, stats):
    """(page number or -1 if malformed, position after the token) of the token at ``pos``."""
    is_hex = pos + 1 < end and buf[pos] == 48 and (buf[pos + 1] | 32) == 120  # "0x" or "0X"
    value = np.uint64(0)
    digits = 0
    bad = False
    if is_hex:
        pos += 2
        while pos < end and not ENDS_TOKEN[buf[pos]]:
            nibble = HEX_VALUE[buf[pos]]
            bad |= nibble > 15
            value = (value << np.uint64(4)) | np.uint64(nibble & 15)
            digits += 1
            pos += 1
        if bad or digits == 0 or digits > 16:
            return np.int64(-1), pos
        return page_of(value, shift_hex), pos
    while pos < end and not ENDS_TOKEN[buf[pos]]:
        digit = np.uint8(buf[pos] - np.uint8(48))  # wraps above 9 for non-digits
        bad |= digit > 9
        value = value * np.uint64(10) + np.uint64(digit)
        digits += 1
        pos += 1
    if bad or digits == 0 or digits > 19:  # 19 decimal digits always fit in 64 bits
        return np.int64(-1), pos
    page = page_of(value, shift_dec)
    if page >= 0 and shift_dec == 0:
        _note_decimal(stats, page)
    return page, pos


@njit(cache=True, nogil=True)
def parse_numbers(buf, end, delimiter, column, shift_dec, shift_hex, skip_bad, out, stats):
    """Parse one number per line of ``buf[:end]`` into ``out``.

    ``delimiter`` 0 means the line holds only the number; otherwise the number is field
    ``column`` (0-based) of the ``delimiter``-separated line.
    """
    count = 0
    line = 0
    pos = 0
    first_bad = 0
    first_error = 0
    n_bad = 0
    while pos < end:
        line += 1
        error = 0
        while pos < end and IS_BLANK[buf[pos]]:
            pos += 1
        if pos < end and buf[pos] != 10 and buf[pos] != 35:
            for _ in range(column):
                while pos < end and buf[pos] != delimiter and buf[pos] != 10 and buf[pos] != 35:
                    pos += 1
                if pos == end or buf[pos] != delimiter:
                    error = ERR_FIELDS
                    break
                pos += 1
            if error == 0:
                while pos < end and IS_BLANK[buf[pos]]:
                    pos += 1
                page, pos = _scan_number(buf, pos, end, shift_dec, shift_hex, stats)
                while pos < end and IS_BLANK[buf[pos]]:
                    pos += 1
                at_end = pos == end or buf[pos] == 10 or buf[pos] == 35
                if page < 0 or not (at_end or (delimiter != 0 and buf[pos] == delimiter)):
                    error = ERR_NUMBER
                else:
                    out[count] = page
                    count += 1
        if error != 0:
            n_bad += 1
            if first_bad == 0:
                first_bad = line
                first_error = error
            if not skip_bad:
                return count, line, first_bad, first_error, n_bad
        pos = skip_line(buf, pos, end) + 1
    return count, line, first_bad, first_error, n_bad

# ---- valgrind lackey (formats in pfsim.trace.lackey) ----------------------------------------

@njit(cache=True, nogil=True)
def parse_lackey(buf, end, kinds, page_shift, skip_bad, out):
    """Parse lackey records of ``buf[:end]`` into pages (see the module docstring)."""
    count = 0
    line = 0
    pos = 0
    first_bad = 0
    first_error = 0
    n_bad = 0
    page_size = np.uint64(1) << np.uint64(page_shift)
    while pos < end:
        line += 1
        error = 0
        first = buf[pos]
        banner = pos + 1 < end and (first == 61 or first == 45) and buf[pos + 1] == first
        while not banner and pos < end and IS_BLANK[buf[pos]]:
            pos += 1
        if not banner and pos < end and buf[pos] != 10:
            op = buf[pos]
            bit = 0
            if op == 73:  # I
                bit = 1
            elif op == 76:  # L
                bit = 2
            elif op == 83:  # S
                bit = 4
            elif op == 77:  # M
                bit = 8
            pos += 1
            if bit == 0 or pos == end or buf[pos] != 32:
                error = ERR_RECORD
            else:
                while pos < end and buf[pos] == 32:
                    pos += 1
                address, digits, pos = scan_hex(buf, pos, end)
                if digits == 0 or digits > 16 or pos == end or buf[pos] != 44:
                    error = ERR_RECORD
                else:
                    pos += 1  # the comma
                    size = np.uint64(0)
                    digits = 0
                    while pos < end and 48 <= buf[pos] <= 57 and digits < 9:
                        size = size * np.uint64(10) + np.uint64(buf[pos] - 48)
                        digits += 1
                        pos += 1
                    while pos < end and IS_BLANK[buf[pos]]:
                        pos += 1
                    if digits == 0 or (pos < end and buf[pos] != 10):
                        error = ERR_RECORD
                    elif size > page_size:
                        error = ERR_SPAN
                    elif kinds & bit:
                        first_page = page_of(address, page_shift)
                        last = address + max(size, np.uint64(1)) - np.uint64(1)
                        last_page = page_of(last, page_shift) if last >= address else -1
                        if first_page < 0 or last_page < 0:
                            error = ERR_RECORD
                        else:
                            out[count] = first_page
                            count += 1
                            if last_page != first_page:
                                out[count] = last_page
                                count += 1
        if error != 0:
            n_bad += 1
            if first_bad == 0:
                first_bad = line
                first_error = error
            if not skip_bad:
                return count, line, first_bad, first_error, n_bad
        pos = skip_line(buf, pos, end) + 1
    return count, line, first_bad, first_error, n_bad

# ---- Intel Pin pinatrace (format in pfsim.trace.pinatrace) ----------------------------------

@njit(cache=True, nogil=True)
def _hex_with_prefix(buf, pos, end):
    """(value, ok, position after) of a ``0x``-prefixed hex number at ``pos``."""
    if pos + 1 >= end or buf[pos] != 48 or (buf[pos + 1] | 32) != 120:
        return np.uint64(0), False, pos
    value, digits, pos = scan_hex(buf, pos + 2, end)
    return value, 0 < digits <= 16, pos


@njit(cache=True, nogil=True)
def parse_pinatrace(buf, end, page_shift, skip_bad, out):
    """Parse pinatrace lines of ``buf[:end]`` into pages (see the module docstring)."""
    count = 0
    line = 0
    pos = 0
    first_bad = 0
    first_error = 0
    n_bad = 0
    while pos < end:
        line += 1
        error = 0
        while pos < end and IS_BLANK[buf[pos]]:
            pos += 1
        if pos < end and buf[pos] != 10 and buf[pos] != 35:
            _ip, ok, pos = _hex_with_prefix(buf, pos, end)
            if not ok or pos + 2 >= end or buf[pos] != 58 or buf[pos + 1] != 32:
                error = ERR_RECORD
            else:
                pos += 2
                op = buf[pos]
                pos += 1
                if (op != 82 and op != 87) or pos == end or buf[pos] != 32:  # R, W
                    error = ERR_RECORD
                else:
                    pos += 1
                    address, ok, pos = _hex_with_prefix(buf, pos, end)
                    while pos < end and IS_BLANK[buf[pos]]:
                        pos += 1
                    page = page_of(address, page_shift) if ok else -1
                    if page < 0 or (pos < end and buf[pos] != 10):
                        error = ERR_RECORD
                    else:
                        out[count] = page
                        count += 1
        if error != 0:
            n_bad += 1
            if first_bad == 0:
                first_bad = line
                first_error = error
            if not skip_bad:
                return count, line, first_bad, first_error, n_bad
        pos = skip_line(buf, pos, end) + 1
    return count, line, first_bad, first_error, n_bad

# ---- perf script page-fault samples (format in pfsim.trace.perf) ----------------------------

@njit(cache=True, nogil=True)
def _find(buf, pos, end, pattern):
    """Position of ``pattern`` (uint8 array) in ``buf[pos:end]`` on this line, or -1."""
    n = pattern.size
    while pos + n <= end and buf[pos] != 10:
        match = True
        for k in range(n):
            if buf[pos + k] != pattern[k]:
                match = False
                break
        if match:
            return pos
        pos += 1
    return -1


@njit(cache=True, nogil=True)
def parse_perf(buf, end, page_shift, skip_bad, out, faults_word, address_word):
    """Parse ``perf script`` sample lines of ``buf[:end]`` into pages (module docstring)."""
    count = 0
    line = 0
    pos = 0
    first_bad = 0
    first_error = 0
    n_bad = 0
    while pos < end:
        line += 1
        error = 0
        start = pos
        while pos < end and IS_BLANK[buf[pos]]:
            pos += 1
        if pos < end and buf[pos] != 10 and buf[pos] != 35:
            page = -1
            at = _find(buf, pos, end, address_word)
            if at >= 0:
                address, digits, pos = scan_hex(buf, at + address_word.size, end)
                if 0 < digits <= 16:
                    page = page_of(address, page_shift)
            else:
                at = _find(buf, start, end, faults_word)
                if at < 0:
                    error = ERR_EVENT
                else:
                    pos = at + faults_word.size
                    while pos < end and buf[pos] != 32 and buf[pos] != 9 and buf[pos] != 10:
                        pos += 1  # the rest of the event token (":u:")
                    if buf[pos - 1] != 58:  # the token must end with ':'
                        error = ERR_EVENT
                    while pos < end and IS_BLANK[buf[pos]]:
                        pos += 1
                    if pos + 1 < end and buf[pos] == 48 and (buf[pos + 1] | 32) == 120:
                        pos += 2
                    address, digits, pos = scan_hex(buf, pos, end)
                    if error == 0 and 0 < digits <= 16 and (
                            pos == end or IS_BLANK[buf[pos]] or buf[pos] == 10):
                        page = page_of(address, page_shift)
            if error == 0 and page < 0:
                error = ERR_RECORD
            if error == 0:
                out[count] = page
                count += 1
        if error != 0:
            n_bad += 1
            if first_bad == 0:
                first_bad = line
                first_error = error
            if not skip_bad:
                return count, line, first_bad, first_error, n_bad
        pos = skip_line(buf, pos, end) + 1
    return count, line, first_bad, first_error, n_bad
