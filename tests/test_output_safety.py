"""Output safety: an interrupted or failed run never leaves a partial result.json, an old one
survives, and output problems (read-only file system, full disk) are one-line errors.

SIGINT is sent to a real ``pfsim run`` process.  Read-only and full file systems are real
tmpfs mounts made inside a private mount namespace (``unshare --map-root-user --mount``), so
the test needs neither root nor changes to the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CONFIG = """\
[guest]
memory = "64MiB"
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", accesses = 10 }]
"""

LONG = """\
[[processes]]
name = "spin"
[[processes.threads]]
count = 2
steps = [{ op = "compute", units = 1000000000000, unit = "1us" }]
"""


def start_long_run(tmp_path: Path, out: Path) -> subprocess.Popen[str]:
    """A run that takes hours, started and past its ARG line (the simulation is running)."""
    (tmp_path / "long.toml").write_text(LONG)
    proc = subprocess.Popen([sys.executable, "-m", "pfsim", "run", "long.toml", "--out", str(out)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ARG config long.toml")
    time.sleep(0.5)
    return proc


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigint_in_a_fresh_out_leaves_nothing(tmp_path):
    out = tmp_path / "fresh" / "out"
    proc = start_long_run(tmp_path, out)
    assert out.is_dir()  # checked and created before the run started
    code, err = interrupt(proc)
    assert code == 130 and err.strip() == "pfsim: interrupted"
    assert not (tmp_path / "fresh").exists()


def test_sigterm_ends_like_sigint_with_exit_143(tmp_path):
    """``kill`` (a batch system's time limit, ``timeout``): one line, 128 + SIGTERM, and the
    same cleanup as Ctrl-C (no partial result.json, the fresh --out removed)."""
    out = tmp_path / "fresh" / "out"
    proc = start_long_run(tmp_path, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "pfsim: terminated"
    assert not (tmp_path / "fresh").exists()


def test_sigint_in_a_reused_out_keeps_the_previous_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"previous": true}\n')
    proc = start_long_run(tmp_path, out)
    code, err = interrupt(proc)
    assert code == 130 and err.strip() == "pfsim: interrupted"
    assert (out / "result.json").read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]


def _namespace_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--map-root-user", "--mount", "true"],
                           capture_output=True, check=False)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespace_available(),
                                     reason="unprivileged mount namespaces are disabled here")


def in_namespace(tmp_path: Path, setup: str, script: str) -> dict:
    """Run the shell ``setup`` then the Python ``script`` in a private mount namespace; the
    script prints one JSON object, returned here."""
    (tmp_path / "check.py").write_text(textwrap.dedent(script))
    command = f"set -e; {setup}; exec {sys.executable} {tmp_path / 'check.py'}"
    proc = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", command],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


RUN = """
import json, os, subprocess, sys
from pathlib import Path
def pfsim(*args):
    proc = subprocess.run([sys.executable, "-m", "pfsim", *args], capture_output=True, text=True)
    return {"code": proc.returncode, "err": proc.stderr}
"""


@needs_namespace
def test_read_only_file_system(tmp_path):
    (tmp_path / "ok.toml").write_text(CONFIG)
    (tmp_path / "ro").mkdir()
    found = in_namespace(tmp_path, "mount -t tmpfs -o ro tmpfs ro", RUN + """
result = pfsim("run", "ok.toml", "--out", "ro/out")
result["listing"] = os.listdir("ro")
print(json.dumps(result))
""")
    assert found["code"] == 2
    assert found["err"] == ("pfsim: error: --out ro/out: cannot create ro/out "
                            "(Read-only file system)\n")
    assert found["listing"] == []


@needs_namespace
def test_full_disk_leaves_the_old_result_and_no_temporary_file(tmp_path):
    """A 64 KiB tmpfs filled to the last byte: the result cannot be written; the previous
    result.json is intact and no .result.json.*.tmp file remains."""
    (tmp_path / "ok.toml").write_text(CONFIG)
    (tmp_path / "disk").mkdir()
    found = in_namespace(tmp_path, "mount -t tmpfs -o size=64k tmpfs disk", RUN + """
os.mkdir("disk/out")
Path("disk/out/result.json").write_text("old\\n")
fill = os.open("disk/fill", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fill, b"x" * 4096)
except OSError:
    os.close(fill)
result = pfsim("run", "ok.toml", "--out", "disk/out", "--quiet")
result["listing"] = sorted(os.listdir("disk/out"))
result["old"] = Path("disk/out/result.json").read_text()
print(json.dumps(result))
""")
    assert found["code"] == 2, found["err"]
    assert found["err"] == ("pfsim: error: cannot write disk/out/result.json (No space left on "
                            "device); nothing was written\n")
    assert found["listing"] == ["result.json"] and found["old"] == "old\n"
