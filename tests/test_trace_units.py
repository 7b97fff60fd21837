"""Byte addresses against page numbers: the unit is explicit, the same accesses written as
decimal bytes, hex bytes and page numbers give the same replay, and the warning fires on
decimal byte addresses read as pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pfsim.errors import ConfigError
from pfsim.trace import TraceReader, read_trace

# Addresses like a lackey trace's data accesses: heap near 0x4a00000, stack near 0x1fff000000.
RNG = np.random.default_rng(13)
PAGES = np.concatenate([0x4A00 + RNG.integers(0, 40, 300), 0x1FFF000 + RNG.integers(0, 8, 100)])
RNG.shuffle(PAGES)
ADDRESSES = PAGES * 4096 + RNG.integers(0, 512, PAGES.size) * 8  # 8-byte aligned offsets


def run_pfsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfsim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def traces(tmp_path):
    (tmp_path / "decbytes.txt").write_text("\n".join(map(str, ADDRESSES)) + "\n")
    (tmp_path / "hex.txt").write_text("\n".join(f"0x{a:x}" for a in ADDRESSES) + "\n")
    (tmp_path / "pages.txt").write_text("\n".join(map(str, PAGES)) + "\n")
    return tmp_path


def test_same_accesses_same_pages_once_the_unit_is_stated(traces):
    expected = PAGES.tolist()
    assert read_trace(traces / "decbytes.txt", unit="byte").tolist() == expected
    assert read_trace(traces / "hex.txt").tolist() == expected
    assert read_trace(traces / "hex.txt", unit="byte").tolist() == expected
    assert read_trace(traces / "pages.txt").tolist() == expected
    assert read_trace(traces / "pages.txt", unit="page").tolist() == expected
    # --unit page makes a 0x number a page number too
    assert read_trace(traces / "hex.txt", unit="page").tolist() == ADDRESSES.tolist()


def test_same_replay_rows_and_the_warning(traces):
    """The CLI gives identical rows for the three files; only the unstated decimal bytes warn."""
    rows = {}
    for name, extra in (("decbytes.txt", ["--unit", "byte"]), ("hex.txt", []),
                        ("pages.txt", []), ("decbytes.txt", [])):
        result = run_pfsim("replay", name, "--policy", "lru,fifo", "--frames", "16,64", *extra,
                           cwd=traces)
        assert result.returncode == 0, result.stderr
        rows[(name, bool(extra))] = [line for line in result.stdout.splitlines()
                                     if not line.startswith("#")]
        warned = "pfsim: warning:" in result.stderr
        assert warned == (name == "decbytes.txt" and not extra), result.stderr
    assert rows[("decbytes.txt", True)] == rows[("hex.txt", False)] == rows[("pages.txt", False)]
    assert rows[("decbytes.txt", False)] != rows[("pages.txt", False)]
    result = run_pfsim("replay", "decbytes.txt", "--policy", "lru", "--frames", "16", cwd=traces)
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning == [
        f"pfsim: warning: decbytes.txt: the numbers read as page numbers look like byte "
        f"addresses (100 % are multiples of 8, from {ADDRESSES.min():,} to {ADDRESSES.max():,}); "
        f"pass --unit byte if they are addresses, or --unit page to keep them as pages"]


def test_header_states_the_unit(traces):
    result = run_pfsim("replay", "hex.txt", "--policy", "lru", "--frames", "16", cwd=traces)
    assert result.stdout.splitlines()[:2] == [
        "# trace hex.txt: format text (from the content)",
        "# unit page for decimal numbers, byte for 0x numbers (default of text), page size 4KiB, "
        f"{PAGES.size:,} requests, {np.unique(PAGES).size:,} distinct pages"]
    result = run_pfsim("replay", "decbytes.txt", "--unit", "byte", "--policy", "lru",
                       "--frames", "16", cwd=traces)
    assert result.stdout.splitlines()[1].startswith("# unit byte (--unit), page size 4KiB")


def test_no_warning_for_plain_page_traces():
    """Sequential and random page numbers, even large ones, do not look like addresses."""
    for pages in (np.arange(5000), RNG.integers(0, 2**34, 5000)):
        reader = TraceReader("-")
        reader._stats[:] = [pages.size, int(np.count_nonzero(pages % 8 == 0)), pages.min(),
                            pages.max()]
        reader._decide_units(final=True)
        assert reader.warnings == []


def test_page_size(traces):
    """2 MiB pages: addresses >> 21; the header and frames in sizes follow the page size."""
    assert read_trace(traces / "hex.txt", page_size=2 << 20).tolist() == (PAGES >> 9).tolist()
    result = run_pfsim("replay", "hex.txt", "--page-size", "2MiB", "--policy", "lru",
                       "--frames", "4MiB,1", cwd=traces)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "page size 2MiB" in lines[1]
    assert [line.split()[1] for line in lines[2:]] == ["frames=2", "frames=1"]


@pytest.mark.parametrize(("size", "message"), [
    ("3000", "--page-size: expected a power of two from 512B to 1GiB"),
    ("2GiB", "--page-size: expected a power of two from 512B to 1GiB"),
    ("4kb", "--page-size: "),
])
def test_bad_page_size(traces, size, message):
    result = run_pfsim("replay", "hex.txt", "--page-size", size, "--policy", "lru",
                       "--frames", "4", cwd=traces)
    assert result.returncode == 2
    assert result.stderr.startswith(f"pfsim: error: {message}")


def test_unit_errors():
    with pytest.raises(ConfigError, match="^--unit: expected page or byte"):
        TraceReader("x.txt", unit="bytes")
