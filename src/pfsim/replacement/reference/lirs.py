"""Slow, obvious LIRS on two OrderedDicts (S: bottom first; Q: front first) and a status dict;
see :mod:`pfsim.replacement.lirs` for the algorithm and its source."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


def lirs_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    lhirs = max(1, int(frames * 0.01))
    llirs = frames - lhirs
    stack: OrderedDict[int, None] = OrderedDict()  # S, bottom (oldest) first
    queue: OrderedDict[int, None] = OrderedDict()  # Q, front first
    lir: set[int] = set()
    hits = []

    def top(x: int) -> None:
        stack.pop(x, None)
        stack[x] = None

    def prune() -> None:
        while stack and next(iter(stack)) not in lir:
            stack.popitem(last=False)  # a non-resident HIR page leaving S is forgotten

    def make_lir(x: int) -> None:
        top(x)
        lir.add(x)
        queue.pop(x, None)
        if len(lir) > llirs:  # demote the bottom LIR page to the end of Q
            bottom = stack.popitem(last=False)[0]
            lir.discard(bottom)
            queue[bottom] = None
            prune()

    for x in trace:
        hit = x in lir or x in queue
        hits.append(hit)
        if x in lir:
            was_bottom = next(iter(stack)) == x
            top(x)
            if was_bottom:
                prune()
        elif x in queue:
            if x in stack and llirs:
                make_lir(x)
            else:
                top(x)
                queue.move_to_end(x)
        else:
            if len(lir) + len(queue) == frames:
                queue.popitem(last=False)  # stays in S (if there) as non-resident HIR
            if len(lir) < llirs or (x in stack and llirs):
                make_lir(x)
            else:
                top(x)
                queue[x] = None
    return hits
