"""A plain `pfsim run` loads what the run needs and nothing else (its start-up time is most
of a short run's wall time): no plotting, data-frame, columnar, Perfetto or cluster-computing
library, and for a guest without a host none of the host, async-PF, cluster, trace-replay or
trace-writing code.  Checked in a fresh interpreter, against lists written down here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = """
import json, sys
from pfsim.cli import main
sys.argv = ["pfsim", "run", sys.argv[1], "--out", sys.argv[2]]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = ("matplotlib", "pandas", "pyarrow", "perfetto", "dask", "distributed")
HOST_ONLY = ("pfsim.hypervisor", "pfsim.apf_modes", "pfsim.guest.apf_kvm", "pfsim.guest.apf_s390",
             "pfsim.compiled", "pfsim.cluster", "pfsim.replacement", "pfsim.tracing",
             "pfsim.tracedriven", "pfsim.sweeps")

CONFIG = """
[guest]
vcpus = 1
memory = "64MiB"
{host}
[[processes]]
name = "p"
vsegs = [{{ name = "h", type = "anon", size = "1MiB" }}]
[[processes.threads]]
steps = [{{ op = "access", vseg = "h", accesses = 1000, write_ratio = 0.5 }}]
"""


def _loaded(tmp_path, host: bool) -> list[str]:
    path = tmp_path / "plain.toml"
    path.write_text(CONFIG.format(host="[hypervisor]\nenabled = true\n" if host else ""))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _under(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


@pytest.mark.parametrize("host", [False, True])
def test_a_plain_run_loads_no_heavy_library(tmp_path, host):
    loaded = _loaded(tmp_path, host)
    assert _under(loaded, HEAVY) == []
    if not host:
        assert _under(loaded, HOST_ONLY) == []
    else:  # the host model and the compiled core are what such a run needs
        assert "pfsim.hypervisor.host" in loaded and "pfsim.compiled.run" in loaded
