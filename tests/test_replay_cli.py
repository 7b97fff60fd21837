"""``pfsim replay``: the replay backend and the command line, one run per trace format, several
policies and sizes in one pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pfsim.errors import ConfigError
from pfsim.tracedriven.replay import replay

OSTEP_TRACE = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2]  # LRU: 9 faults in 3 frames, 6 distinct


def run_pfsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m pfsim`` with ``args`` in ``cwd``; capture text output."""
    return subprocess.run([sys.executable, "-m", "pfsim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def rows_of(stdout: str) -> list[str]:
    """The row lines of ``pfsim replay``'s plain output (without the ``#`` header)."""
    return [line for line in stdout.splitlines() if not line.startswith("#")]


def test_replay_rows(tmp_path):
    """One row per frame count, keys in the documented order, counts worked out by hand."""
    path = tmp_path / "t.txt"
    path.write_text("\n".join(map(str, OSTEP_TRACE)))
    rows = replay(path, policies=["lru"], frames=[3, 1, 100])
    assert [list(row) for row in rows] == [["policy", "frames", "requests", "faults",
                                            "miss_ratio"]] * 3
    assert [(row["frames"], row["faults"]) for row in rows] == [(3, 9), (1, 13), (100, 6)]
    assert rows[0]["policy"] == "lru"
    assert rows[0]["requests"] == 13
    assert rows[0]["miss_ratio"] == pytest.approx(9 / 13)
    assert isinstance(rows[0]["miss_ratio"], float)


def test_replay_unknown_policy_names_option(tmp_path):
    """An unknown policy is a ConfigError keyed ``--policy`` that lists the valid names."""
    with pytest.raises(ConfigError) as error:
        replay(tmp_path / "unread.txt", policies="belady", frames=[3])
    assert str(error.value).startswith(
        "--policy: unknown replacement policy 'belady'; valid policies: ")


def test_several_policies_and_sizes_in_one_pass(tmp_path):
    """``--policy lru,fifo,clock,opt`` gives one row per (policy, frames), policy-major, with
    the hand-worked OSTEP counts (see test_replacement_classic.py)."""
    (tmp_path / "t.txt").write_text("\n".join(map(str, OSTEP_TRACE)))
    result = run_pfsim("replay", "t.txt", "--policy", "lru,fifo,clock,opt", "--frames", "3,100",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [(line.split()[0], line.split()[1], line.split()[3]) for line in
            rows_of(result.stdout)] == [
        ("policy=lru", "frames=3", "faults=9"), ("policy=lru", "frames=100", "faults=6"),
        ("policy=fifo", "frames=3", "faults=10"), ("policy=fifo", "frames=100", "faults=6"),
        ("policy=clock", "frames=3", "faults=8"), ("policy=clock", "frames=100", "faults=6"),
        ("policy=opt", "frames=3", "faults=7"), ("policy=opt", "frames=100", "faults=6")]


def test_frames_ranges_sizes_and_csv(tmp_path):
    """``1:3``, ``8KiB`` (2 frames) and a CSV file with the same rows."""
    (tmp_path / "t.txt").write_text("\n".join(map(str, OSTEP_TRACE)))
    result = run_pfsim("replay", "t.txt", "--policy", "lru", "--frames", "1:3,8KiB,4:8:4",
                       "--csv", "out.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in rows_of(result.stdout)] == [
        "frames=1", "frames=2", "frames=3", "frames=4", "frames=8"]
    csv_lines = (tmp_path / "out.csv").read_text().splitlines()
    assert csv_lines[0] == "policy,frames,requests,faults,miss_ratio"
    assert csv_lines[3] == f"lru,3,13,9,{9 / 13!r}"


def write_formats(directory: Path) -> dict[str, Path]:
    """The OSTEP trace written in each format (addresses where the format has them)."""
    paths = {"text": directory / "t.txt", "csv": directory / "t.csv",
             "npy": directory / "t.npy", "lackey": directory / "t.lackey"}
    paths["text"].write_text("# OSTEP\n" + "\n".join(f"0x{page << 12:x}" for page in OSTEP_TRACE))
    paths["csv"].write_text("time,addr\n" + "\n".join(
        f"{time},{page * 4096 + 17}" for time, page in enumerate(OSTEP_TRACE)))
    np.save(paths["npy"], np.array(OSTEP_TRACE))
    paths["lackey"].write_text("==1== Lackey\n" + "\n".join(
        f" L {page << 12 | 0x10:08x},8" for page in OSTEP_TRACE) + "\n==1== done\n")
    return paths


@pytest.mark.parametrize("fmt", ["text", "csv", "npy", "lackey"])
def test_cli_each_format(tmp_path, fmt):
    """Every format replays to the same LRU faults; the plain output is key=value pairs."""
    path = write_formats(tmp_path)[fmt]
    result = run_pfsim("replay", path.name, "--policy", "lru", "--frames", "3,100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert rows_of(result.stdout) == [
        "policy=lru frames=3 requests=13 faults=9 miss_ratio=0.692308",
        "policy=lru frames=100 requests=13 faults=6 miss_ratio=0.461538",
    ]


def test_cli_json_and_format_override(tmp_path):
    """--json prints one object per frame count; --format reads a misleading suffix."""
    path = tmp_path / "trace.lackey"  # .lackey would mean lackey
    path.write_text("\n".join(map(str, OSTEP_TRACE)))
    result = run_pfsim("replay", path.name, "--policy", "opt", "--frames", "3,4", "--json",
                       "--format", "text", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [
        {"policy": "opt", "frames": 3, "requests": 13, "faults": 7, "miss_ratio": 7 / 13},
        {"policy": "opt", "frames": 4, "requests": 13, "faults": 6, "miss_ratio": 6 / 13},
    ]


@pytest.mark.parametrize(("args", "message"), [
    (["bad.txt", "--policy", "lru", "--frames", "3"],
     "pfsim: error: bad.txt:3: expected a page number or 0x address, got 'oops' "
     "(--skip-bad-lines skips lines that are not accesses, such as a program's own output)"),
    (["good.txt", "--policy", "lru", "--frames", "0"],
     "pfsim: error: --frames: frame counts must be positive, got '0'"),
    (["good.txt", "--policy", "lru", "--frames", "5:2"],
     "pfsim: error: --frames: range '5:2' ends before it starts"),
    (["good.txt", "--policy", "lru", "--frames", "6KiB"],
     "pfsim: error: --frames: 6KiB is not a whole number of 4,096-byte pages"),
    (["good.txt", "--policy", "lru", "--frames", "3", "--format", "xml"],
     "pfsim: error: --format: unknown trace format 'xml'; valid formats: text, csv, npy, "
     "lackey, oracleGeneral, perf, pinatrace"),
    (["good.txt", "--policy", "lru", "--frames", "3", "--csv", "nodir/out.csv"],
     "pfsim: error: --csv: directory nodir does not exist"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path, args, message):
    """A bad trace line or an unknown policy: exit status 2, one stderr line, no stdout."""
    (tmp_path / "bad.txt").write_text("1\n2\noops\n4\n")
    (tmp_path / "good.txt").write_text("1\n2\n")
    result = run_pfsim("replay", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""


def test_unknown_policy_on_the_command_line(tmp_path):
    (tmp_path / "good.txt").write_text("1\n2\n")
    result = run_pfsim("replay", "good.txt", "--policy", "lru,belady", "--frames", "3",
                       cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("pfsim: error: --policy: unknown replacement policy "
                                    "'belady'; valid policies: ")


def test_python_api_takes_arrays_and_frame_strings():
    """pfsim.replay on an array (pages, or byte addresses with unit="byte") gives the
    hand-worked OSTEP counts (FIFO, 4 frames: 7 0 1 2 load, 3 evicts 7, 4 evicts 0, 0 evicts 1:
    7 faults); the rows make a DataFrame."""
    import pandas as pd

    import pfsim

    rows = pfsim.replay(np.array(OSTEP_TRACE), policies=["lru", "fifo"], frames="3:4")
    table = pd.DataFrame(rows)
    assert table[["policy", "frames", "faults"]].values.tolist() == [
        ["lru", 3, 9], ["lru", 4, 6], ["fifo", 3, 10], ["fifo", 4, 7]]
    as_bytes = pfsim.replay(np.array(OSTEP_TRACE) * 8192 + 100, policies="lru", frames=[3],
                            unit="byte", page_size="8KiB")
    assert as_bytes[0]["faults"] == 9
    assert rows.trace.distinct_pages == 6


@pytest.mark.parametrize(("command", "flag", "path"), [
    (["replay", "good.txt", "--policy", "lru", "--frames", "3", "--csv"], "--csv", "/proc/x.csv"),
    (["mrc", "good.txt", "--csv"], "--csv", "/proc/x.csv"),
    (["mrc", "good.txt", "--plot"], "--plot", "/proc/x.png"),
    (["trace", "record", "-o"], "--out", "/proc/x.npy"),
])
def test_an_output_file_that_cannot_be_created_is_refused_before_the_work(tmp_path, command,
                                                                          flag, path):
    """/proc lets even root pass ``access(W_OK)`` but creates no file: the output is tried
    before the trace is read (or the program recorded), one line, exit 2, no row printed."""
    (tmp_path / "good.txt").write_text("1\n2\n")
    extra = ["--", "true"] if command[0] == "trace" else []
    result = run_pfsim(*command, path, *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pfsim: error: {flag}: cannot create a file "
                                                   f"in /proc"), result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt"]


def test_an_image_type_matplotlib_cannot_write_is_refused_before_the_work(tmp_path):
    (tmp_path / "good.txt").write_text("1\n2\n")
    result = run_pfsim("mrc", "good.txt", "--plot", "curve.xyz", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "pfsim: error: --plot: curve.xyz: the file name must end in .png, .svg, .pdf, .eps, "
        ".ps, .jpg, .jpeg, .tif, .tiff or .webp"]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt"]


@pytest.mark.parametrize("command", [["replay", "--policy", "lru"], ["mrc"]])
def test_a_frame_count_beyond_64_bits_is_a_user_error(tmp_path, command):
    (tmp_path / "good.txt").write_text("1\n2\n")
    result = run_pfsim(command[0], "good.txt", *command[1:], "--frames", "3,99999999999999999999",
                       cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "pfsim: error: --frames: '99999999999999999999' is more than 2**63-1 frames"]
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["replay", "--policy", "lru", "--frames", "3"], ["mrc"]])
def test_the_csv_file_may_not_be_the_trace_it_reads(tmp_path, command):
    """--csv naming the trace wrote the rows over it once the replay was done: the trace was
    lost."""
    (tmp_path / "good.txt").write_text("1\n2\n")
    result = run_pfsim(command[0], "good.txt", *command[1:], "--csv", "./good.txt",
                       cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "pfsim: error: --csv: good.txt is the trace TRACE, which would be written over"]
    assert result.stdout == "" and (tmp_path / "good.txt").read_text() == "1\n2\n"


@pytest.mark.parametrize("seed", ["-5", "99999999999999999999999"])
def test_a_seed_outside_0_to_2_63_is_refused_as_sim_seed_is(tmp_path, seed):
    """replay took any integer (negative, or past 64 bits) where run's sim.seed is 0..2**63-1."""
    (tmp_path / "good.txt").write_text("1\n2\n3\n1\n")
    result = run_pfsim("replay", "good.txt", "--policy", "random", "--frames", "2",
                       "--seed", seed, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"pfsim: error: Invalid value for '--seed': {seed} is not in the range "
        "0<=x<=9223372036854775807. (see 'pfsim replay --help')"]
    assert result.stdout == ""
