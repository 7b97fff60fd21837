"""Slow, obvious FIFO, LRU, CLOCK, random and OPT, for the differential tests."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from pfsim.replacement.random import (
    SPLITMIX64_GAMMA,
    SPLITMIX64_MIX1,
    SPLITMIX64_MIX2,
)

_MASK = (1 << 64) - 1


def lru_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """LRU on an OrderedDict, least recently used first."""
    memory: OrderedDict[int, None] = OrderedDict()
    hits = []
    for page in trace:
        hit = page in memory
        if hit:
            memory.move_to_end(page)
        else:
            if len(memory) == frames:
                memory.popitem(last=False)
            memory[page] = None
        hits.append(hit)
    return hits


def fifo_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """FIFO on a deque of pages in load order."""
    queue: deque[int] = deque()
    hits = []
    for page in trace:
        hit = page in queue
        if not hit:
            if len(queue) == frames:
                queue.popleft()
            queue.append(page)
        hits.append(hit)
    return hits


def clock_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """CLOCK as libCacheSim writes it: a queue whose head page, if referenced, goes to the back.

    The reference bit is 0 on load and 1 after a hit.
    """
    queue: deque[int] = deque()  # oldest at the left
    referenced: dict[int, bool] = {}
    hits = []
    for page in trace:
        hit = page in referenced
        if hit:
            referenced[page] = True
        else:
            if len(queue) == frames:
                while referenced[queue[0]]:
                    referenced[queue[0]] = False
                    queue.rotate(-1)  # head moves to the back: its second chance
                del referenced[queue.popleft()]
            queue.append(page)
            referenced[page] = False
        hits.append(hit)
    return hits


def splitmix64(state: int) -> tuple[int, int]:
    """One splitmix64 step: (new state, 64-bit output)."""
    state = (state + SPLITMIX64_GAMMA) & _MASK
    mixed = ((state ^ (state >> 30)) * SPLITMIX64_MIX1) & _MASK
    mixed = ((mixed ^ (mixed >> 27)) * SPLITMIX64_MIX2) & _MASK
    return state, mixed ^ (mixed >> 31)


def random_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """Random eviction: the new page takes the slot of a victim drawn with splitmix64."""
    slots: list[int] = []
    state = seed & _MASK
    hits = []
    for page in trace:
        hit = page in slots
        if not hit:
            if len(slots) < frames:
                slots.append(page)
            else:
                state, draw = splitmix64(state)
                slots[draw % frames] = page
        hits.append(hit)
    return hits


def opt_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    """Belady's OPT by scanning ahead; among pages never used again the largest leaves first."""
    trace = list(trace)
    memory: set[int] = set()
    hits = []
    for now, page in enumerate(trace):
        hit = page in memory
        if not hit:
            if len(memory) == frames:

                def next_use(resident: int, now: int = now) -> tuple[int, int]:
                    future = trace[now + 1:]
                    distance = future.index(resident) if resident in future else len(trace)
                    return distance, resident

                memory.remove(max(memory, key=next_use))
            memory.add(page)
        hits.append(hit)
    return hits
