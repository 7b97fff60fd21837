"""Sweep files → points, per-point seeds, the tables' statistics and metrics (nothing runs).

Expected values come from outside the code under test: tomllib reads back every literal,
textbook tables give the t quantiles, the intervals and sums are worked by hand.
"""

from __future__ import annotations

import math
import tomllib

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfsim.sweeps.literal import toml_literal
from pfsim.sweeps.metrics import headline
from pfsim.sweeps.paths import safe_name
from pfsim.sweeps.spec import SweepError, expand, load_sweep
from pfsim.sweeps.stats import mean_ci95, t_quantile
from pfsim.sweeps.table import points_frame, summarize

BASE = {
    "sim": {"seed": 5},
    "guest": {"vcpus": 2, "memory": "16MiB"},
    "processes": [{
        "name": "kv",
        "vsegs": [{"name": "heap", "type": "anon", "size": "4MiB"}],
        "threads": [{"count": 2, "steps": [{"op": "access", "vseg": "heap", "pattern": "zipf",
                                            "alpha": 0.9, "accesses": 300}]}],
    }],
}
ALPHA = "processes[0].threads[0].steps[0].alpha"


def sweep(**keys):
    return {"base": BASE, **keys}


# ------------------------------------------------------------------------------ literals

toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
              st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


@given(toml_values)
def test_a_literal_reads_back_as_the_same_value(value):
    """Axis values travel as --set strings: tomllib (the reader --set uses) must give back
    exactly the value."""
    assert tomllib.loads(f"v = {toml_literal(value)}")["v"] == value


# ------------------------------------------------------------------------------ points


def test_points_are_the_product_of_axes_and_zip_groups_times_seeds():
    spec = load_sweep(sweep(
        seeds=2,
        axes={"guest": {"vcpus": [1, 2]}},  # nested tables work like quoted dotted keys
        zip=[{ALPHA: [0.5, 0.9, 1.3], "processes[0].threads[0].count": [1, 2, 3]}]))
    points = expand(spec)
    assert len(points) == 2 * 3 * 2
    assert spec.groups == 6
    assert spec.axis_keys == ("guest.vcpus", ALPHA, "processes[0].threads[0].count")
    seen = [(p.config.guest.vcpus, p.config.processes[0].threads[0].steps[0].alpha,
             p.config.processes[0].threads[0].count, p.replicate) for p in points]
    # first axis slowest, the zip group advancing as one, replicates fastest
    assert seen == [(v, a, c, r) for v in (1, 2) for a, c in ((0.5, 1), (0.9, 2), (1.3, 3))
                    for r in (0, 1)]
    assert len({p.key for p in points}) == 12
    assert all(p.config.sim.seed == p.seed for p in points)


def test_a_seed_depends_only_on_the_sweep_seed_and_the_points_own_values():
    small = {(tuple(p.axes.items()), p.replicate): p.seed for p in expand(load_sweep(sweep(
        seed=7, seeds=3, axes={"guest.vcpus": [1, 2]})))}
    # another value on the axis, another replicate, the axes listed in another order
    large = {(tuple(p.axes.items()), p.replicate): p.seed for p in expand(load_sweep(sweep(
        seed=7, seeds=4, axes={"guest.vcpus": [2, 4, 1]})))}
    assert all(large[key] == seed for key, seed in small.items())
    assert len(set(large.values())) == len(large)  # every point its own seed
    other = {(tuple(p.axes.items()), p.replicate): p.seed for p in expand(load_sweep(sweep(
        seed=8, seeds=3, axes={"guest.vcpus": [1, 2]})))}
    assert not set(other.values()) & set(small.values())


def test_listed_seeds_are_used_as_given_for_every_group():
    points = expand(load_sweep(sweep(seeds=[11, 3], axes={"guest.vcpus": [1, 2]})))
    assert [(p.config.guest.vcpus, p.seed) for p in points] == [(1, 11), (1, 3), (2, 11), (2, 3)]


def test_set_and_the_base_seed():
    spec = load_sweep(sweep(set={"guest": {"memory": "32MiB"}}), overrides=["guest.vcpus=3"])
    (point,) = expand(spec)
    assert spec.seed == 5  # the base scenario's sim.seed
    assert (point.config.guest.memory, point.config.guest.vcpus) == (32 << 20, 3)


@pytest.mark.parametrize(("keys", "message"), [
    ({"axes": {"guest.vcpu": [1, 2]}}, "axis guest.vcpu = 1: unknown key; allowed here: "),
    ({"axes": {"guest.vcpus": []}}, "axis guest.vcpus: empty list; give at least one value"),
    ({"axes": {"guest.vcpus": [1, "two"]}},
     "axis guest.vcpus = \"two\": input should be a valid integer"),
    ({"axes": {"guest.vcpus": 2}}, "axis guest.vcpus: expected a list of values, got 2"),
    ({"axes": {"guest.nope.deeper": [1]}}, "axis guest.nope.deeper = 1: guest.nope: unknown key"),
    ({"axes": {"sim.seed": [1, 2]}},
     "axis sim.seed: a sweep's seeds come from its seed and seeds keys"),
    ({"axes": {"guest.vcpus": [1]}, "zip": [{"guest.vcpus": [2]}]},
     "axis guest.vcpus: given twice"),
    ({"zip": [{"guest.vcpus": [1, 2], ALPHA: [0.5]}]},
     "zip[0]: the lists must have the same length (guest.vcpus has 2, " + ALPHA + " has 1)"),
    ({"axes": {"guest.memory": ["16MiB", 16777216]}, "seeds": [1]},
     "resolve to the same config and seed"),
    ({"seeds": 0}, "seeds: expected at least 1 replicate, got 0"),
    ({"seeds": [1, 1]}, "seeds: a seed is listed twice"),
    ({"seed": -1}, "seed: expected an integer from 0 to 2^63-1, got -1"),
    ({"metrics": ["work", "speed"]}, "metrics: unknown metric \"speed\"; allowed: "),
    ({"axis": {}}, "axis: unknown key; allowed: base, seed, seeds, metrics, set, axes, zip"),
    ({"set": {"guest.vcpus": "many"}}, "base table: guest.vcpus: input should be a valid integer"),
])
def test_a_bad_sweep_is_one_line_naming_what_is_wrong(keys, message):
    with pytest.raises(SweepError) as caught:
        expand(load_sweep(sweep(**keys)))
    text = str(caught.value)
    assert "\n" not in text and text.startswith("sweep: ")
    assert message in text


def test_a_missing_base_file_is_named(tmp_path):
    file = tmp_path / "s.toml"
    file.write_text('base = "nothere.toml"\n')
    with pytest.raises(SweepError, match=r"s.toml: base .*nothere.toml: no such file"):
        load_sweep(file)


# ------------------------------------------------------------------------------ statistics


@pytest.mark.parametrize(("nu", "table"), [
    (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262), (10, 2.228),
    (19, 2.093), (30, 2.042), (60, 2.000), (120, 1.980), (5000, 1.960)])
def test_t_quantile_matches_the_textbook_table(nu, table):
    """Two-sided 95 % critical values of Student's t (any statistics textbook's table)."""
    assert t_quantile(0.975, nu) == pytest.approx(table, abs=5e-4)


def test_mean_and_interval_worked_by_hand():
    # 1..5: mean 3, s^2 = 10/4, half-width = 2.776445 * sqrt(2.5 / 5)
    mean, ci = mean_ci95([1, 2, 3, 4, 5])
    assert mean == 3 and ci == pytest.approx(2.776445 * math.sqrt(0.5), rel=1e-6)
    assert mean_ci95([7.0])[0] == 7.0 and math.isnan(mean_ci95([7.0])[1])


def test_summary_groups_in_table_order_and_leaves_failed_points_out():
    rows = []
    for mode, works in (("kvm", [10, 20, 30]), ("off", [5, 5, None])):
        for replicate, work in enumerate(works):
            row = {"hypervisor.async_pf": mode, "replicate": replicate, "seed": replicate,
                   "point": f"{mode}{replicate}", "status": "ok" if work else "failed",
                   "error": "" if work else "boom"}
            if work:
                row["work"] = work
            rows.append(row)
    summary = summarize(points_frame(["hypervisor.async_pf"], rows), ["work"])
    assert list(summary["hypervisor.async_pf"]) == ["kvm", "off"]
    kvm, off = summary.iloc[0], summary.iloc[1]
    assert (kvm["points"], kvm["failed"], kvm["n"]) == (3, 0, 3)
    assert kvm["work_mean"] == 20
    assert kvm["work_ci95"] == pytest.approx(4.302653 * 10 / math.sqrt(3))
    assert (off["points"], off["failed"], off["n"]) == (3, 1, 2)
    assert off["work_mean"] == 5 and off["work_ci95"] == 0


def test_headline_metrics_summed_by_hand():
    process = {"work": 0, "accesses": 0, "compute_units": 0, "min_flt": 0, "maj_flt": 0, "segv": 0}
    result = {
        "sim_time_ns": 1000, "events": 42,
        "vms": {"vm0": {
            "outcome": "ok",
            "processes": {"a": process | {"work": 30, "accesses": 10, "compute_units": 20,
                                          "min_flt": 4, "maj_flt": 1},
                          "b": process | {"work": 5, "accesses": 5, "min_flt": 2, "segv": 1}},
            "vcpus": [{"busy_ns": 600, "idle_ns": 400, "stalled_ns": 0, "steal_ns": 0,
                       "context_switches": 3},
                      {"busy_ns": 250, "idle_ns": 0, "stalled_ns": 700, "steal_ns": 50,
                       "context_switches": 4}],
            "async_pf": {"not_present": 7, "page_ready": 6, "sync_fallbacks": 1}}},
        "host": {"ept_violations": 9, "swap_ins": 8, "swap_outs": 2, "evictions": 3},
    }
    row = headline(result)
    assert row == {
        "outcome": "ok", "sim_time_ns": 1000, "events": 42, "work": 35, "accesses": 15,
        "compute_units": 20, "min_flt": 6, "maj_flt": 1, "segv": 1,
        "busy_pct": 42.5, "stalled_pct": 35.0, "idle_pct": 20.0, "steal_pct": 2.5,
        "context_switches": 7, "ept_violations": 9, "swap_ins": 8, "swap_outs": 2, "evictions": 3,
        "not_present": 7, "page_ready": 6, "sync_fallbacks": 1}


def test_axis_columns_keep_simple_types_and_text_otherwise():
    frame = points_frame(["a", "b", "c"], [
        {"a": 1, "b": "x", "c": [1, 2], "replicate": 0, "seed": 1, "status": "ok", "point": "p"},
        {"a": 2, "b": "y", "c": 3, "replicate": 0, "seed": 2, "status": "ok", "point": "q"}])
    assert str(frame["a"].dtype) == "Int64" and list(frame["b"]) == ["x", "y"]
    assert list(frame["c"]) == ["[1, 2]", "3"]
    assert isinstance(frame, pd.DataFrame)


def test_safe_names_stay_readable_or_are_hashed_inside_one_component():
    assert safe_name("hypervisor.async_pf=kvm") == "hypervisor.async_pf=kvm"
    assert safe_name("a=1,b=2") == "a=1,b=2"
    for text in ("processes[0].name=../../escaped", "k=a/b", "k=" + "x" * 300, "k=é"):
        name = safe_name(text)
        assert "/" not in name and name not in (".", "..") and len(name) <= 100
        assert "~" in name
    assert safe_name("k=a/b") != safe_name("k=a_b")


def test_the_summary_of_no_points_is_empty():
    for axes in ([], ["guest.vcpus"]):
        frame = points_frame(axes, [])
        summary = summarize(frame, ["work"])
        assert summary.empty and list(summary.columns) == [*axes, "points", "failed", "n",
                                                             "work_mean", "work_ci95"]


def test_the_bundled_sweep_is_the_async_pf_grid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "sweep-apf.toml"
    spec = load_sweep(path)
    points = expand(spec)
    assert spec.axis_keys == ("hypervisor.async_pf", "hypervisor.swap.device")
    assert (len(points), spec.groups, spec.replicates) == (40, 8, 5)
    assert {(p.config.hypervisor.async_pf, p.config.hypervisor.swap.device) for p in points} == {
        (m, d) for m in ("off", "halt", "kvm", "s390") for d in ("nvme", "sata-ssd")}
    assert all(p.config.sim.duration == 2_000_000_000 for p in points)


@pytest.mark.parametrize(("keys", "message"), [
    ({"seeds": 100_000_000}, "100,000,000 points (1 group x 100,000,000 seeds); a sweep has at "
                             "most 100,000"),
    ({"seeds": 2, "axes": {"guest.vcpus": list(range(1, 301)), ALPHA: [0.1 * a for a in
                                                                        range(1, 201)]}},
     "120,000 points (60,000 groups x 2 seeds); a sweep has at most 100,000"),
])
def test_a_sweep_too_large_to_run_is_refused_before_its_points_are_made(keys, message):
    """A typo (seeds = 100000000 for 10) made the sweep build 100 M validated configs: it
    ran for minutes, growing, before anything happened."""
    with pytest.raises(SweepError) as caught:
        load_sweep(sweep(**keys))
    assert str(caught.value) == f"sweep: {message}"
