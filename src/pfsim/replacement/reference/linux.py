"""Slow, obvious Linux two-list LRU: two OrderedDicts (tail, i.e. oldest, first) and sets for the
young and PG_referenced bits; see :mod:`pfsim.replacement.linux` for the kernel functions it
follows."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence


def linux_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    inactive: OrderedDict[int, None] = OrderedDict()
    active: OrderedDict[int, None] = OrderedDict()
    young: set[int] = set()
    referenced: set[int] = set()
    hits = []

    def inactive_is_low() -> bool:
        gb = (len(inactive) + len(active)) * 4096 // 2**30
        ratio = math.isqrt(10 * gb) if gb else 1
        return len(inactive) * ratio < len(active)

    def reclaim_one() -> None:
        while True:
            if inactive_is_low():  # shrink_active_list: deactivate, referenced or not
                page = active.popitem(last=False)[0]
                young.discard(page)
                inactive[page] = None
            page = inactive.popitem(last=False)[0]  # shrink_inactive_list
            was_young, was_referenced = page in young, page in referenced
            young.discard(page)
            referenced.discard(page)
            if not was_young:
                return  # FOLIOREF_RECLAIM
            referenced.add(page)
            if was_referenced:
                active[page] = None  # FOLIOREF_ACTIVATE
            else:
                inactive[page] = None  # FOLIOREF_KEEP

    for page in trace:
        hit = page in inactive or page in active
        hits.append(hit)
        if not hit:
            if len(inactive) + len(active) == frames:
                reclaim_one()
            inactive[page] = None
            referenced.discard(page)
        young.add(page)
    return hits
