"""The Python API as README.md shows it."""

from __future__ import annotations

from pathlib import Path

import pfsim

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippet():
    config = pfsim.load_config(ROOT / "examples" / "quickstart.toml", overrides=["guest.vcpus=4"], seed=3)
    result = pfsim.run(config)
    assert result.processes["batch"]["min_flt"] == 6144
    assert len(result.vcpus) == 4 and result.outcome == "ok"
    assert result["seed"] == 3 and result.to_dict()["vms"]["vm0"]["outcome"] == "ok"


def test_run_accepts_a_dict_and_overrides():
    data = {"processes": [{"name": "p", "threads": [{"steps": [{"op": "compute", "units": 10}]}]}]}
    result = pfsim.run(data, overrides=["processes[0].threads[0].steps[0].units=20"])
    assert result.processes["p"]["work"] == 20
    assert result["sim_time_ns"] > 20 * 1000
