"""Slow, obvious ARC, 2Q and S3-FIFO on OrderedDicts (oldest entry first); see
:mod:`pfsim.replacement.arc`, :mod:`pfsim.replacement.twoq` and :mod:`pfsim.replacement.s3fifo`
for the algorithms, their sources and the conventions followed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


def _oldest(queue: OrderedDict) -> int:
    return queue.popitem(last=False)[0]


def arc_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """ARC as in figure 4 of Megiddo and Modha (FAST 2003), ``p`` a real number."""
    c = frames
    t1: OrderedDict[int, None] = OrderedDict()
    t2: OrderedDict[int, None] = OrderedDict()
    b1: OrderedDict[int, None] = OrderedDict()
    b2: OrderedDict[int, None] = OrderedDict()
    p = 0.0
    hits = []

    def replace(in_b2: bool) -> None:
        if (t1 and (len(t1) > p or (in_b2 and len(t1) == p))) or not t2:
            b1[_oldest(t1)] = None
        else:
            b2[_oldest(t2)] = None

    for x in trace:
        hit = x in t1 or x in t2
        hits.append(hit)
        if hit:
            t1.pop(x, None)
            t2.pop(x, None)
            t2[x] = None
            continue
        full = len(t1) + len(t2) == c
        if x in b1:
            p = min(p + max(len(b2) / len(b1), 1), c)
            del b1[x]
            if full:
                replace(False)
            t2[x] = None
        elif x in b2:
            p = max(p - max(len(b1) / len(b2), 1), 0)
            del b2[x]
            if full:
                replace(True)
            t2[x] = None
        else:
            if full:
                if len(t1) + len(b1) == c:
                    if b1:
                        _oldest(b1)
                        replace(False)
                    else:
                        _oldest(t1)
                else:
                    if len(t1) + len(t2) + len(b1) + len(b2) == 2 * c and b2:
                        _oldest(b2)
                    replace(False)
            t1[x] = None
    return hits


def twoq_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """2Q, full version (Johnson and Shasha, VLDB 1994), Kin = c/4 and Kout = c/2 truncated."""
    kin, kout = int(frames * 0.25), int(frames * 0.5)
    a1in: OrderedDict[int, None] = OrderedDict()
    a1out: OrderedDict[int, None] = OrderedDict()
    am: OrderedDict[int, None] = OrderedDict()
    hits = []
    for x in trace:
        hit = x in am or x in a1in
        hits.append(hit)
        if x in am:
            am.move_to_end(x)
        if hit:
            continue
        proved = x in a1out
        a1out.pop(x, None)
        if len(a1in) + len(am) == frames:
            if len(a1in) > kin:
                y = _oldest(a1in)
                if kout:
                    if len(a1out) == kout:
                        _oldest(a1out)
                    a1out[y] = None
            else:
                _oldest(am)
        (am if proved else a1in)[x] = None
    return hits


def s3fifo_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """S3-FIFO (Yang et al., SOSP 2023) with libCacheSim's queue sizes and threshold 2."""
    small_share = max(1, int(frames * 0.1))
    main_share = frames - small_share
    evicted = False
    ghost_size = int(frames * 0.9)
    small: OrderedDict[int, None] = OrderedDict()
    main: OrderedDict[int, None] = OrderedDict()
    ghost: OrderedDict[int, None] = OrderedDict()
    freq: dict[int, int] = {}
    hits = []
    for x in trace:
        hit = x in small or x in main
        hits.append(hit)
        if hit:
            freq[x] = min(freq[x] + 1, 3)
            continue
        was_ghost = x in ghost
        ghost.pop(x, None)
        while len(small) + len(main) >= frames:
            evicted = True
            if len(main) > main_share or not small:
                while main:  # evict from M, reinserting pages hit since they entered
                    t = _oldest(main)
                    if freq[t] >= 1:
                        freq[t] -= 1
                        main[t] = None
                    else:
                        break
            else:
                while small:
                    t = _oldest(small)
                    if freq[t] >= 2:
                        freq[t] = 0
                        main[t] = None
                    else:
                        if ghost_size:
                            if len(ghost) == ghost_size:
                                _oldest(ghost)
                            ghost[t] = None
                        break
        freq[x] = 0
        warm_up = not evicted and len(small) >= small_share
        (main if was_ghost or warm_up else small)[x] = None
    return hits
