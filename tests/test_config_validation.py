"""Config validation: every problem reported at once, bounded values, hints, warnings.

Each expected message is written from the rule it checks (docs/config.md, "Limits" and
"Units"); none is copied from a run of the code.
"""

from __future__ import annotations

import copy

import pytest

from pfsim.config import config_warnings, load_config
from pfsim.config.load import MAX_DEPTH
from pfsim.config.schema import MAX_TIME_NS
from pfsim.errors import ConfigError, ConfigErrors


def scenario(**step) -> dict:
    step = step or {"op": "access", "vseg": "h", "accesses": 10}
    return {"guest": {"vcpus": 2, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "1MiB"}],
                           "threads": [{"steps": [step]}]}]}


def refused(data: dict, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data, overrides=overrides)
    return info.value.lines()


def test_all_schema_problems_come_at_once_in_config_order():
    data = scenario()
    data["guest"]["vcpu"] = 3
    data["guest"]["memory"] = "64 furlongs"
    data["processes"][0]["threads"][0]["steps"][0]["write_ratio"] = 2.0
    with pytest.raises(ConfigErrors) as info:
        load_config(data)
    keys = [error.key for error in info.value.errors]
    assert keys == ["guest.memory", "guest.vcpu", "processes[0].threads[0].steps[0].write_ratio"]
    assert info.value.key == "guest.memory"  # the first, for code that reads one
    assert str(info.value).count("\n") == 2


def test_all_cross_field_problems_come_at_once():
    data = scenario(op="access", vseg="nope", accesses=1)
    data["processes"].append(copy.deepcopy(data["processes"][0]))
    data["processes"][0]["threads"][0]["cpu"] = 7
    lines = refused(data)
    assert lines == [
        "processes[0].threads[0].cpu: vCPU 7 does not exist (guest.vcpus = 2)",
        "processes[0].threads[0].steps[0].vseg: unknown vseg 'nope'; this process has: h, "
        "@stack, stack.0",
        "processes[1].name: duplicate process name 'p'",
        "processes[1].threads[0].steps[0].vseg: unknown vseg 'nope'; this process has: h, "
        "@stack, stack.0",
    ]


@pytest.mark.parametrize(("path", "value", "message"), [
    (("guest", "memory"), 1 << 63, "does not fit in a signed 64-bit integer"),
    (("guest", "memory"), -(1 << 70), "greater than or equal to 0"),
    (("sim", "seed"), (1 << 63), "does not fit in a signed 64-bit integer"),
    pytest.param(("sim", "seed"), 1 << 20000, "a 20001-bit number does not fit", id="huge"),
    (("guest", "costs", "entry"), MAX_TIME_NS, "must be at most 1s"),
    (("sim", "duration"), MAX_TIME_NS + 1, f"must be at most {MAX_TIME_NS} ns"),
    (("guest", "disk", "bandwidth"), 0, "greater than or equal to 4096"),
    (("hypervisor", "swap", "sigma"), float("inf"), "finite number"),
    (("hypervisor", "swap", "sigma"), float("nan"), "finite number"),
    (("hypervisor", "swap", "sigma"), True, "valid number"),
    (("hypervisor", "swap", "sigma"), "0.5", "valid number"),
    (("guest", "sched", "timeslice"), [1], "valid integer; a duration is a string with a unit"),
    (("guest", "mm", "stack_guard_gap"), {"a": 1}, "valid integer; a size is a string"),
    (("guest", "memory"), 1.5, "a size is a string with a unit in B, KiB, MiB"),
])
def test_values_out_of_range_are_refused(path, value, message):
    data = scenario()
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    lines = refused(data)
    assert len(lines) == 1 and lines[0].startswith(".".join(path) + ": "), lines
    assert message in lines[0]


def test_addresses_are_unsigned_64_bit():
    top = scenario(op="touch", addr="0xffffffffffffffff", mode="kernel")
    assert load_config(top).processes[0].threads[0].steps[0].addr == (1 << 64) - 1
    lines = refused(scenario(op="touch", addr=1 << 64))
    assert lines == ["processes[0].threads[0].steps[0].addr: 18446744073709551616 does not fit "
                     "in a 64-bit address (at most 18446744073709551615)"]


def test_an_addr_range_may_not_wrap_around_the_address_space():
    lines = refused(scenario(op="access", addr="0xfffffffffffff000", length="8KiB", accesses=1))
    assert lines == ["processes[0].threads[0].steps[0].length: addr+length goes past the end "
                     "of the 64-bit address space"]


def test_a_thread_whose_steps_outlast_the_clock_is_refused_without_a_duration():
    """Two sleeps of 2**52 ns and a 2**52 ns compute: 3 * 2**52 > 2**53 ns."""
    long = {"op": "sleep", "duration": 1 << 52}
    data = scenario()
    data["processes"][0]["threads"][0]["steps"] = [long, long,
                                                   {"op": "compute", "units": 1, "unit": 1 << 52}]
    lines = refused(data)
    assert lines == ["processes[0].threads[0]: the steps take at least 13510798.88 s of simulated "
                     "time, more than a run may span (9007199.25 s); shorten them or give "
                     "sim.duration"]
    data["sim"] = {"duration": "1s"}  # the run stops at 1 s: nothing can overflow
    assert load_config(data).sim.duration == 1_000_000_000


def test_accesses_times_think_counts_toward_the_span():
    ok = scenario(op="access", vseg="h", accesses=1 << 20, think=1 << 33)
    assert load_config(ok)  # 2**53 exactly: allowed
    lines = refused(scenario(op="access", vseg="h", accesses=(1 << 20) + 1, think=1 << 33))
    assert lines[0].startswith("processes[0].threads[0]: the steps take at least")


def test_thread_count_is_bounded_per_group_and_in_all():
    data = scenario()
    data["processes"][0]["threads"] = [{"count": 3_000_000, "steps": [{"op": "exit"}]},
                                       {"count": 3_000_000, "steps": [{"op": "exit"}]}]
    assert refused(data) == ["processes: 6,000,000 threads in all; Linux allows at most "
                             "4,194,304 (PID_MAX_LIMIT)"]


def test_nesting_is_bounded_in_dicts_and_cycles_do_not_hang():
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    data = scenario()
    data["guest"]["extra"] = deep
    assert refused(data) == [f"config: tables and arrays nested more than {MAX_DEPTH} deep"]
    cyclic = scenario()
    cyclic["guest"]["self"] = cyclic["guest"]
    assert refused(cyclic) == [f"config: tables and arrays nested more than {MAX_DEPTH} deep"]


@pytest.mark.parametrize(("name", "ok"), [("naïve-δ", True), ("tab\there", False),
                                          ("nul\x00", False), ("lone\udcff", False),
                                          ("x" * 256, True), ("x" * 257, False)])
def test_names_are_printable_and_short(name, ok):
    data = scenario()
    data["processes"][0]["name"] = name
    if ok:
        assert load_config(data).processes[0].name == name
    else:
        lines = refused(data)
        assert len(lines) == 1 and lines[0].startswith("processes[0].name: ")


def test_choices_ignore_case():
    data = scenario()
    data["hypervisor"] = {"reclaim": "LRU", "async_pf": "KVM"}
    data["guest"]["sched"] = {"policy": "Cfs"}
    config = load_config(data)
    assert (config.hypervisor.reclaim, config.hypervisor.async_pf) == ("lru", "kvm")
    assert config.guest.sched.policy == "cfs"


@pytest.mark.parametrize(("override", "message"), [
    ("guest.vcpus=4\nx=1", "--set 'guest.vcpus=4\\nx=1': the value must be on one line"),
    ("guest..vcpus=4", "is not a dotted key"),
    ("guest.vcpus", "expected dotted.key=value"),
    ("processes[5].name=q", "processes[5]: no such list element to override"),
    ("guest.vcpus.x=1", "guest.vcpus.x: cannot set a key inside a non-table value"),
    ("processes.²=1", "processes.²: cannot set a key inside a non-table value"),
    ('guest.sched.policy="fifo"', "guest.sched.policy: input should be 'cfs', 'eevdf' or 'rr'"),
    ('guest.sched.tunable_scaling="exp"', "guest.sched.tunable_scaling: input should be 'none'"),
    ("guest.hz=0", "guest.hz: input should be greater than or equal to 24"),
    ("guest.sched.base_slice=0", "guest.sched.base_slice: input should be greater than or equal"),
])
def test_bad_overrides(override, message):
    lines = refused(scenario(), [override])
    assert len(lines) == 1 and message in lines[0], lines


def test_hypervisor_keys_without_enabled_warn_and_with_enabled_do_not():
    data = scenario()
    data["hypervisor"] = {"memory_limit": "32MiB", "async_pf": "kvm"}
    assert config_warnings(load_config(data)) == [
        "hypervisor.async_pf, hypervisor.memory_limit set but hypervisor.enabled = false, so "
        "the host is not modelled and these keys are ignored; add enabled = true to "
        "[hypervisor]"]
    data["hypervisor"]["enabled"] = True
    assert config_warnings(load_config(data)) == []
    assert config_warnings(load_config(scenario())) == []


def test_a_source_that_is_neither_a_path_nor_a_dict():
    assert refused(42) == ["expected a TOML path or a dict, got int"]  # type: ignore[arg-type]


def test_a_step_missing_its_count_is_reported_without_a_duration():
    """Found by the fuzz test: the span check met ``units = None`` (TypeError)."""
    assert refused(scenario(op="compute")) == [
        "processes[0].threads[0].steps[0]: give exactly one of units or duration"]


def test_unknown_keys_and_bad_step_values_do_not_hide_cross_field_problems():
    """A typo'd key, a bad think time, a vCPU that does not exist and a misspelt vseg: all
    four in one run.  The span check of the thread whose think was refused is not run on a
    guessed value."""
    data = scenario(op="access", vseg="hep", accesses=10, think=0.5)
    data["guest"]["memroy"] = "64MiB"
    data["processes"][0]["threads"][0]["cpu"] = 5
    assert [line.split(":")[0] for line in refused(data)] == [
        "guest.memroy", "processes[0].threads[0].steps[0].think",
        "processes[0].threads[0].cpu", "processes[0].threads[0].steps[0].vseg"]


def test_a_bad_guest_value_stops_the_cross_field_rules():
    """With guest.vcpus refused, "vCPU 5 does not exist" would be judged against a default:
    only the schema problem is reported."""
    data = scenario()
    data["guest"]["vcpus"] = "two"
    data["processes"][0]["threads"][0]["cpu"] = 5
    assert [line.split(":")[0] for line in refused(data)] == ["guest.vcpus"]


def test_a_guest_too_small_for_the_kernel_names_both_sizes_and_nothing_else():
    """guest.memory below the kernel's share: one line that gives both sizes; no line about
    hypervisor.reclaim_batch, a key of a host model this scenario does not have."""
    data = scenario()
    data["guest"]["memory"] = "4KiB"
    assert refused(data) == ["guest.mm.kernel_reserved: must be smaller than guest.memory "
                             "(8MiB is not smaller than 4KiB)"]
    data["hypervisor"] = {"enabled": True}
    assert refused(data)[1:] == ["hypervisor.reclaim_batch: must be at most half the host "
                                 "memory limit in pages"]


@pytest.mark.parametrize(("override", "line"), [
    ("guest=3", "guest: expected a table ({ key = value, ... } or a [section])"),
    ("hypervisor.swap=[1]", "hypervisor.swap: expected a table ({ key = value, ... } or a "
                            "[section])"),
    ("processes[0]=\"p\"", "processes[0]: expected a table ({ key = value, ... } or a "
                           "[section])"),
])
def test_a_value_where_a_table_goes_is_said_so_without_class_names(override, line):
    """pydantic's own words name its classes ('valid dictionary or instance of GuestConfig')."""
    assert refused(scenario(), [override]) == [line]


@pytest.mark.parametrize("key", ["processes[-1].name", "processes[x].name", "guest.vcpus[0]]"])
def test_a_list_index_that_is_not_a_number_from_0_is_not_an_unknown_key(key):
    """'processes[-1]' was taken for a key of its own: 'unknown key; allowed here: guest,
    hypervisor, processes, sim', which names the very key the user wrote."""
    assert refused(scenario(), [f"{key}=1"]) == [
        f"--set '{key}=1': '{key}' is not a dotted key such as guest.vcpus or processes[0].name"]


def test_an_empty_name_is_refused():
    """A process, vseg or forked child named '' keyed its results and tables by ''."""
    data = scenario(op="fork", name="", steps=[{"op": "compute", "units": 1}])
    data["processes"][0]["name"] = ""
    data["processes"][0]["vsegs"][0]["name"] = ""
    assert refused(data) == [
        "processes[0].name: a name may not be empty",
        "processes[0].vsegs[0].name: a name may not be empty",
        "processes[0].threads[0].steps[0].name: a name may not be empty",
    ]
