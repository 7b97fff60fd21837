"""A read-only install whose user has no writable cache directory still runs.

numba raised ``RuntimeError: cannot cache function ...: no locator available`` at import time
when neither the install's ``__pycache__`` nor the user's cache directory was writable, so
every command failed, even ``pfsim run nonexistent.toml``.  The test copies the package,
makes the copy, ``$HOME``, ``/tmp`` and ``/var/tmp`` read-only in a private mount namespace
(``unshare --map-root-user --mount``) and runs the copy from there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pfsim"

CONFIG = """\
[guest]
memory = "64MiB"
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", accesses = 1000, write_ratio = 0.5 }]
"""

CHECK = """
import json, os, subprocess, sys
env = {k: v for k, v in os.environ.items()
       if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "TMPDIR", "TEMP", "TMP")}
env.update(PYTHONPATH=INSTALL, HOME=INSTALL, PYTHONDONTWRITEBYTECODE="1", **EXTRA)
def run(*args):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=INSTALL)
    return {"code": proc.returncode, "out": proc.stdout, "err": proc.stderr}
found = {
    "choice": run("-c", "import pfsim, pfsim.numba_cache as n; print(n.CHOICE, pfsim.__file__)"),
    "missing": run("-m", "pfsim", "run", "nonexistent.toml"),
    "run": run("-m", "pfsim", "run", CONFIG, "--out", OUT, "--quiet"),
}
result = os.path.join(OUT, "result.json")
found["result"] = (json.load(open(result))["vms"]["vm0"]["outcome"]
                   if os.path.exists(result) else None)
print(json.dumps(found))
"""


def _namespace_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--map-root-user", "--mount", "true"],
                           capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespace_available(),
                                reason="unprivileged mount namespaces are disabled here")


def read_only_run(tmp_path: Path, writable_tmp: bool) -> dict:
    install = tmp_path / "install"
    shutil.copytree(SRC, install / "pfsim", ignore=shutil.ignore_patterns("__pycache__"))
    (install / "scenario.toml").write_text(CONFIG)
    out = tmp_path / "out"
    out.mkdir()
    extra = {}
    setup = [f"mount --bind {install} {install}", f"mount -o remount,bind,ro {install}"]
    if writable_tmp:
        (tmp_path / "scratch").mkdir()
        extra["TMPDIR"] = str(tmp_path / "scratch")
    else:
        for tmp in ("/tmp", "/var/tmp"):
            if Path(tmp).is_dir():
                setup += [f"mount --bind {tmp} {tmp}", f"mount -o remount,bind,ro {tmp}"]
    setup.append(f"mount -t tmpfs tmpfs {out}")  # the results go to a writable place
    script = (f"INSTALL = {str(install)!r}\nOUT = {str(out / 'r')!r}\n"
              f"CONFIG = {str(install / 'scenario.toml')!r}\nEXTRA = {extra!r}\n"
              + textwrap.dedent(CHECK))
    (tmp_path / "check.py").write_text(script)
    command = "set -e; " + "; ".join(setup) + f"; exec {sys.executable} {tmp_path / 'check.py'}"
    proc = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", command],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_read_only_install_without_any_writable_cache_compiles_uncached(tmp_path):
    found = read_only_run(tmp_path, writable_tmp=False)
    choice, location = found["choice"]["out"].split()
    assert choice == "none" and location.startswith(str(tmp_path / "install")), found["choice"]
    assert found["missing"]["code"] == 2
    assert found["missing"]["err"] == "pfsim: error: nonexistent.toml: no such file\n"
    assert found["run"]["code"] == 0, found["run"]["err"]
    assert found["run"]["out"].startswith("FINAL outcome=ok")
    assert found["result"] == "ok"


def test_read_only_install_caches_in_a_private_temporary_directory(tmp_path):
    found = read_only_run(tmp_path, writable_tmp=True)
    choice, _ = found["choice"]["out"].split()
    assert choice == "temp", found["choice"]
    assert found["run"]["code"] == 0, found["run"]["err"]
    cache = next((tmp_path / "scratch").glob("pfsim-numba-*"))
    assert cache.stat().st_mode & 0o077 == 0  # nobody else may plant code in it
    assert any(cache.rglob("*.nbi")), "nothing was cached"
