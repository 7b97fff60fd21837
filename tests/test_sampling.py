"""Time series (``sim.sample``): sampling never changes a run, both engines sample alike, and
the samples hold hand-computable values."""

from __future__ import annotations

import json

import pytest

from pfsim import sampling
from pfsim.api import run

PAGE = 4096


def overcommit(mode: str, engine: str, sample: str | int) -> dict:
    """A small host overcommit: 16 MiB granted to a guest whose 2 writers touch 32 MiB, beside
    2 counting threads, so swap-ins (and async PFs) start within the first milliseconds."""
    return {
        "sim": {"seed": 3, "duration": "60ms", "engine": engine, "sample": sample},
        "guest": {"vcpus": 2, "memory": "64MiB"},
        "hypervisor": {"enabled": True, "host_cpus": 2, "memory_limit": "16MiB",
                       "reclaim": "lru", "async_pf": mode, "swap": {"device": "nvme"}},
        "processes": [
            {"name": "writers", "vsegs": [{"name": "a", "type": "anon", "size": "32MiB"}],
             "threads": [{"count": 2, "steps": [
                 {"op": "access", "vseg": "a", "pattern": "uniform", "duration": "10s",
                  "write_ratio": 1.0, "think": "2us"}]}]},
            {"name": "counters", "threads": [{"count": 2, "steps": [
                {"op": "compute", "duration": "10s", "unit": "1us"}]}]},
        ],
    }


def without_samples(result: dict) -> dict:
    result = dict(result)
    result.pop("samples", None)
    return result


@pytest.mark.parametrize(("mode", "engine"), [("kvm", "compiled"), ("s390", "compiled"),
                                              ("off", "compiled"), ("kvm", "reference")])
def test_sampling_changes_no_counter(mode, engine):
    """Stopping the event loop every 1 ms leaves every counter of result.json as it was (events
    included); the run does swap, so host memory and async PF are exercised."""
    plain = run(overcommit(mode, engine, 0)).to_dict()
    sampled = run(overcommit(mode, engine, "1ms")).to_dict()
    assert "samples" not in plain
    assert plain["host"]["swap_ins"] > 0
    assert without_samples(sampled) == plain
    assert sampled["samples"]["t_ns"] == [k * 1_000_000 for k in range(1, 61)]


@pytest.mark.parametrize("mode", ["kvm", "s390"])
def test_engines_take_the_same_samples(mode):
    compiled = run(overcommit(mode, "compiled", "2ms")).to_dict()
    reference = run(overcommit(mode, "reference", "2ms")).to_dict()
    assert compiled["samples"] == reference["samples"]
    assert compiled["samples"]["async_pf"]["not_present"][-1] > 0


def test_last_sample_is_the_result_and_times_add_up():
    """A sample at T is what result.json says for a run ending at T: the one at sim.duration
    equals the final counters; every vCPU's four times add up to T."""
    result = run(overcommit("kvm", "compiled", "3ms")).to_dict()
    samples, vm = result["samples"], result["vms"]["vm0"]
    assert samples["t_ns"][-1] == result["sim_time_ns"] == 60_000_000
    for name, task in vm["tasks"].items():
        for key in sampling.TASK_SERIES:
            assert samples["tasks"][name][key][-1] == task[key], (name, key)
    for v, vcpu in enumerate(vm["vcpus"]):
        series = samples["vcpus"][v]
        for key in sampling.VCPU_SERIES:
            assert series[key][-1] == vcpu[key]
        for i, t in enumerate(samples["t_ns"]):
            assert sum(series[key][i] for key in sampling.VCPU_SERIES) == t
    for key in ("swap_ins", "swap_outs", "evictions", "ept_violations"):
        assert samples["host"][key][-1] == result["host"][key]
    limit = result["host"]["memory_limit_frames"]
    assert samples["host"]["free_frames"][-1] == limit - result["host"]["resident_frames"]
    assert samples["async_pf"]["page_ready"][-1] == vm["async_pf"]["page_ready"]
    for column in samples["host"]["swap_ins"], samples["tasks"]["counters/0"]["work"]:
        assert column == sorted(column)  # counters never go back


@pytest.mark.parametrize("hypervisor", [False, True])
def test_work_in_a_running_segment_is_counted_up_to_the_sample(hypervisor):
    """One thread computing 1 us units alone on one vCPU, whose segment runs past every sample:
    it starts after one 5 us context switch, so at k ms it has done (k ms - 5 us) / 1 us =
    1000 k - 5 units (the units of the running segment count, as at the end of a run)."""
    data = {"sim": {"duration": "4ms", "sample": "1ms"},
            "guest": {"vcpus": 1, "memory": "64MiB", "sched": {"context_switch": "5us"}},
            "hypervisor": {"enabled": hypervisor},
            "processes": [{"name": "c", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 100_000, "unit": "1us"}]}]}]}
    samples = run(data).to_dict()["samples"]
    assert samples["tasks"]["c/0"]["work"] == [995, 1995, 2995, 3995]
    assert samples["vcpus"][0]["busy_ns"] == [1_000_000, 2_000_000, 3_000_000, 4_000_000]


def test_a_run_that_ends_early_has_no_sample_after_its_end():
    data = {"sim": {"sample": "1ms"}, "guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "c", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 2_500, "unit": "1us"}]}]}]}
    result = run(data).to_dict()
    assert result["sim_time_ns"] < 3_000_000
    assert result["samples"]["t_ns"] == [1_000_000, 2_000_000]


def test_too_many_samples_keep_every_other_and_double_the_interval(monkeypatch):
    """With at most 4 samples and an interval of 10: samples at 10, 20, 30, 40 are thinned to
    20, 40 (interval 20); then 60, 80 make 4 again: 40, 80 (interval 40); next stop 120."""
    monkeypatch.setattr(sampling, "MAX_SAMPLES", 4)

    def read(t):
        return {"tasks": {"a": (t, 0, 0, 0)}, "vcpus": [(t, 0, 0, 0)], "guest_free_frames": t,
                "host": None, "async_pf": None}

    sampler = sampling.Sampler(10, read)
    while sampler.next_time <= 80:
        sampler.take(sampler.next_time)
    out = sampler.result()
    assert out["interval_ns"] == 40 and sampler.next_time == 120
    assert out["t_ns"] == [40, 80]
    assert out["tasks"]["a"]["work"] == [40, 80] and out["guest_free_frames"] == [40, 80]
    assert out["vcpus"][0]["busy_ns"] == [40, 80]


def test_columns_are_one_line_each_in_result_json():
    result = run(overcommit("off", "compiled", "5ms"))
    text = result.to_json()
    assert json.loads(text) == result.to_dict()
    line = next(x for x in text.splitlines() if x.strip().startswith('"t_ns"'))
    assert line.strip() == '"t_ns": [' + ",".join(str(5_000_000 * k) for k in range(1, 13)) + "],"


def test_progress_is_reported_between_samples():
    """A reference run with few events per sample interval still reports progress (the sweep's
    --point-timeout relies on it): at least once per sample."""
    data = {"sim": {"duration": "30ms", "sample": "1ms"}, "guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "c", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 10**9, "unit": "1us"}]}]}]}
    seen: list[int] = []
    run(data, progress=seen.append)
    assert len(seen) >= 29 and seen == sorted(seen)
