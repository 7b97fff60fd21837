"""Property test: random fork / write / read / exit programs keep the ALMOS-MKH invariants.

After every simulator event (the invariants of docs/clusters.md, checked by
:func:`pfsim.cluster.invariants.check_all`): every non-reference copy's mapping of a public
page equals the reference one (INV-2), no entry is WRITABLE and COW (INV-4), a page with
forks pending is writable in no copy of any process, forks are never negative (INV-5), and
frames allocated = frames mapped + page tables + page cache, with free frames the rest.
With clusters = 1 the flat kernel's reference counts are checked instead (refcount = number
of PTEs mapping the frame).  At the end every process has exited and every user page and
page table is free again.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cluster_support import BASE, PAGE, almos, nap, process, run_checked, thread, touch

DATA_PAGES, ANON_PAGES = 6, 6
ANON_BASE = BASE + 0x100000


def _page(draw_kind: str, index: int) -> int:
    return (BASE if draw_kind == "d" else ANON_BASE) + index * PAGE


@st.composite
def leaf_steps(draw, allow_exit: bool = True):  # type: ignore[no-untyped-def]
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["write", "read", "nap"] + (["exit"] if allow_exit else [])))
        if kind == "nap":
            steps.append(nap(draw(st.integers(1, 60)) * 1000))
        elif kind == "exit":
            steps.append({"op": "exit"})
            break
        else:
            addr = _page(draw(st.sampled_from("da")), draw(st.integers(0, DATA_PAGES - 1)))
            steps.append(touch(addr, kind == "write"))
    return steps


@st.composite
def programs(draw):  # type: ignore[no-untyped-def]
    clusters = draw(st.sampled_from([1, 2, 4]))
    vcpus = 2 * clusters if clusters > 1 else 2
    threads = []
    for _ in range(draw(st.integers(1, 3))):
        steps = []
        for _ in range(draw(st.integers(1, 4))):
            what = draw(st.sampled_from(["leaf", "fork", "wait"]))
            if what == "leaf":
                steps += draw(leaf_steps(allow_exit=False))
            elif what == "fork":
                fork = {"op": "fork", "steps": draw(leaf_steps())}
                if clusters > 1:
                    fork["cluster"] = draw(st.integers(0, clusters - 1))
                steps.append(fork)
            else:
                steps.append({"op": "wait"})
        if draw(st.booleans()):
            steps.append({"op": "exit"})
        threads.append(thread(draw(st.integers(0, vcpus - 1)), steps))
    vsegs = [{"name": "d", "type": "data", "size": DATA_PAGES * PAGE, "base": BASE},
             {"name": "a", "type": "anon", "size": ANON_PAGES * PAGE, "base": ANON_BASE}]
    vmm = {"cow_race_is_user_error": draw(st.booleans()),
           "lookahead": draw(st.sampled_from([0, 20_000]))}
    data = almos([process("p", vsegs, threads, cluster=0 if clusters > 1 else None)],
                 clusters=clusters, vcpus=vcpus, vmm=vmm, seed=draw(st.integers(0, 3)))
    data["guest"]["fast_faults"] = draw(st.booleans())
    return data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=programs())
def test_invariants_hold_after_every_event(data):
    """Random fork / write / read / exit / wait programs: the invariants hold after every
    event, and at the end nothing is left allocated but the page cache."""
    result = run_checked(data)
    for name, proc in result.processes.items():
        assert proc["exit"] != "running", name
    vm = result.vm
    if "clusters" in vm:
        assert all(c["user_pages"] == 0 and c["pt2_pages"] == 0 for c in vm["clusters"]["clusters"])
        assert vm["clusters"]["outcomes"]["KERNEL_PANIC"] == 0


def test_long_fork_chain_keeps_fork_counts_exact():
    """A hand-checked chain: P maps 4 DATA pages and forks C1 and C2 (forks 2 each); C1
    writes pages 0-1 (copies: forks 1); C2 writes page 0 (copy: forks 0) and exits; P writes
    all 4: page 0 no fork pending (reset), page 1 forks 1 -> copy, pages 2-3 forks... C2's
    exit released one fork of pages 1-3 (2 -> 1 for pages 2-3, 1 -> 0 for page 1), so P's
    writes find page 1 and page 0 with none pending (2 resets) and pages 2-3 with C1's fork
    pending (2 copies)."""
    pages = [touch(BASE + k * PAGE, True) for k in range(4)]
    c1 = [nap(100_000), pages[0], pages[1], nap(2_000_000)]
    c2 = [nap(200_000), pages[0]]
    main = pages + [{"op": "fork", "steps": c1, "cluster": 1, "name": "c1"},
                    {"op": "fork", "steps": c2, "cluster": 1, "name": "c2"},
                    nap(1_000_000)] + pages + [{"op": "wait"}]
    result = run_checked(almos([process("p", [{"name": "d", "type": "data", "size": 4 * PAGE,
                                                "base": BASE}], [thread(0, main)])]))
    procs = result.processes
    assert (procs["c1"]["cow_copies"], procs["c2"]["cow_copies"]) == (2, 1)
    assert (procs["p"]["cow_copies"], procs["p"]["cow_reuses"]) == (2, 2)
    # every process has exited: no user page is left in any cluster
    assert [c["user_pages"] for c in result.vm["clusters"]["clusters"]] == [0, 0]
