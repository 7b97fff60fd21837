"""Per-point seeds: a pure function of the sweep seed and the point's name.

A point's name is its axis values (sorted by key) and its replicate number, so adding a value to
an axis, or another replicate, leaves the seed, and therefore the result, of every other point
unchanged.  The hash is SHA-256 (stable across Python versions, platforms and hash seeds).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def point_name(axes: Mapping[str, Any], replicate: int) -> str:
    """The canonical name of a point (JSON, keys sorted): what its seed is derived from."""
    return json.dumps({"axes": dict(axes), "replicate": replicate}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def point_seed(sweep_seed: int, axes: Mapping[str, Any], replicate: int) -> int:
    """The seed of replicate ``replicate`` of the point at ``axes``: a non-negative 63-bit
    integer (the first 8 bytes of SHA-256 of the sweep seed and the point's name)."""
    text = f"pfsim-sweep\0{sweep_seed}\0{point_name(axes, replicate)}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
