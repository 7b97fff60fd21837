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
from pfsim.sweeps.execute import Engine
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


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """GRID run once on a LocalCluster of two workers: (sweep file, output, the run)."""
    home = tmp_path_factory.mktemp("grid")
    path = write_sweep(home, GRID)
    return path, home / "o", run_sweep(path, out=home / "o", engine=Engine(workers=2))


def test_a_sweep_run_twice_computes_nothing_the_second_time(grid):
    path, out, first = grid
    assert (first.ran, first.skipped, len(first.failed)) == (8, 0, 0)
    parquet = (out / "sweep.parquet").read_bytes()
    stamps = {d.name: d.stat().st_mtime_ns for d in (out / "points").iterdir()}
    second = run_sweep(path, out=out, engine=Engine(workers=2))
    assert (second.ran, second.skipped) == (0, 8)
    assert (out / "sweep.parquet").read_bytes() == parquet
    assert {d.name: d.stat().st_mtime_ns for d in (out / "points").iterdir()} == stamps

    frame = pd.read_parquet(out / "sweep.parquet")
    assert list(frame.columns[:4]) == ["guest.vcpus", ALPHA, "replicate", "seed"]
    assert list(zip(frame["guest.vcpus"], frame[ALPHA], frame["replicate"], strict=True)) == [
        (v, a, r) for v in (1, 2) for a in (0.6, 1.2) for r in (0, 1)]
    assert (frame["status"] == "ok").all() and (frame["wall_s"] > 0).all()
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv["work"]) == list(frame["work"]) and list(csv["seed"]) == list(frame["seed"])
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["n"]) == [2, 2, 2, 2]


def test_parallel_serial_and_plain_runs_give_the_same_result_files(grid, tmp_path):
    path, out, _run = grid
    frame = pd.read_parquet(out / "sweep.parquet")
    serial = sweep(path, tmp_path / "serial", serial=True)
    assert results(out) == results(tmp_path / "serial")
    pd.testing.assert_frame_equal(frame.drop(columns=TIMING), serial.drop(columns=TIMING))
    # each point is the base scenario with its axis values and its seed, as `pfsim run` runs it
    for row in frame.itertuples(index=False):
        config = load_config(path.parent / "base.toml", seed=row.seed,
                             overrides=[f"guest.vcpus={row[0]}", f"{ALPHA}={row[1]}"])
        expected = pfsim.run(config).to_json().encode()
        assert (out / "points" / row.point / "result.json").read_bytes() == expected
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
    command = [sys.executable, "-m", "pfsim", "sweep", str(path), "--out", str(out),
               "--workers", "2"]
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
    assert not list((out / "points").glob(".*"))
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
    path = write_sweep(tmp_path,
                       '[axes]\n"processes[0].threads[0].steps[0].units" = [2000, 1000000000]\n',
                       base=SPIN)
    first = run_sweep(path, out=tmp_path / "o", engine=Engine(workers=2), point_timeout=1.0)
    assert first.ran == 2 and len(first.failed) == 1
    point, error = first.failed[0]
    assert point.axes["processes[0].threads[0].steps[0].units"] == 1_000_000_000
    assert error.startswith("exceeded --point-timeout 1s (stopped at simulated time ")
    frame = pd.read_parquet(tmp_path / "o" / "sweep.parquet")
    assert list(frame["status"]) == ["ok", "failed"]
    assert frame["work"].isna().tolist() == [False, True]
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


def test_an_output_directory_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    path = write_sweep(tmp_path, "")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PfsimError, match="--out .*file: exists and is a file, not a directory"):
        run_sweep(path, out=tmp_path / "file", engine=Engine(serial=True))


def _stuck(config, timeout_s):
    """A point that gives the simulation no chance to stop (as a setup that takes minutes)."""
    time.sleep(120)


def test_failing_points_are_outcomes_and_the_others_go_on(monkeypatch):
    """A point that does not stop: past --point-timeout plus the grace, the client records it as
    failed, cancels it and restarts its worker, which then runs the next points.  A config the
    validator never saw (zero vCPUs) makes the simulation itself raise in its worker: the
    outcome carries the exception's one line and its traceback."""
    import cloudpickle

    from pfsim.sweeps import execute

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    monkeypatch.setattr(execute, "HARD_GRACE_S", 0.5)
    config = load_config({"guest": {"vcpus": 1, "memory": "16MiB"}, "processes": [
        {"name": "p", "threads": [{"steps": [{"op": "compute", "units": 10, "unit": "1us"}]}]}]})
    outcomes: dict[int, dict] = {}
    with execute._client(Engine(workers=1), 1) as client:
        started = time.monotonic()
        execute._run_on_dask(client, [config], ["stuck"], outcomes.__setitem__, 0.5, call=_stuck)
        assert time.monotonic() - started < 30
        assert outcomes[0]["status"] == "failed"
        assert outcomes[0]["error"] == ("exceeded --point-timeout 0.5s and did not stop; its "
                                        "worker was restarted")
        broken = config.model_copy(update={"guest": config.guest.model_copy(update={"vcpus": 0})})
        outcomes.clear()
        execute._run_on_dask(client, [config, broken, config], ["a", "b", "c"],
                             outcomes.__setitem__, 5.0)
    assert [outcomes[i]["status"] for i in range(3)] == ["ok", "failed", "ok"]
    assert outcomes[1]["error"] and "\n" not in outcomes[1]["error"]
    assert "Traceback" in outcomes[1]["detail"]
    assert outcomes[0]["result"] == outcomes[2]["result"] == pfsim.run(config).to_json()


def test_sigterm_to_the_sweep_alone_stops_it_and_its_workers(tmp_path):
    """``kill PID`` (SIGTERM to the command only, not its process group): exit 143 with the
    finished points kept, and the Dask workers the sweep started are gone with it."""
    path = write_sweep(tmp_path, 'seeds = 3\n[axes]\n"guest.vcpus" = [1, 2]\n', base=SLOW)
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "pfsim", "sweep", str(path), "--out", str(out),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len([p for p in (out / "points").glob("[!.]*")] if (out / "points").is_dir() else []) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("pfsim: terminated with ")
    assert not list((out / "points").glob(".*"))
    time.sleep(1.0)  # the workers' nannies notice their parent is gone
    survivors = subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True, text=True)
    alive = [line for line in survivors.stdout.splitlines() if "<defunct>" not in line]
    assert alive == [], "worker processes outlived the sweep"  # (zombies wait for init)
