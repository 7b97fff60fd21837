"""The compiled core against the reference path: the full result.json must be identical.

``sim.engine = "compiled"`` runs the host-overcommit event loop in numba
(:mod:`pfsim.compiled`); ``"reference"`` runs the readable Python objects.  These tests run
both on the same config and seed and compare every key of the result (``engine`` itself
excepted), so any divergence of an event, a counter or a time shows up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pfsim.config import config_digest, load_config
from pfsim.simulation import Simulation

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OVERCOMMIT = EXAMPLES / "overcommit.toml"


def _both(path, overrides):
    results = {}
    notes = {}
    for engine in ("reference", "compiled"):
        config = load_config(path, overrides=[*overrides, f"sim.engine={engine}"])
        simulation = Simulation(config)
        result = simulation.run()
        assert result.pop("engine") == engine
        results[engine] = json.dumps(result, sort_keys=True, indent=1)
        notes[engine] = simulation.engine_note
    return results, notes


@pytest.mark.parametrize("mode", ["off", "halt", "kvm", "s390"])
def test_overcommit_modes_identical(mode):
    """Every async-PF mode, past the host limit (swap-ins, reclaim, async PF round trips)."""
    results, notes = _both(OVERCOMMIT, [f"hypervisor.async_pf={mode}", 'sim.duration="400ms"'])
    assert notes["compiled"] == "compiled core"
    assert results["compiled"] == results["reference"]


@pytest.mark.parametrize("overrides", [
    ["hypervisor.reclaim=fifo", "hypervisor.async_pf=kvm"],
    ["hypervisor.reclaim=clock", "hypervisor.async_pf=s390"],
    ["hypervisor.reclaim=random", "hypervisor.async_pf=halt"],
    ['hypervisor.swap.device="zram"', "hypervisor.async_pf=kvm"],
    ['hypervisor.swap.device="sata-ssd"', 'hypervisor.swap.distribution="exponential"',
     "hypervisor.async_pf=s390"],
    ["guest.vcpus=2", "hypervisor.host_cpus=1", "hypervisor.host_tasks=1",
     "hypervisor.async_pf=kvm"],
    ['guest.sched.policy="rr"', 'hypervisor.memory_limit="256MiB"', "hypervisor.async_pf=off"],
])
def test_overcommit_variants_identical(overrides):
    """Policies, devices, latency draws, host contention and the round-robin scheduler."""
    results, notes = _both(OVERCOMMIT, [*overrides, 'sim.duration="300ms"'])
    assert notes["compiled"] == "compiled core"
    assert results["compiled"] == results["reference"]


def test_processes_that_exit_identical():
    """Threads that finish their steps: thread exit, process exit (frames freed), stop."""
    overrides = ['processes[0].threads[0].steps[0].duration="150ms"',
                 'processes[1].threads[0].steps[0].duration="100ms"',
                 "hypervisor.async_pf=kvm"]
    results, _ = _both(OVERCOMMIT, overrides)
    assert results["compiled"] == results["reference"]
    assert '"exit": "exited"' in results["compiled"]


def test_outside_the_core_falls_back_to_the_reference():
    """A scenario the core does not model runs on the reference path, same result."""
    results, notes = _both(EXAMPLES / "quickstart.toml", ['sim.duration="5ms"'])
    assert notes["compiled"] is None  # no hypervisor: the per-access loop is compiled already
    assert results["compiled"] == results["reference"]


def test_engine_is_not_in_the_digest():
    a = load_config(OVERCOMMIT, overrides=["sim.engine=compiled"])
    b = load_config(OVERCOMMIT, overrides=["sim.engine=reference"])
    assert config_digest(a) == config_digest(b)
