"""Streaming trace reads: gzip, zstd, standard input, and blocks that cut lines anywhere.

Expected pages come from the hand-written files or from plain Python over the same lines,
never from the reader under test.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.trace import TraceReader, read_trace


def test_gzip_and_zstd_are_undone_whatever_the_name(tmp_path):
    text = b"# pages\n5\n0x3000\n7\n"
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(text))
    (tmp_path / "t.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (tmp_path / "plain.txt").write_bytes(gzip.compress(text))  # misleading name
    for name in ("t.txt.gz", "t.zst", "plain.txt"):
        reader = TraceReader(tmp_path / name)
        assert np.concatenate([c.copy() for c in reader]).tolist() == [5, 3, 7]
    assert TraceReader(tmp_path / "t.zst").describe()["compression"] is None  # before reading
    reader = TraceReader(tmp_path / "t.zst")
    list(reader)
    assert reader.describe()["compression"] == "zstd"


def test_compressed_npy_streams_its_header(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.array([9, 8, 2**40], dtype=">u8"))  # big-endian, unsigned
    (tmp_path / "t.npy.gz").write_bytes(gzip.compress(buffer.getvalue()))
    assert read_trace(tmp_path / "t.npy.gz").tolist() == [9, 8, 2**40]


def test_truncated_gzip_is_a_one_line_error(tmp_path):
    data = gzip.compress(b"1\n2\n" * 10000)
    (tmp_path / "t.txt.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(Exception) as error:
        read_trace(tmp_path / "t.txt.gz")
    assert type(error.value).__name__ == "TraceFormatError"
    assert "t.txt.gz: cannot read the gzip data" in str(error.value)


def test_stdin_dash(tmp_path):
    """``-`` reads standard input, compressed or not, with the format from the content."""
    lackey = b"==7== Lackey\n L 00001000,8\n S 00003000,8\n"
    for data in (lackey, gzip.compress(lackey)):
        result = subprocess.run(
            [sys.executable, "-m", "pfsim", "replay", "-", "--policy", "lru", "--frames", "1"],
            input=data, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.decode().splitlines()
        assert lines[0] == "# trace -: format lackey (from the content)" + (
            ", gzip" if data != lackey else "") + ", lackey kinds LSM"
        assert lines[-1] == "policy=lru frames=1 requests=2 faults=2 miss_ratio=1.000000"


lines_strategy = st.lists(st.one_of(
    st.integers(0, 2**40).map(str),
    st.integers(0, 2**50).map(lambda a: f"0x{a:x}"),
    st.just(""), st.just("# a comment that is longer than a tiny block of bytes"),
    st.integers(0, 999).map(lambda p: f"  {p}  # trailing"),
), min_size=1, max_size=60)


def expected_text_pages(lines: list[str]) -> list[int]:
    """The text rules in plain Python: decimal = page, 0x = byte address >> 12."""
    pages = []
    for line in lines:
        token = line.split("#", 1)[0].strip()
        if token:
            pages.append(int(token, 16) >> 12 if token.startswith("0x") else int(token))
    return pages


@settings(max_examples=40, deadline=None)
@given(lines=lines_strategy, block=st.sampled_from([8, 16, 33, 64, 4096]),
       final_newline=st.booleans())
def test_blocks_cut_lines_anywhere(tmp_path_factory, lines, block, final_newline):
    """Tiny blocks (lines cut in two, lines longer than the block) read like one block."""
    path = tmp_path_factory.mktemp("blocks") / "t.txt"
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    expected = expected_text_pages(lines)
    reader = TraceReader(path, block_bytes=block)
    if not expected:
        with pytest.raises(Exception, match="expected at least one access"):
            list(reader)
        return
    assert np.concatenate([c.copy() for c in reader]).tolist() == expected


def test_bad_line_number_counts_lines_of_earlier_blocks(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("".join(f"{i}\n" for i in range(1000)) + "oops\n")
    with pytest.raises(Exception, match=r"t.txt:1001: expected a page number"):
        list(TraceReader(path, block_bytes=64))


def test_lackey_in_small_blocks(tmp_path):
    records = [f" L {0x1000 * i + 0xff8:08x},16" for i in range(200)]  # each straddles
    path = tmp_path / "t.lackey"
    path.write_text("==1== x\n" + "\n".join(records) + "\n")
    pages = np.concatenate([c.copy() for c in TraceReader(path, block_bytes=32)])
    assert pages.tolist() == [p for i in range(200) for p in (i, i + 1)]
