"""Units: integer nanoseconds for time, bytes for sizes, 4 KiB pages.

Sizes and durations in configs are strings with units (``"4KiB"``, ``"16us"``, ``"2s"``);
:func:`parse_size` and :func:`parse_time` turn them into integers and reject anything else.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_DECIMAL_SIZE_UNITS = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
"""Refused: "64MB" reads as 64,000,000 bytes to some and 64 MiB to others (``free -m``,
``ulimit``), so a size names its unit in IEC form or in bytes (docs/config.md, "Units")."""
_TIME_UNITS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": NS_PER_S}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]{1,100}(?:\.[0-9]{1,100})?)\s*([A-Za-z]+)\s*$")
SIZE_HINT = ("a size is a string with a unit in B, KiB, MiB, GiB, TiB (e.g. '64MiB') or "
             "integer bytes")
TIME_HINT = ("a duration is a string with a unit in ns, us, ms, s (e.g. '500ns', '16us', '2ms') "
             "or integer nanoseconds")


def _split(text: str, units: dict[str, int], hint: str) -> int:
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2) not in units:
        unit = match.group(2) if match else None
        if unit in _DECIMAL_SIZE_UNITS and units is _SIZE_UNITS:
            number = Decimal(match.group(1)[:40])
            iec = number * units[unit[0] + "iB"]
            decimal = number * _DECIMAL_SIZE_UNITS[unit]
            exact = f" or '{int(decimal)}B' for {int(decimal):,} bytes" \
                if decimal == decimal.to_integral_value() else ""
            raise ValueError(f"{text.strip()!r}: decimal units (KB, MB, GB, TB) are ambiguous; "
                             f"write '{match.group(1)}{unit[0]}iB' ({int(iec):,} bytes){exact}")
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"{hint}; got {shown!r}")
    number, unit = match.groups()
    with localcontext() as exact:
        exact.prec = 250  # every product of a 100.100-digit number and a unit is exact
        value = Decimal(number) * units[unit]
    if value != value.to_integral_value():
        raise ValueError(f"{text.strip()!r} is not a whole number of "
                         f"{'bytes' if units is _SIZE_UNITS else 'nanoseconds'}")
    return int(value)


def parse_size(text: str | int) -> int:
    """Return a size in bytes from ``"64MiB"``-style text (a bare int is bytes)."""
    if isinstance(text, bool):
        raise ValueError(f"{SIZE_HINT}; got a boolean")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        raise ValueError(f"{SIZE_HINT}; got the number {text!r}")
    return _split(text, _SIZE_UNITS, SIZE_HINT)


def parse_time(text: str | int) -> int:
    """Return a duration in integer nanoseconds from ``"16us"``-style text (a bare int is ns)."""
    if isinstance(text, bool):
        raise ValueError(f"{TIME_HINT}; got a boolean")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        raise ValueError(f"{TIME_HINT}; got the number {text!r}")
    return _split(text, _TIME_UNITS, TIME_HINT)


def parse_address(text: str | int) -> int:
    """Return an address from an int or a ``"0x7f00..."`` hex / decimal string."""
    if isinstance(text, bool):
        raise ValueError("expected an address, got a boolean")
    if isinstance(text, int):
        return text
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"expected an address such as '0x400000', got {text!r}") from None


def size_text(size: int) -> str:
    """A size as written in a config: the largest IEC unit that divides it (``8MiB``,
    ``4097B``)."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def format_time(ns: int) -> str:
    """Human-readable duration for summaries (``1.50 ms``)."""
    for unit, scale in (("s", NS_PER_S), ("ms", NS_PER_MS), ("us", NS_PER_US)):
        if abs(ns) >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns} ns"
