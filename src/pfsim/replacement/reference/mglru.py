"""Slow, obvious MGLRU: one Python list per generation sequence number (oldest page first), a
dict of labels and a set of young pages; see :mod:`pfsim.replacement.mglru` for the kernel
functions it follows."""

from __future__ import annotations

from collections.abc import Sequence

MIN_NR_GENS, MAX_NR_GENS = 2, 4


def mglru_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    lists: dict[int, list[int]] = {}  # seq % MAX_NR_GENS -> pages, tail (oldest) first
    label: dict[int, int] = {}  # resident page -> generation sequence number
    young: set[int] = set()
    min_seq, max_seq = 0, MIN_NR_GENS + 1
    hits = []

    def pages_of(seq: int) -> list[int]:
        return lists.setdefault(seq % MAX_NR_GENS, [])

    def labelled(seq: int) -> int:
        return sum(1 for s in label.values() if s == seq)

    def should_run_aging() -> bool:
        if min_seq + MIN_NR_GENS > max_seq:
            return True
        if min_seq + MIN_NR_GENS < max_seq:
            return False
        total = len(label)
        return (labelled(max_seq) * MIN_NR_GENS > total
                or labelled(max_seq - MIN_NR_GENS) * (MIN_NR_GENS + 2) < total)

    def age() -> None:
        nonlocal max_seq
        for seq in range(min_seq, max_seq + 1):
            for page in pages_of(seq):
                if page in young:
                    young.discard(page)
                    label[page] = max_seq
        max_seq += 1

    def evict_one() -> None:
        nonlocal min_seq
        while True:
            if should_run_aging():
                age()
            while not pages_of(min_seq) and min_seq + MIN_NR_GENS <= max_seq:
                min_seq += 1
            if not pages_of(min_seq):
                continue
            page = pages_of(min_seq).pop(0)
            if label[page] != min_seq:
                pages_of(label[page]).append(page)
            elif page in young:
                young.discard(page)
                label[page] = max_seq
                pages_of(max_seq).append(page)
            else:
                del label[page]
                return

    for page in trace:
        hit = page in label
        hits.append(hit)
        if not hit:
            if len(label) == frames:
                evict_one()
            label[page] = max_seq
            pages_of(max_seq).append(page)
        young.add(page)
    return hits
