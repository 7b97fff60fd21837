"""small_pages: numpy's huge-page advice is off while a simulation is built and run, and the
caller's own setting comes back afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


def _huge_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


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


def test_building_and_running_a_simulation_restores_it() -> None:
    before = _set_madvise_hugepage(True)
    try:
        sim = Simulation(load_config(SMALL))
        assert _advice() is True
        sim.run()
        assert _advice() is True
    finally:
        _set_madvise_hugepage(before)


def test_no_huge_pages_for_arrays_made_inside() -> None:
    """Where the kernel honours madvise (THP mode ``[madvise]``), an 8 MiB array written once
    per 4 KiB gets huge pages with numpy's advice and none inside the block."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[madvise]" not in mode.read_text():
        pytest.skip("transparent huge pages are not in madvise mode here: advice is moot")
    before = _set_madvise_hugepage(True)
    try:
        kept = []
        start = _huge_kib()
        kept.append(np.zeros(8 << 20, dtype=np.uint8))
        kept[-1][::4096] = 1
        advised = _huge_kib() - start
        with small_pages():
            start = _huge_kib()
            kept.append(np.zeros(8 << 20, dtype=np.uint8))
            kept[-1][::4096] = 1
            inside = _huge_kib() - start
    finally:
        _set_madvise_hugepage(before)
    assert advised >= 4096  # at least two 2 MiB huge pages (alignment may cost one)
    assert inside == 0
