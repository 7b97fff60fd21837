"""Trace readers: each format on small hand-written files, compression, stdin, units, format
detection, block boundaries, and one-line errors naming file, line and a hint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.errors import ConfigError, TraceFormatError
from pfsim.trace import TraceReader, read_trace
from pfsim.trace.formats import guess_format, sniff_format, suffix_format


def detect_format(path: Path) -> str:
    """The format the reader picks for ``path`` without --format."""
    return TraceReader(path).detect()

# The first lines valgrind 3.19 wrote for `valgrind --tool=lackey --trace-mem=yes /bin/true`
# (its empty banners end with a space, hence \x20), plus two later records of the same run:
# a modify, and an instruction fetch that straddles pages 0x4014 and 0x4015
# (0x4014fff + 5 - 1 = 0x4015003).
LACKEY_EXCERPT = """\
==2586== Lackey, an example Valgrind tool
==2586== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote.
==2586== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==2586== Command: /bin/true
==2586== Parent PID: 2582
==2586==\x20
I  0401ab70,3
I  0401ab73,5
 S 1fff000768,8
 L 04222cac,8
 M 0421c7f0,4
I  04014fff,5
==2586==\x20
==2586== Counted 0 calls to main()
"""
LACKEY_PAGES = [0x401A, 0x401A, 0x1FFF000, 0x4222, 0x421C, 0x4014, 0x4015]  # kinds ILSM
LACKEY_DATA_PAGES = [0x1FFF000, 0x4222, 0x421C]  # the default kinds, LSM

# `perf record -e page-faults -c 1 -d -- ls /` then `perf script -F comm,tid,time,event,addr`
# (perf 6.x on this project's machine), first three samples, plus a tracepoint sample of
# `perf record -e exceptions:page_fault_user` in perf script's default layout.
PERF_EXCERPT = """\
              ls 23894  5559.585075: page-faults:     55c4cb63d5c0
              ls 23894  5559.585103: page-faults:     7f5712cc7110
              ls 23894  5559.585121: page-faults:u:     7ffe741592b9
              ls 23894 [001]  5559.585200: exceptions:page_fault_user: address=0x7f5712cc8000 \
ip=0x7f5712cc7110 error_code=0x6
"""
PERF_PAGES = [0x55C4CB63D, 0x7F5712CC7, 0x7FFE74159, 0x7F5712CC8]


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_text_decimal_pages_hex_addresses_comments_and_blank_lines(tmp_path):
    """Decimal is a page number, 0x is a byte address (>> 12); comments and blanks are skipped."""
    path = write(tmp_path, "t.txt", "# header comment\n5\n\n  0x3000  \n0X1fff # inline\n\t7\r\n12")
    assert read_trace(path).tolist() == [5, 3, 1, 7, 12]
    assert read_trace(path).dtype == np.int64


def test_text_fast_path_and_general_path_agree(tmp_path):
    """A plain decimal file (fast path) and the same numbers with a comment give equal arrays."""
    pages = np.random.default_rng(3).integers(0, 10**15, 1000)
    plain = write(tmp_path, "plain.txt", "\n".join(map(str, pages)) + "\n")
    commented = write(tmp_path, "commented.txt", "# c\n" + "\n".join(map(str, pages)) + "\n")
    assert read_trace(plain).tolist() == pages.tolist()
    assert read_trace(commented).tolist() == pages.tolist()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.booleans(), st.integers(0, 4095)),
                min_size=1, max_size=40))
def test_text_round_trip(tmp_path_factory, accesses):
    """Any mix of decimal pages and hex addresses reads back as the pages written."""
    lines = [f"0x{page << 12 | offset:x}" if as_address else str(page)
             for page, as_address, offset in accesses]
    path = tmp_path_factory.mktemp("rt") / "t.trace"
    path.write_text("\n".join(lines))
    assert read_trace(path).tolist() == [page for page, _, _ in accesses]


@pytest.mark.parametrize(("content", "shown"), [
    ("1\n2\nzz\n4\n", "zz"),
    ("1\n2\n3 4\n", "3 4"),
    ("1\n2\n-5\n", "-5"),
    ("1\n2\n99999999999999999999\n", "99999999999999999999"),
    ("1\n2\n0x\n", "0x"),
    ("1\n2\n12,13 # two columns\n", "12,13"),
])
def test_text_bad_line_names_file_line_and_content(tmp_path, monkeypatch, content, shown):
    """The error is one line: file:line, what was expected and what the line held."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "trace.txt", content)
    with pytest.raises(TraceFormatError) as error:
        read_trace("trace.txt")
    hint = "this line looks like csv output: try --format csv" if "," in shown else \
        "--skip-bad-lines skips lines that are not accesses, such as a program's own output"
    assert str(error.value) == (
        f"trace.txt:3: expected a page number or 0x address, got {shown!r} ({hint})")


def test_csv_header_selects_column_and_unit(tmp_path):
    """``page``/``vpn`` columns are page numbers; ``addr``/``address`` are byte addresses."""
    by_page = write(tmp_path, "a.csv", "time,page,op\n0,5,r\n1,0x10,w\n")
    by_vpn = write(tmp_path, "b.csv", "# exported\nvpn\n9\n")
    by_addr = write(tmp_path, "c.csv", "ts, addr ,size\n0,8192,8\n1,0x5fff,4\n")
    by_address = write(tmp_path, "d.csv", "address\n4095\n4096\n")
    assert read_trace(by_page).tolist() == [5, 16]
    assert read_trace(by_vpn).tolist() == [9]
    assert read_trace(by_addr).tolist() == [2, 5]
    assert read_trace(by_address).tolist() == [0, 1]


def test_csv_without_header_reads_first_column_with_text_rules(tmp_path):
    """No header: the first column, decimal as page numbers and 0x as addresses."""
    path = write(tmp_path, "t.csv", "5,100\n0x2000,7\n")
    assert read_trace(path).tolist() == [5, 2]


@pytest.mark.parametrize(("content", "message"), [
    ("time,obj\n1,2\n", "t.csv:1: expected a header with a column named page, vpn, obj_id, "
                        "addr, address, got 'time,obj' (name the column with --column NAME)"),
    ("time,addr\n1,4096\n2\n", "t.csv:3: expected at least 2 comma-separated fields "
                               "(column 'addr'), got '2'"),
    ("time,page\n1,4\n2,x9\n", "t.csv:3: expected a number in column 'page', got '2,x9'"),
    ("1,2\n3,4\nfoo,5\n", "t.csv:3: expected a page number or 0x address, got 'foo,5'"),
])
def test_csv_errors(tmp_path, monkeypatch, content, message):
    """CSV errors name the line and the column that was expected."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "t.csv", content)
    with pytest.raises(TraceFormatError) as error:
        read_trace("t.csv")
    assert str(error.value).split(" (--skip-bad-lines")[0] == message


def test_npy_reads_any_integer_dtype(tmp_path):
    """A 1-D integer array of page numbers comes back as int64."""
    path = tmp_path / "t.npy"
    np.save(path, np.array([3, 1, 2], dtype=np.uint32))
    pages = read_trace(path)
    assert pages.tolist() == [3, 1, 2]
    assert pages.dtype == np.int64


@pytest.mark.parametrize(("array", "expected"), [
    (np.zeros((2, 2), dtype=np.int64), "expected a 1-D integer array of page numbers, got int64"),
    (np.array([1.5]), "expected a 1-D integer array of page numbers, got float64"),
    (np.array([4, -1]), "element 1: expected a page number in 0..2**63-1, got -1"),
])
def test_npy_errors(tmp_path, array, expected):
    """Arrays that are not 1-D non-negative integers are rejected with the reason."""
    path = tmp_path / "t.npy"
    np.save(path, array)
    with pytest.raises(TraceFormatError) as error:
        read_trace(path)
    assert str(error.value).startswith(f"{path}: {expected}") or \
        str(error.value).startswith(f"{path}: element")


def test_npy_corrupt_file(tmp_path):
    """A file named .npy that is not one is a TraceFormatError, not a numpy exception."""
    path = write(tmp_path, "t.npy", "1\n2\n")
    with pytest.raises(TraceFormatError, match="t.npy: expected a .npy array file"):
        read_trace(path)


def test_lackey_real_excerpt_with_straddling_access(tmp_path):
    """Banners are skipped, every I/L/S/M record is one page, a straddling access gives two."""
    path = write(tmp_path, "t.lackey", LACKEY_EXCERPT)
    assert read_trace(path, lackey_kinds="ILSM").tolist() == LACKEY_PAGES
    assert read_trace(path).tolist() == LACKEY_DATA_PAGES
    assert read_trace(path, lackey_kinds="I").tolist() == [0x401A, 0x401A, 0x4014, 0x4015]


def test_lackey_straddle_boundaries(tmp_path):
    """An access ending on the page's last byte stays in one page; one byte more crosses."""
    path = write(tmp_path, "t.out", " L 00000ff8,8\n L 00000ff9,8\n S 00001000,1\n")
    assert read_trace(path).tolist() == [0, 0, 1, 1]
    assert read_trace(path, page_size=8192).tolist() == [0, 0, 0]


@pytest.mark.parametrize(("line", "expected"), [
    (" X 0400d7d4,8", "expected a lackey record such as ' L 04222cac,8'"),
    (" L 0400d7d4", "expected a lackey record such as ' L 04222cac,8'"),
    (" L 0400zz,8", "expected a lackey record such as ' L 04222cac,8'"),
    (" L 0400d7d4,8 junk", "expected a lackey record such as ' L 04222cac,8'"),
    (" L 00000ff8,8192", "expected an access of at most 4096 bytes"),
    ("hello from the program", "expected a lackey record such as ' L 04222cac,8'"),
])
def test_lackey_errors(tmp_path, monkeypatch, line, expected):
    """A malformed record names its line (banners count as lines)."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "t.lackey", f"==1== banner\nI  0400d7d4,8\n{line}\n")
    with pytest.raises(TraceFormatError) as error:
        read_trace("t.lackey")
    assert str(error.value) == (f"t.lackey:3: {expected}, got {line.strip()!r} (--skip-bad-lines "
                                f"skips lines that are not accesses, such as a program's own "
                                f"output)")


@pytest.mark.parametrize(("name", "expected"), [
    ("a.CSV", "csv"), ("a.npy", "npy"), ("a.lackey", "lackey"), ("a.perf", "perf"),
    ("a.pinatrace", "pinatrace"), ("w.oracleGeneral", "oracleGeneral"),
    ("w.oracleGeneral.zst", "oracleGeneral"), ("w.oracleGeneral.bin.zst", "oracleGeneral"),
    ("a.csv.gz", "csv"), ("a.txt", None), ("a.out", None), ("a.log", None),
])
def test_format_from_specific_suffixes_only(name, expected):
    """Suffixes that name a format decide it; generic ones (.txt, .out...) leave it to content."""
    assert suffix_format(name) == expected


def test_format_guessed_from_generic_suffix_without_content():
    """With nothing to look at, .out still suggests lackey and anything else text."""
    assert [guess_format(name) for name in ("a.out", "a.txt", "a")] == ["lackey", "text", "text"]


def test_format_sniffed_from_content(tmp_path):
    """Generic or unknown suffixes are decided by the content."""
    lackey = write(tmp_path, "run.log", LACKEY_EXCERPT)
    lackey_txt = write(tmp_path, "run.txt", "program says hi\n" + LACKEY_EXCERPT)
    bare_lackey = write(tmp_path, "run2.log", "I  0401ab70,3\n")
    csv = write(tmp_path, "t.dat", "# comment\n\npage,op\n1,r\n")
    text = write(tmp_path, "t.dat2", "# comment\n0x1000\n")
    pin = write(tmp_path, "pin.out", "0x7f3c1a2b4c10: R 0x7ffd5e6f7a88\n#eof\n")
    perf = write(tmp_path, "faults.txt", PERF_EXCERPT)
    npy = tmp_path / "array.bin"
    with npy.open("wb") as handle:
        np.save(handle, np.array([4, 5]))
    assert [detect_format(path) for path in (lackey, lackey_txt, bare_lackey, csv, text, pin,
                                             perf, npy)] == [
        "lackey", "lackey", "lackey", "csv", "text", "pinatrace", "perf", "npy"]
    assert read_trace(npy).tolist() == [4, 5]
    assert read_trace(csv).tolist() == [1]
    assert sniff_format(b"") is None


def test_format_argument_overrides_content(tmp_path):
    """``fmt`` wins: a .txt file holding a CSV header is read as CSV."""
    path = write(tmp_path, "t.txt", "addr\n8192\n")
    assert read_trace(path, fmt="csv").tolist() == [2]
    with pytest.raises(TraceFormatError):
        read_trace(path)


def test_missing_empty_and_unknown_format(tmp_path):
    """A missing file and a file without accesses are TraceFormatErrors; a bad fmt a ConfigError."""
    with pytest.raises(TraceFormatError, match="nothere.txt: no such file"):
        read_trace(tmp_path / "nothere.txt")
    with pytest.raises(TraceFormatError, match="expected at least one access"):
        read_trace(write(tmp_path, "empty.txt", "# nothing\n\n"))
    with pytest.raises(ConfigError, match="unknown trace format 'xml'"):
        read_trace(write(tmp_path, "t.txt", "1\n"), fmt="xml")


def test_perf_script_samples(tmp_path):
    """Each fault sample is the page of its address (software event or tracepoint)."""
    path = write(tmp_path, "t.perf", PERF_EXCERPT)
    assert read_trace(path).tolist() == PERF_PAGES


def test_perf_default_layout_is_refused_with_the_command_to_use(tmp_path):
    """perf script's default fields print the ip, not the address: say how to print it."""
    path = write(tmp_path, "t.perf", "              ls 23894  5559.585075:          1 "
                 "page-faults:  ffffffff8177819a elf_load+0x28a ([kernel.kallsyms])\n")
    with pytest.raises(TraceFormatError, match="perf script -F comm,tid,time,event,addr"):
        read_trace(path)


def test_pinatrace_lines(tmp_path):
    """R and W lines are accesses to the page of the second address; #eof is skipped."""
    path = write(tmp_path, "t.pinatrace", "0x7f3c1a2b4c10: R 0x7ffd5e6f7a88\n"
                 "0x7f3c1a2b4c17: W 0x55d0c0a1b2c8\n#eof\n")
    assert read_trace(path).tolist() == [0x7FFD5E6F7, 0x55D0C0A1B]


def test_pinatrace_bad_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "t.pinatrace", "0x7f3c1a2b4c10: R 0x7ffd5e6f7a88\n0x1: X 0x2\n")
    with pytest.raises(TraceFormatError, match=r"^t.pinatrace:2: expected a pinatrace line"):
        read_trace("t.pinatrace")


def test_oracle_general_records(tmp_path):
    """24-byte packed records; obj_id is the page (or the address with unit byte)."""
    records = np.zeros(3, dtype=[("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    records["id"] = [7, 2**40, 7]
    path = tmp_path / "w.oracleGeneral"
    records.tofile(path)
    assert path.stat().st_size == 72
    assert read_trace(path).tolist() == [7, 2**40, 7]
    assert read_trace(path, unit="byte").tolist() == [0, 2**28, 0]
    truncated = tmp_path / "cut.oracleGeneral"
    truncated.write_bytes(path.read_bytes()[:50])
    with pytest.raises(TraceFormatError, match="record 2: the file ends inside a 24-byte record"):
        read_trace(truncated)


@pytest.mark.parametrize(("header", "column", "expected"), [
    ("ts,obj_id,size", None, [10, 11]),          # libCacheSim's csv names: obj_id is a page
    ("ts,obj_id,size", "size", [4096, 8192]),    # any column, by name
    ("ts,obj_id,size", "3", [4096, 8192]),       # or by 1-based number
    ("ts,key,len", "KEY", [10, 11]),             # names are case-insensitive
])
def test_csv_column_option(tmp_path, header, column, expected):
    path = write(tmp_path, "t.csv", f"{header}\n0,10,4096\n1,11,8192\n")
    assert read_trace(path, column=column).tolist() == expected


def test_csv_column_errors(tmp_path):
    path = write(tmp_path, "t.csv", "ts,obj_id\n0,10\n")
    with pytest.raises(ConfigError, match=r"^--column: no column 'nope' in the header .*"
                                          r"columns: ts, obj_id"):
        read_trace(path, column="nope")
    with pytest.raises(ConfigError, match="^--column: applies to csv traces"):
        read_trace(write(tmp_path, "t.txt", "1\n"), column="page")


def test_lackey_kinds_option_errors(tmp_path):
    path = write(tmp_path, "t.lackey", LACKEY_EXCERPT)
    with pytest.raises(ConfigError, match="^--lackey-kinds: expected letters of ILSM"):
        read_trace(path, lackey_kinds="LX")
    with pytest.raises(ConfigError, match="^--unit: lackey traces hold byte addresses"):
        read_trace(path, unit="page")


def test_skip_bad_lines_counts_and_reports(tmp_path):
    """Program output mixed into a lackey log: skipped, counted, the first one reported."""
    path = write(tmp_path, "mixed.lackey", "==1== Lackey\n L 00001000,8\nHello, world!\n"
                 " S 00002000,8\ntotal: 3 files\n M 00003004,4\n")
    reader = TraceReader(path, skip_bad_lines=True)
    pages = np.concatenate([chunk.copy() for chunk in reader])
    assert pages.tolist() == [1, 2, 3]
    assert reader.bad_lines == 2
    assert reader.first_bad == (f"{path}:3: expected a lackey record such as ' L 04222cac,8', "
                                f"got 'Hello, world!'")
    with pytest.raises(TraceFormatError, match=r"mixed.lackey:3: .*--skip-bad-lines"):
        read_trace(path)


def test_text_file_holding_lackey_output_gets_a_hint(tmp_path, monkeypatch):
    """Read as text (forced), a lackey record names the format that would fit."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "trace.txt", "5\n L 04222cac,8\n")
    with pytest.raises(TraceFormatError) as error:
        read_trace("trace.txt", fmt="text")
    assert str(error.value) == ("trace.txt:2: expected a page number or 0x address, got "
                                "'L 04222cac,8' (this line looks like lackey output: try "
                                "--format lackey)")
