"""``--compare`` values become directory names: whatever they hold (``/``, ``..``, a name
longer than a directory name may be), every file stays inside ``--out``, each variant gets its
own directory, and a bad ``--out`` is refused before any variant runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = """\
[guest]
memory = "64MiB"
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", accesses = 100 }]
"""


def pfsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pfsim", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def every_file(root: Path) -> list[Path]:
    return sorted(Path(dirpath, name) for dirpath, _, names in os.walk(root) for name in names)


def test_unsafe_values_stay_inside_out(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "base.toml").write_text(CONFIG)
    values = ["a/b", "../../escaped", "..", "x" * 250]  # "processes[0].name=xxx...": 268 bytes
    proc = pfsim("run", "base.toml", "--compare", "processes[0].name=" + ",".join(values),
                 "--out", "o", "--workers", "1", cwd=work)
    assert proc.returncode == 0, proc.stderr
    out = (work / "o").resolve()
    files = every_file(tmp_path)
    results = [f for f in files if f.name == "result.json"]
    assert len(results) == len(values)
    assert all(f.resolve().is_relative_to(out) and f.parent.parent == out for f in results)
    assert len({f.parent for f in results}) == len(values)
    assert all(len(f.parent.name.encode()) <= 255 for f in results)
    names = sorted(next(iter(json.loads(f.read_text())["vms"]["vm0"]["processes"]))
                   for f in results)
    assert names == sorted(values)
    assert [f for f in files if not f.resolve().is_relative_to(out)] == [work / "base.toml"]


def test_a_bad_out_is_refused_before_any_variant_runs(tmp_path):
    (tmp_path / "base.toml").write_text(CONFIG)
    (tmp_path / "file").write_text("")
    proc = pfsim("run", "base.toml", "--compare", "guest.vcpus=1,2", "--out", "file/o",
                 "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pfsim: error: --out file/o"), proc.stderr
    assert "FINAL" not in proc.stdout and every_file(tmp_path) == [tmp_path / "base.toml",
                                                          tmp_path / "file"]


def test_a_variant_too_large_for_this_machine_is_refused_before_any_runs(tmp_path):
    """The memory check of `pfsim run` applies to every variant up front: the 64 MiB variant
    must not run (and write its directory) before the 64 TiB one is found impossible."""
    (tmp_path / "base.toml").write_text(CONFIG)
    proc = pfsim("run", "base.toml", "--compare", "guest.memory=64MiB,64TiB", "--out", "o",
                 "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pfsim: error: --compare guest.memory=64TiB: guest.memory: "
                               "simulating this scenario needs about"), lines[0]
    assert "FINAL" not in proc.stdout and every_file(tmp_path) == [tmp_path / "base.toml"]


def test_hypervisor_keys_without_the_hypervisor_warn_once_for_all_variants(tmp_path):
    (tmp_path / "base.toml").write_text(CONFIG + '[hypervisor]\nmemory_limit = "32MiB"\n')
    proc = pfsim("run", "base.toml", "--compare", "guest.vcpus=1,2", "--out", "o",
                 "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("pfsim: warning:")]
    assert warnings == ["pfsim: warning: hypervisor.memory_limit set but hypervisor.enabled = "
                        "false, so the host is not modelled and these keys are ignored; add "
                        "enabled = true to [hypervisor]"]
