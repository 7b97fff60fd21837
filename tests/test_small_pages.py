"""small_pages: numpy's huge-page advice is off while a simulation is built and run, and the
caller's own setting comes back afterwards."""

from __future__ import annotations

from numpy._core.multiarray import _set_madvise_hugepage

from pfsim.config import load_config
from pfsim.simulation import Simulation
from pfsim.small_pages import small_pages

SMALL = {"guest": {"memory": "64MiB"}, "processes": [{"name": "p", "vsegs": [
    {"name": "h", "type": "anon", "size": "1MiB"}], "threads": [{"steps": [
        {"op": "access", "vseg": "h", "accesses": 100}]}]}]}


def _advice() -> bool:
    now = _set_madvise_hugepage(False)
    _set_madvise_hugepage(now)
    return now


def test_the_callers_setting_comes_back() -> None:
    before = _set_madvise_hugepage(True)
    try:
        with small_pages():
            assert _advice() is False
        assert _advice() is True
        _set_madvise_hugepage(False)
        with small_pages():
            assert _advice() is False
        assert _advice() is False
    finally:
        _set_madvise_hugepage(before)


def test_a_simulation_is_built_and_run_without_the_advice(monkeypatch) -> None:
    seen: list[tuple[str, bool]] = []
    for name in ("_build", "_run"):
        def spy(self, *args, _name=name, _real=getattr(Simulation, name)):
            seen.append((_name, _advice()))
            return _real(self, *args)
        monkeypatch.setattr(Simulation, name, spy)
    before = _set_madvise_hugepage(True)
    try:
        sim = Simulation(load_config(SMALL))
        assert _advice() is True
        sim.run()
        assert _advice() is True
    finally:
        _set_madvise_hugepage(before)
    assert seen == [("_build", False), ("_run", False)]


def test_overlapping_blocks_in_threads_restore_the_setting_once() -> None:
    """Two blocks open at once (as two threads' simulations): the advice stays off until the
    last one closes, whichever closes first, then the setting from before comes back."""
    import threading

    before = _set_madvise_hugepage(True)
    try:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen: list[bool] = []

        def first() -> None:
            with small_pages():
                first_in.set()
                second_in.wait(5)
            first_out.set()

        def second() -> None:
            first_in.wait(5)
            with small_pages():
                second_in.set()
                first_out.wait(5)
                seen.append(_advice())  # the first block closed: still off

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == [False]
        assert _advice() is True
    finally:
        _set_madvise_hugepage(before)
