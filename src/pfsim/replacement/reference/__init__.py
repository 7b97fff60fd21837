"""Slow, obvious versions of each replacement policy, used only by the differential tests.

Each function replays ``trace`` (page numbers) through ``frames`` frames and returns, per
request, True for a hit and False for a fault. They are written for reading, not speed: plain
Python lists, dicts and deques, one request at a time, each following its published
description (cited in the module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pfsim.replacement.reference.classic import (
    clock_hits,
    fifo_hits,
    lru_hits,
    opt_hits,
    random_hits,
    splitmix64,
)
from pfsim.replacement.reference.lirs import lirs_hits
from pfsim.replacement.reference.clockpro import clockpro_hits
from pfsim.replacement.reference.linux import linux_hits
from pfsim.replacement.reference.mglru import mglru_hits
from pfsim.replacement.reference.queues import arc_hits, s3fifo_hits, twoq_hits
from pfsim.replacement.reference.sieve import sieve_hits

REFERENCE: dict[str, Callable[[Sequence[int], int, int], list[bool]]] = {
    "2q": twoq_hits,
    "arc": arc_hits,
    "clock": clock_hits,
    "clockpro": clockpro_hits,
    "fifo": fifo_hits,
    "lirs": lirs_hits,
    "linux": linux_hits,
    "lru": lru_hits,
    "mglru": mglru_hits,
    "opt": opt_hits,
    "random": random_hits,
    "s3fifo": s3fifo_hits,
    "sieve": sieve_hits,
}

__all__ = ["REFERENCE", "splitmix64"]
