"""``pfsim sweep`` and ``pfsim run --compare`` on the command line: one-line errors with exit
status 2 and nothing written, several --compare keys as a grid run in parallel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pfsim.api import run
from pfsim.config import load_config

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


def pfsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pfsim", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize(("axes", "message"), [
    ('"guest.vcpu" = [1, 2]', "s.toml: axis guest.vcpu = 1: unknown key; allowed here: "),
    ('"guest.vcpus" = []', "s.toml: axis guest.vcpus: empty list; give at least one value"),
    ('"guest.vcpus" = [2, "four"]',
     's.toml: axis guest.vcpus = "four": input should be a valid integer'),
])
def test_a_bad_sweep_file_exits_2_with_one_line_naming_the_axis(tmp_path, axes, message):
    (tmp_path / "base.toml").write_text(TINY)
    (tmp_path / "s.toml").write_text(f'base = "base.toml"\nseeds = 2\n[axes]\n{axes}\n')
    proc = pfsim("sweep", "s.toml", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pfsim: error: "), proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "o").exists() and proc.stdout == ""


@pytest.mark.parametrize(("args", "message"), [
    (("--workers", "0"), "--workers"),
    (("--point-timeout", "0"), "--point-timeout"),
    (("--scheduler", "tcp://127.0.0.1:8786", "--serial"),
     "--scheduler runs on an existing cluster"),
])
def test_bad_sweep_flags_exit_2(tmp_path, args, message):
    (tmp_path / "base.toml").write_text(TINY)
    (tmp_path / "s.toml").write_text('base = "base.toml"\n')
    proc = pfsim("sweep", "s.toml", "--out", "o", *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_several_compare_keys_run_every_combination(tmp_path):
    """Two --compare keys: four variants with the same seed, each result.json the one a plain
    run of that variant gives, whether they ran in parallel or one after another."""
    (tmp_path / "base.toml").write_text(TINY)
    grid = ("--compare", "guest.vcpus=1,2", "--compare", f"{ALPHA}=0.6,1.2")
    proc = pfsim("run", "base.toml", *grid, "--out", "par", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    finals = [line.split()[1:3] for line in proc.stdout.splitlines() if line.startswith("FINAL ")]
    assert finals == [[f"guest.vcpus={v}", f"{ALPHA}={a}"] for v in (1, 2) for a in ("0.6", "1.2")]
    assert "comparison over guest.vcpus x " + ALPHA in proc.stdout
    serial = pfsim("run", "base.toml", *grid, "--out", "ser", "--workers", "1", cwd=tmp_path)
    assert serial.returncode == 0, serial.stderr
    for v in (1, 2):
        for a in ("0.6", "1.2"):
            name = f"guest.vcpus={v},{ALPHA}={a}"
            text = (tmp_path / "par" / name / "result.json").read_text()
            assert (tmp_path / "ser" / name / "result.json").read_text() == text
            config = load_config(tmp_path / "base.toml",
                                 overrides=[f"guest.vcpus={v}", f"{ALPHA}={a}"])
            assert text == run(config).to_json()
            assert json.loads(text)["seed"] == 5


def test_compare_refuses_a_key_given_twice_and_keeps_unsafe_values_inside_out(tmp_path):
    (tmp_path / "base.toml").write_text(TINY)
    twice = pfsim("run", "base.toml", "--compare", "guest.vcpus=1", "--compare", "guest.vcpus=2",
                  "--out", "o", cwd=tmp_path)
    assert twice.returncode == 2 and "guest.vcpus is given twice" in twice.stderr
    assert not (tmp_path / "o").exists()
    proc = pfsim("run", "base.toml", "--compare", "processes[0].name=../../escaped,kv",
                 "--out", "deep/o", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("result.json"))
    assert len(written) == 2 and all(p.parts[:2] == ("deep", "o") and len(p.parts) == 4
                                     for p in written), written


def test_compare_refuses_a_value_given_twice(tmp_path):
    """Two variants with the same value would share one directory (the second result.json
    replacing the first) and one name in compare.json."""
    (tmp_path / "base.toml").write_text(TINY)
    proc = pfsim("run", "base.toml", "--compare", "guest.vcpus=1,2, 1", "--out", "o",
                 cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "pfsim: error: Invalid value for --compare: guest.vcpus: value 1 is given twice "
        "(see 'pfsim run --help')"]
    assert not (tmp_path / "o").exists() and proc.stdout == ""


LONG = """
[[processes]]
name = "spin"
[[processes.threads]]
steps = [{ op = "compute", units = 1000000000000, unit = "1us" }]
"""


def test_an_interrupted_comparison_leaves_no_directory(tmp_path):
    """Ctrl-C while the first of two variants runs (hours of work): exit 130 and neither the
    variants' directories nor the --out directory they were created in are left."""
    import os
    import signal
    import time

    (tmp_path / "long.toml").write_text(LONG)
    proc = subprocess.Popen([sys.executable, "-m", "pfsim", "run", "long.toml", "--compare",
                             "guest.vcpus=1,2", "--workers", "1", "--out", "fresh/o"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ARG config long.toml")
    time.sleep(0.5)
    assert (tmp_path / "fresh" / "o" / "guest.vcpus=2").is_dir()  # prepared before the run
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "pfsim: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.toml"]


def test_a_sweep_whose_scheduler_cannot_be_reached_leaves_nothing(tmp_path):
    (tmp_path / "base.toml").write_text(TINY)
    (tmp_path / "s.toml").write_text('base = "base.toml"\nseeds = 2\n')
    proc = pfsim("sweep", "s.toml", "--out", "fresh/o", "--scheduler", "no-port-here",
                 cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "pfsim: error: --scheduler no-port-here: cannot connect (missing port number in "
        "address 'no-port-here')"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.toml", "s.toml"]
