"""``pfsim validate``: the verdict rule, the machine detection, pfsim's side of the cases on
hand-counted values, and the command itself on this machine's kernel (as CI runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pfsim.validate import EXACT, OFF, WITHIN, Report, Row, verdict
from pfsim.validate.cases import simulate
from pfsim.validate.host import kernel_version, large_folios, mount_of

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 27 0:27 / /tmp rw,relatime - tmpfs tmpfs rw,size=1024k,huge=always
31 27 0:28 / /tmpdata rw,relatime - xfs /dev/vdb rw
"""


def test_verdict_rule():
    """Both counts equal: exact; each within 10 % of the kernel's: within; else off (a count
    the kernel has as 0 must be 0)."""
    assert verdict((62, 1), (62, 1)) == EXACT
    assert verdict((605, 1), (600, 1)) == WITHIN  # 5 <= 60.5
    assert verdict((100, 1), (111, 1)) == OFF  # 11 > 10
    assert verdict((0, 10), (1, 10)) == OFF


def test_a_failing_anonymous_case_fails_the_run_a_file_case_within_10_percent_does_not():
    ok = Report(rows=[Row("anon-first-touch", 10, (10, 0), (10, 0), EXACT),
                      Row("file-seq-cold", 10, (100, 1), (95, 1), WITHIN),
                      Row("fork-child-read", 10, skipped="no fork")])
    assert ok.passed
    bad = Report(rows=[Row("zero-read-write", 10, (20, 0), (19, 0), WITHIN)])
    assert not bad.passed


def test_mount_lookup_takes_the_longest_mount_point():
    assert mount_of(Path("/home/x"), MOUNTINFO).fstype == "ext4"
    tmp = mount_of(Path("/tmp/a/b"), MOUNTINFO)
    assert (tmp.fstype, tmp.point, "huge=always" in tmp.options) == ("tmpfs", "/tmp", True)
    assert mount_of(Path("/tmpdata"), MOUNTINFO).fstype == "xfs"


def test_large_folio_table_and_version_parsing():
    assert kernel_version("6.18.44-fc-v1045") == (6, 18)
    assert kernel_version("garbage") == (0, 0)
    assert large_folios("ext4", (6, 16)) and not large_folios("ext4", (6, 15))
    assert large_folios("xfs", (5, 18)) and not large_folios("btrfs", (6, 18))


@pytest.mark.parametrize(("case", "expected"), [
    ("anon-first-touch", (1000, 0)),   # one zeroed page per first write
    ("zero-read-write", (2000, 0)),    # zero page on read, a new page on the write after it
    ("fork-child-read", (0, 0)),       # fork copies the PTEs (read-only): reads do not fault
    ("fork-child-write", (1000, 0)),   # every write breaks COW (a copy)
    ("fork-parent-rewrite", (1000, 0)),  # the child is gone: every write reuses its page
])
def test_pfsim_side_of_the_anonymous_cases(case, expected):
    assert simulate(case, 1000) == expected


def test_validate_passes_on_this_machines_kernel(tmp_path):
    """The command CI runs: every case at 1000 and 10000 pages against the kernel this test
    runs on; exit 0 means every anonymous case is exact and every file case within 10 %.
    (The default sizes add 100000 pages: about 35 s of CPU, too much for every CI run.)"""
    done = subprocess.run([sys.executable, "-m", "pfsim", "validate", "--sizes", "1000,10000"],
                          capture_output=True, text=True, timeout=1200, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "result: pass" in out
    for case in ("anon-first-touch", "zero-read-write", "fork-child-read", "fork-child-write",
                 "fork-parent-rewrite"):
        rows = [line for line in out.splitlines() if line.startswith(case + " ")]
        assert len(rows) == 2 and all(r.endswith(EXACT) for r in rows), out


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "ten"], "--sizes"),
    (["--sizes", "0"], "--sizes"),
    (["--cases", "anon-first-touch,nope"], "nope"),
    (["--dir", "/nonexistent/dir"], "--dir"),
])
def test_bad_flags_are_one_line_and_exit_2(args, message):
    done = subprocess.run([sys.executable, "-m", "pfsim", "validate", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pfsim: error:") and message in lines[0]
