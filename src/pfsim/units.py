"""Units: integer nanoseconds for time, bytes for sizes, 4 KiB pages.

Sizes and durations in configs are strings with units (``"4KiB"``, ``"16us"``, ``"2s"``);
:func:`parse_size` and :func:`parse_time` turn them into integers and reject anything else.
"""

from __future__ import annotations

import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

_SIZE_UNITS = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_TIME_UNITS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": NS_PER_S}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*$")


def _split(text: str, units: dict[str, int], what: str) -> int:
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2) not in units:
        allowed = ", ".join(units)
        example = "'64MiB'" if what == "size" else "'16us'"
        raise ValueError(f"expected a {what} such as {example} with a unit in {allowed}, got {text!r}")
    number, unit = match.groups()
    value = float(number) * units[unit] if "." in number else int(number) * units[unit]
    if isinstance(value, float):
        if value != int(value):
            raise ValueError(f"{text!r} is not a whole number of the base unit")
        value = int(value)
    return value


def parse_size(text: str | int) -> int:
    """Return a size in bytes from ``"64MiB"``-style text (a bare int is bytes)."""
    if isinstance(text, bool):
        raise ValueError("expected a size string such as '64MiB', got a boolean")
    if isinstance(text, int):
        return text
    return _split(text, _SIZE_UNITS, "size")


def parse_time(text: str | int) -> int:
    """Return a duration in integer nanoseconds from ``"16us"``-style text (a bare int is ns)."""
    if isinstance(text, bool):
        raise ValueError("expected a duration string such as '16us', got a boolean")
    if isinstance(text, int):
        return text
    return _split(text, _TIME_UNITS, "duration")


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


def format_time(ns: int) -> str:
    """Human-readable duration for summaries (``1.50 ms``)."""
    for unit, scale in (("s", NS_PER_S), ("ms", NS_PER_MS), ("us", NS_PER_US)):
        if abs(ns) >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns} ns"
