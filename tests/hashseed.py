"""Run a scenario in fresh interpreters with chosen hash seeds.

Two runs in one process share one ``PYTHONHASHSEED``, so they cannot catch a result that
depends on the iteration order of a set or of a dict keyed by strings built at run time.
:func:`result_json` runs the scenario in a new interpreter with the given hash seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_SCRIPT = ("import json, sys\nfrom pfsim.api import run\n"
           "print(run(json.loads(sys.argv[1])).to_json(), end='')\n")


def result_json(source: dict[str, Any] | Path, hashseed: int) -> str:
    """result.json of ``source`` (a config dict or a TOML path) run with ``PYTHONHASHSEED``."""
    payload = json.dumps(str(source) if isinstance(source, Path) else source)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, payload], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONHASHSEED": str(hashseed)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
