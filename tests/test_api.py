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


def test_the_result_is_read_only_at_every_depth():
    import pickle

    import pytest

    data = {"processes": [{"name": "p", "threads": [{"steps": [{"op": "compute", "units": 10}]}]}]}
    result = pfsim.run(data)
    with pytest.raises(TypeError):
        result["vms"]["vm0"]["processes"]["p"]["work"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        result.processes["q"] = {}  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        result.vcpus.append({})  # type: ignore[attr-defined]
    assert result.vcpus == [dict(v) for v in result.vcpus]  # still compares as a list of dicts
    copy = result.to_dict()
    copy["vms"]["vm0"]["processes"]["p"]["work"] = 0  # the plain copy is the caller's
    assert result.processes["p"]["work"] == 10
    assert pickle.loads(pickle.dumps(result)).to_json() == result.to_json()


def test_the_docstring_example_runs():
    """pfsim/__init__.py's example names the quickstart's processes."""
    config = pfsim.load_config(ROOT / "examples" / "quickstart.toml")
    result = pfsim.run(config)
    assert result.processes["kvstore"]["min_flt"] == \
        result["vms"]["vm0"]["processes"]["kvstore"]["min_flt"] > 0
