"""``pfsim trace record``: the recorded pages equal an independent parse of valgrind's own lackey
log, the .npy header, and the one-line errors (no valgrind, no command) that leave no file."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pfsim.tracedriven.record import npy_header, record

LACKEY_DATA = re.compile(r" ([LSM]) ([0-9a-f]+),(\d+)\n")


def run_pfsim(*args, cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfsim", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("count", [0, 1, 40_191, 10**15])
def test_npy_header_loads_with_numpy(count):
    data = np.arange(min(count, 50), dtype="<i8")
    buffer = io.BytesIO(npy_header(data.size) + data.tobytes())
    assert np.array_equal(np.load(buffer), data)
    assert len(npy_header(count)) == 128


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_recorded_pages_equal_the_lackey_log(tmp_path):
    """valgrind run directly with --log-file, its L/S/M records parsed here by a regular
    expression (an access whose last byte is in the next page counts both pages), gives the
    same pages, in the same order, as pfsim trace record (same program, same environment)."""
    log = tmp_path / "true.lackey"
    subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={log}",
                    "/bin/true"], check=True, capture_output=True)
    expected = []
    for line in log.read_text().splitlines(keepends=True):
        match = LACKEY_DATA.fullmatch(line)
        if match:
            address, size = int(match[2], 16), int(match[3])
            expected.append(address // 4096)
            if (address + size - 1) // 4096 != address // 4096:
                expected.append((address + size - 1) // 4096)
    out = tmp_path / "true.npy"
    recording = record(["/bin/true"], out)
    pages = np.load(out)
    assert pages.dtype == np.dtype("<i8")
    assert pages.tolist() == expected
    assert recording.requests == len(expected)
    assert recording.distinct_pages == len(set(expected))
    assert recording.exit_status == 0


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_command_line_records_and_replays(tmp_path):
    done = run_pfsim("trace", "record", "-o", "t.npy", "--", "/bin/true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# recorded '/bin/true' under valgrind lackey (kinds LSM): ")
    replayed = run_pfsim("replay", "t.npy", "--policy", "lru", "--frames", "16", cwd=tmp_path)
    assert replayed.returncode == 0 and "policy=lru frames=16" in replayed.stdout


def test_no_valgrind_is_one_line_and_no_file(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "true").symlink_to(shutil.which("true"))
    env = dict(os.environ, PATH=str(bin_dir))
    done = run_pfsim("trace", "record", "-o", "t.npy", "--", "true", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pfsim: error: valgrind is not installed (pfsim trace record runs the command under "
        "valgrind --tool=lackey): install it, e.g. 'apt-get install valgrind'"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bin"]


@pytest.mark.parametrize(("args", "message"), [
    ((), "pfsim: error: COMMAND: expected a command to record"),
    (("--", "no-such-command-xyz"), "pfsim: error: COMMAND: no-such-command-xyz: command not "
                                    "found"),
    (("--page-size", "3KiB", "--", "true"), "pfsim: error: --page-size: expected a power of two"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    done = run_pfsim("trace", "record", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_the_output_may_not_be_the_program_recorded(tmp_path):
    """-o naming the program (a name given without .npy) would replace it with the trace."""
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    done = run_pfsim("trace", "record", "-o", "prog", "--", "./prog", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "pfsim: error: --out: prog is the program recorded, which would be written over"]
    assert program.read_text() == "#!/bin/sh\nexit 0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]
