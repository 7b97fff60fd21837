"""Sweeps that run: on a Dask LocalCluster of two workers and serially, resumed, interrupted,
with failing points.

The reference for every point is a plain ``pfsim.run`` of its config (another path through the
code than the sweep's workers), and the reference for a resumed or interrupted sweep is an
uninterrupted one.  The scenarios are guest-only and take well under a second each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import pfsim
from pfsim.config import load_config
from pfsim.errors import PfsimError
from pfsim.sweeps import sweep
from pfsim.sweeps.execute import Engine, run_tasks
from pfsim.sweeps.run import run_sweep

TINY = """
[sim]
seed = 5
[guest]
vcpus = 2
memory = "16MiB"
[[processes]]
name = "kv"
vsegs = [{ name = "heap", type = "anon", size = "4MiB" }]
[[processes.threads]]
count = 2
steps = [{ op = "access", vseg = "heap", pattern = "zipf", alpha = 0.9, accesses = 3000, write_ratio = 0.3, think = "200ns" }]
"""
ALPHA = "processes[0].threads[0].steps[0].alpha"
TIMING = ["wall_s", "cpu_s"]


def write_sweep(tmp_path: Path, text: str, base: str = TINY, name: str = "s.toml") -> Path:
    (tmp_path / "base.toml").write_text(base)
    path = tmp_path / name
    path.write_text('base = "base.toml"\n' + text)
    return path


GRID = f"""
seeds = 2
[axes]
"guest.vcpus" = [1, 2]
"{ALPHA}" = [0.6, 1.2]
"""


def results(out: Path) -> dict[str, bytes]:
    return {d.name: (d / "result.json").read_bytes() for d in (out / "points").iterdir()}


def test_a_sweep_run_twice_computes_nothing_the_second_time(tmp_path):
    path = write_sweep(tmp_path, GRID)
    first = run_sweep(path, out=tmp_path / "o", engine=Engine(workers=2))
    assert (first.ran, first.skipped, len(first.failed)) == (8, 0, 0)
    parquet = (tmp_path / "o" / "sweep.parquet").read_bytes()
    stamps = {d.name: d.stat().st_mtime_ns for d in (tmp_path / "o" / "points").iterdir()}
    second = run_sweep(path, out=tmp_path / "o", engine=Engine(workers=2))
    assert (second.ran, second.skipped) == (0, 8)
    assert (tmp_path / "o" / "sweep.parquet").read_bytes() == parquet
    assert {d.name: d.stat().st_mtime_ns for d in (tmp_path / "o" / "points").iterdir()} == stamps

    frame = pd.read_parquet(tmp_path / "o" / "sweep.parquet")
    assert list(frame.columns[:4]) == ["guest.vcpus", ALPHA, "replicate", "seed"]
    assert list(zip(frame["guest.vcpus"], frame[ALPHA], frame["replicate"], strict=True)) == [
        (v, a, r) for v in (1, 2) for a in (0.6, 1.2) for r in (0, 1)]
    assert (frame["status"] == "ok").all() and (frame["wall_s"] > 0).all()
    csv = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert list(csv["work"]) == list(frame["work"]) and list(csv["seed"]) == list(frame["seed"])
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert list(summary["n"]) == [2, 2, 2, 2]


def test_parallel_serial_and_plain_runs_give_the_same_result_files(tmp_path):
    path = write_sweep(tmp_path, GRID)
    frame = sweep(path, tmp_path / "dask", workers=2)
    serial = sweep(path, tmp_path / "serial", serial=True)
    assert results(tmp_path / "dask") == results(tmp_path / "serial")
    pd.testing.assert_frame_equal(frame.drop(columns=TIMING), serial.drop(columns=TIMING))
    # each point is the base scenario with its axis values and its seed, as `pfsim run` runs it
    for row in frame.itertuples(index=False):
        config = load_config(tmp_path / "base.toml", seed=row.seed,
                             overrides=[f"guest.vcpus={row[0]}", f"{ALPHA}={row[1]}"])
        expected = pfsim.run(config).to_json().encode()
        assert (tmp_path / "dask" / "points" / row.point / "result.json").read_bytes() == expected
        assert row.work == json.loads(expected)["vms"]["vm0"]["processes"]["kv"]["work"]
    assert frame["seed"].nunique() == 8  # seeds differ and results with them
    assert frame["min_flt"].nunique() > 1


def test_adding_an_axis_value_runs_only_the_new_points_and_keeps_the_others(tmp_path):
    small = run_sweep(write_sweep(tmp_path, 'seeds = 2\n[axes]\n"guest.vcpus" = [1, 2]\n'),
                      out=tmp_path / "o", engine=Engine(serial=True))
    before = small.frame.drop(columns=TIMING)
    large = run_sweep(write_sweep(tmp_path, 'seeds = 2\n[axes]\n"guest.vcpus" = [1, 3, 2]\n'),
                      out=tmp_path / "o", engine=Engine(serial=True))
    assert (large.ran, large.skipped) == (2, 4)
    after = large.frame.drop(columns=TIMING)
    kept = after[after["guest.vcpus"] != 3].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)


SLOW = TINY.replace("accesses = 3000", "accesses = 100000").replace('"4MiB"', '"8MiB"')


def test_an_interrupted_sweep_resumes_and_ends_with_the_uninterrupted_table(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) after two points: exit 130
    with those points kept; the same command again finishes the rest; the table is the one of
    a sweep that was never interrupted."""
    path = write_sweep(tmp_path, 'seeds = 3\n[axes]\n"guest.vcpus" = [1, 2]\n', base=SLOW)
    reference = sweep(path, tmp_path / "reference", serial=True)
    out = tmp_path / "o"
    command = [sys.executable, "-m", "pfsim", "sweep", str(path), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len([p for p in (out / "points").glob("[!.]*")] if (out / "points").is_dir() else []) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("pfsim: interrupted with ")
    done = len(list((out / "points").glob("[!.]*")))
    assert 2 <= done < 6
    assert not list((out / "points").glob(".*"))  # nothing half-written left
    assert len(pd.read_parquet(out / "sweep.parquet")) == done  # the table of what is done

    # resumed in this process, one point after another: the points run are the same
    again = subprocess.run([*command[:-2], "--serial"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"ran={6 - done} skipped={done} failed=0" in again.stdout
    resumed = pd.read_parquet(out / "sweep.parquet")
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), reference.drop(columns=TIMING))
    assert results(out) == results(tmp_path / "reference")


SPIN = """
[sim]
seed = 1
[guest]
vcpus = 1
memory = "16MiB"
[[processes]]
name = "spin"
[[processes.threads]]
count = 4
steps = [{ op = "compute", units = 2000, unit = "1us" }]
"""


def test_a_point_over_its_timeout_fails_and_is_retried_only_when_asked(tmp_path):
    """The long point (1000 s of context switches) is stopped and recorded with its one-line
    error; the short one is done; a second run reports the failure without running it, and
    --retry-failed runs it again."""
    path = write_sweep(tmp_path, '[axes]\n"processes[0].threads[0].steps[0].units" = [2000, 1000000000]\n',
                       base=SPIN)
    first = run_sweep(path, out=tmp_path / "o", engine=Engine(workers=2), point_timeout=1.0)
    assert first.ran == 2 and len(first.failed) == 1
    point, error = first.failed[0]
    assert point.axes["processes[0].threads[0].steps[0].units"] == 1_000_000_000
    assert error.startswith("exceeded --point-timeout 1s (stopped at simulated time ")
    frame = pd.read_parquet(tmp_path / "o" / "sweep.parquet")
    assert list(frame["status"]) == ["ok", "failed"] and frame["work"].isna().tolist() == [False, True]
    assert frame["error"][1] == error
    record = json.loads((tmp_path / "o" / "failed" / f"{point.key}.json").read_text())
    assert record["error"] == error and record["command"].startswith("pfsim run ")

    second = run_sweep(path, out=tmp_path / "o", engine=Engine(serial=True), point_timeout=1.0)
    assert (second.ran, second.skipped, len(second.failed_before)) == (0, 1, 1)
    assert second.failed_before[0][1] == error
    third = run_sweep(path, out=tmp_path / "o", engine=Engine(serial=True), point_timeout=0.5,
                      retry_failed=True)
    assert (third.ran, third.skipped, len(third.failed)) == (1, 1, 1)
    assert third.failed[0][1].startswith("exceeded --point-timeout 0.5s")


def test_a_point_that_raises_is_a_failed_outcome_and_the_others_go_on():
    """A config the validator never saw (zero vCPUs) makes the simulation itself raise in its
    worker: the outcome carries the exception's one line and its traceback."""
    good = load_config({"guest": {"vcpus": 1, "memory": "16MiB"}, "processes": [
        {"name": "p", "threads": [{"steps": [{"op": "compute", "units": 10, "unit": "1us"}]}]}]})
    broken = good.model_copy(update={"guest": good.guest.model_copy(update={"vcpus": 0})})
    outcomes: dict[int, dict] = {}
    run_tasks([good, broken, good], Engine(workers=2), lambda i, o: outcomes.__setitem__(i, o))
    assert [outcomes[i]["status"] for i in range(3)] == ["ok", "failed", "ok"]
    assert outcomes[1]["error"] and "\n" not in outcomes[1]["error"]
    assert "Traceback" in outcomes[1]["detail"]
    assert outcomes[0]["result"] == outcomes[2]["result"] == pfsim.run(good).to_json()


def test_an_output_directory_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    path = write_sweep(tmp_path, "")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PfsimError, match="--out .*file: exists and is a file, not a directory"):
        run_sweep(path, out=tmp_path / "file", engine=Engine(serial=True))
