"""``pfsim mrc``: exact LRU stack distances against per-size LRU replays, hand-worked distances,
SHARDS sampling, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pfsim
from pfsim.replacement import PageIds
from pfsim.replacement.reference import REFERENCE
from pfsim.replacement.stack import StackDistances

OSTEP_TRACE = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2]


def test_ostep_stack_distances_by_hand():
    """Distances worked by hand (distinct pages since the last request of the page):

    7 0 1 2 cold; 0: {1,2} -> 2; 3 cold; 0: {3} -> 1; 4 cold; 2: {0,3,4} -> 3;
    3: {0,4,2} -> 3; 0: {4,2,3} -> 3; 3: {0} -> 1; 2: {3,0} -> 2.
    Histogram: d=1: 2, d=2: 2, d=3: 3; 6 compulsory.
    """
    stack = StackDistances()
    page_ids = PageIds()
    stack.feed(page_ids.map(np.array(OSTEP_TRACE)), page_ids.n_pages)
    assert stack.compulsory == 6
    assert stack.histogram[:6].tolist() == [0, 2, 2, 3, 0, 0]
    # LRU faults: 3 frames -> 6 + 3 = 9 (the hand-worked LRU count of test_replacement_classic)
    assert stack.faults(np.array([1, 2, 3, 4, 100])).tolist() == [13, 11, 9, 6, 6]


@settings(max_examples=60, deadline=None)
@given(trace=st.lists(st.integers(0, 40), min_size=1, max_size=400),
       cuts=st.lists(st.integers(0, 400), max_size=4))
def test_curve_equals_lru_replay_at_every_size(trace, cuts):
    """For every memory size from 1 to past the footprint, the curve's faults are the faults
    of the slow reference LRU (an OrderedDict) replayed at that size."""
    pages = np.array(trace, dtype=np.int64) * 4096 + 7  # sparse page numbers
    stack = StackDistances()
    page_ids = PageIds()
    bounds = sorted({0, pages.size, *(cut for cut in cuts if cut < pages.size)})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        stack.feed(page_ids.map(pages[start:stop]), page_ids.n_pages)
    sizes = np.arange(1, page_ids.n_pages + 3)
    expected = [REFERENCE["lru"](trace, int(size)).count(False) for size in sizes]
    assert stack.faults(sizes).tolist() == expected


def test_compaction_keeps_distances_exact():
    """A long trace over few pages renumbers its positions many times; the curve stays equal to
    LRU replays (reference counts from the slow OrderedDict LRU)."""
    trace = np.random.default_rng(3).zipf(1.2, 60_000) % 900
    curve = pfsim.mrc(trace, frames=[1, 10, 100, 500, 900])
    expected = [REFERENCE["lru"](trace.tolist(), size).count(False)
                for size in (1, 10, 100, 500, 900)]
    assert [row["faults"] for row in curve.rows] == expected
    assert curve.footprint == curve.compulsory_misses == np.unique(trace).size


def test_shards_at_rate_one_is_exact_and_estimates_are_close():
    rng = np.random.default_rng(4)
    weights = 1.0 / np.arange(1, 50_001)
    trace = rng.permutation(50_000)[rng.choice(50_000, 400_000, p=weights / weights.sum())]
    frames = [500, 5000, 20000]
    exact = pfsim.mrc(trace, frames=frames)
    assert [r["faults"] for r in pfsim.mrc(trace, frames=frames, sample_rate=1.0).rows] == \
        [r["faults"] for r in exact.rows]
    sampled = pfsim.mrc(trace, frames=frames, sample_rate=0.1)
    for ours, truth in zip(sampled.rows, exact.rows, strict=True):
        assert abs(ours["miss_ratio"] - truth["miss_ratio"]) < 0.02
    assert abs(sampled.footprint - exact.footprint) / exact.footprint < 0.05


def test_rows_have_replays_names_and_default_frames():
    curve = pfsim.mrc(OSTEP_TRACE)
    assert [list(row) for row in curve.rows] == [["policy", "frames", "requests", "faults",
                                                  "miss_ratio"]] * 4
    assert [(row["frames"], row["faults"]) for row in curve.rows] == [(1, 13), (2, 11), (4, 6),
                                                                      (6, 6)]


def run_pfsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfsim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_rows_header_csv_and_plot(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(map(str, OSTEP_TRACE)))
    result = run_pfsim("mrc", "t.txt", "--frames", "3,4", "--csv", "c.csv", "--plot", "m.png",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2:] == [
        "# footprint 6 pages (24.0 KiB), compulsory misses 6",
        "policy=lru frames=3 requests=13 faults=9 miss_ratio=0.692308",
        "policy=lru frames=4 requests=13 faults=6 miss_ratio=0.461538"]
    assert (tmp_path / "c.csv").read_text().splitlines()[1] == f"lru,3,13,9,{9 / 13!r}"
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = run_pfsim("mrc", "t.txt", "--frames", "3", "--json", cwd=tmp_path)
    assert json.loads(result.stdout) == {"policy": "lru", "frames": 3, "requests": 13,
                                         "faults": 9, "miss_ratio": 9 / 13}


@pytest.mark.parametrize(("args", "message"), [
    (["--sample-rate", "0"], "pfsim: error: --sample-rate: expected a rate in (0, 1], got 0.0"),
    (["--plot", "nodir/m.png"], "pfsim: error: --plot: directory nodir does not exist"),
])
def test_cli_errors(tmp_path, args, message):
    (tmp_path / "t.txt").write_text("1\n2\n")
    result = run_pfsim("mrc", "t.txt", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
    assert not (tmp_path / "nodir").exists()
