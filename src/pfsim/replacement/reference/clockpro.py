"""Slow, obvious CLOCK-Pro on a Python list as the clock (index 0 follows the last slot) and
hands held as page ids; see :mod:`pfsim.replacement.clockpro` for the algorithm, its source and
conventions."""

from __future__ import annotations

from collections.abc import Sequence


def clockpro_hits(trace: Sequence[int], frames: int, seed: int = 0) -> list[bool]:
    m = frames
    clock: list[int] = []
    kind: dict[int, str] = {}  # "cold", "hot" (resident) or "test" (non-resident, in test)
    ref: dict[int, bool] = {}
    testing: set[int] = set()  # pages in their test period
    hands = {"hot": None, "cold": None, "test": None}
    mc = m
    hits = []

    def after(page: int) -> int:
        return clock[(clock.index(page) + 1) % len(clock)]

    def remove(page: int) -> None:
        if len(clock) == 1:
            hands.update(hot=None, cold=None, test=None)
        else:
            successor = after(page)
            for name, at in hands.items():
                if at == page:
                    hands[name] = successor
        clock.remove(page)

    def insert_at_head(page: int) -> None:
        if not clock:
            clock.append(page)
            hands.update(hot=page, cold=page, test=page)
        else:
            clock.insert(clock.index(hands["hot"]), page)  # just behind HANDhot

    def count(*kinds: str) -> int:
        return sum(1 for page in clock if kind[page] in kinds)

    def end_test(page: int) -> None:
        nonlocal mc
        testing.discard(page)
        if not ref.get(page) and mc > 1:
            mc -= 1
        if kind[page] == "test":
            remove(page)
            del kind[page]

    def hand_hot() -> None:
        while True:
            page = hands["hot"]
            hands["hot"] = after(page)
            if kind[page] == "hot":
                if ref[page]:
                    ref[page] = False
                    continue
                kind[page] = "cold"
                break
            if page in testing:
                end_test(page)
        while count("hot") and kind[hands["hot"]] != "hot":
            page = hands["hot"]
            hands["hot"] = after(page)
            if page in testing:
                end_test(page)

    def promote(page: int) -> None:
        nonlocal mc
        mc = min(mc + 1, m)
        remove(page)
        insert_at_head(page)
        kind[page], ref[page] = "hot", False
        testing.discard(page)
        while count("hot") > m - mc:
            hand_hot()

    def hand_cold() -> None:
        while True:
            page = hands["cold"]
            hands["cold"] = after(page)
            if kind[page] != "cold":
                continue
            if ref[page]:
                ref[page] = False
                if page in testing:
                    promote(page)
                else:
                    testing.add(page)
                    remove(page)
                    insert_at_head(page)
                continue
            if page in testing:
                kind[page] = "test"
            else:
                remove(page)
                del kind[page]
            break
        while count("cold") and kind[hands["cold"]] != "cold":
            hands["cold"] = after(hands["cold"])

    def hand_test() -> None:
        page = hands["test"]
        while kind[page] == "hot":
            page = after(page)
        hands["test"] = after(page)
        if page in testing:
            end_test(page)
        page = hands["test"]
        while page is not None and kind[page] == "hot":
            page = after(page)
        hands["test"] = page

    for x in trace:
        hit = kind.get(x) in ("cold", "hot")
        hits.append(hit)
        if hit:
            ref[x] = True
            continue
        if count("cold", "hot") == m:
            hand_cold()
        if kind.get(x) == "test":
            promote(x)
        else:
            insert_at_head(x)
            kind[x], ref[x] = "cold", False
            testing.add(x)
        while count("cold", "test") > mc + m:
            hand_test()
    return hits
