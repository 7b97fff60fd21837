"""Frame counts from the command line: ``100,1000``, ranges ``10:100:10`` and sizes ``1GiB``.

An item is a count of frames (``4096``), a memory size (``256MiB``: that many bytes of pages of
the page size), or an inclusive range ``start:stop:step`` of either (``64MiB:1GiB:64MiB``;
``start:stop`` steps by one frame). Counts come out in the order given, duplicates dropped.
"""

from __future__ import annotations

from pfsim.errors import ConfigError
from pfsim.units import parse_size

MAX_SIZES = 100_000
MAX_FRAMES = (1 << 63) - 1
"""The replay kernels count frames in signed 64-bit integers."""


def _one(text: str, page_size: int) -> int:
    text = text.strip()
    if text.isdigit():
        value = int(text)
    else:
        try:
            size = parse_size(text)
        except ValueError as exc:
            raise ConfigError("--frames", f"expected a frame count or a size such as 1GiB in "
                                          f"{text!r}: {exc}") from None
        if size % page_size:
            raise ConfigError("--frames", f"{text} is not a whole number of "
                                          f"{page_size:,}-byte pages")
        value = size // page_size
    if value < 1:
        raise ConfigError("--frames", f"frame counts must be positive, got {text!r}")
    if value > MAX_FRAMES:
        raise ConfigError("--frames", f"{text!r} is more than 2**63-1 frames")
    return value


def parse_frames(text: str, page_size: int = 4096) -> list[int]:
    """Frame counts of ``text`` (see the module docstring); a ConfigError keyed ``--frames``."""
    counts: list[int] = []
    for item in text.split(","):
        if not item.strip():
            continue
        parts = item.split(":")
        if len(parts) == 1:
            counts.append(_one(parts[0], page_size))
            continue
        if len(parts) > 3:
            raise ConfigError("--frames", f"expected start:stop:step, got {item.strip()!r}")
        start, stop = _one(parts[0], page_size), _one(parts[1], page_size)
        step = _one(parts[2], page_size) if len(parts) == 3 else 1
        if stop < start:
            raise ConfigError("--frames", f"range {item.strip()!r} ends before it starts")
        if (stop - start) // step + 1 + len(counts) > MAX_SIZES:
            raise ConfigError("--frames", f"range {item.strip()!r} has more than {MAX_SIZES:,} "
                                          f"sizes")
        counts.extend(range(start, stop + 1, step))
    if not counts:
        raise ConfigError("--frames", f"expected frame counts such as 100,1000 or 10:100:10, "
                                      f"got {text!r}")
    return list(dict.fromkeys(counts))
