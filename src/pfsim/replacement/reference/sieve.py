"""SIEVE on a Python list (oldest first) and a dict of visited bits; see
:mod:`pfsim.replacement.sieve` for the algorithm and its source."""

from __future__ import annotations

from collections.abc import Sequence


def sieve_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    queue: list[int] = []  # index 0 is the oldest page (the tail), the end the newest (head)
    visited: dict[int, bool] = {}
    hand: int | None = None  # the page the hand points at, None: start from the oldest
    hits = []
    for page in trace:
        hit = page in visited
        if hit:
            visited[page] = True
        else:
            if len(queue) == frames:
                at = queue.index(hand) if hand is not None else 0
                while visited[queue[at]]:
                    visited[queue[at]] = False
                    at = at + 1 if at + 1 < len(queue) else 0  # towards the newest, wrapping
                victim = queue.pop(at)
                hand = queue[at] if at < len(queue) else None  # the victim's newer neighbour
                del visited[victim]
            queue.append(page)
            visited[page] = False
        hits.append(hit)
    return hits
