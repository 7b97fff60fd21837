"""Units parsing and the config loader (defaults, overrides, digest)."""

from __future__ import annotations

import pytest

from pfsim.config import config_digest, load_config
from pfsim.errors import ConfigError
from pfsim.units import parse_address, parse_size, parse_time

MINIMAL = {"processes": [{"name": "p", "threads": [{"steps": [{"op": "compute", "units": 1}]}]}]}


@pytest.mark.parametrize(("text", "value"), [("4KiB", 4096), ("64MiB", 64 << 20), ("1GiB", 1 << 30),
                                             ("10000000B", 10_000_000), ("512B", 512), (123, 123),
                                             ("1.5KiB", 1536), ("1.5TiB", 1_649_267_441_664)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize(("text", "hint"), [
    ("64MB", "write '64MiB' (67,108,864 bytes) or '64000000B' for 64,000,000 bytes"),
    ("1.5KB", "write '1.5KiB' (1,536 bytes) or '1500B' for 1,500 bytes"),
])
def test_decimal_sizes_are_refused_with_both_readings(text, hint):
    """"64MB" is read as 64,000,000 bytes by some and 64 MiB by others: refused, naming both
    (docs/config.md, "Units")."""
    with pytest.raises(ValueError, match="decimal units") as info:
        parse_size(text)
    assert hint in str(info.value)


@pytest.mark.parametrize(("text", "value"), [("100ns", 100), ("16us", 16_000), ("2ms", 2_000_000),
                                             ("1s", 1_000_000_000), ("1.5us", 1500), (7, 7),
                                             ("1.1s", 1_100_000_000), ("0.000001s", 1_000)])
def test_times(text, value):
    assert parse_time(text) == value


@pytest.mark.parametrize("bad", ["4 parsecs", "KiB", "1.0000001KiB", "-3ms", True, "64MB ms"])
def test_bad_units_are_refused(bad):
    with pytest.raises(ValueError):
        parse_size(bad) if not str(bad).endswith("ms") else parse_time(bad)


def test_a_decimal_size_unit_in_a_duration_is_a_plain_error():
    with pytest.raises(ValueError, match="a duration is a string with a unit in ns, us, ms, s"):
        parse_time("64MB")


def test_addresses():
    assert parse_address("0x1000") == 4096 and parse_address(12) == 12
    with pytest.raises(ValueError):
        parse_address("zz")


def test_defaults_come_from_the_schema():
    config = load_config(MINIMAL)
    assert config.guest.vcpus == 1 and config.guest.sched.timeslice == 3_000_000
    assert config.guest.disk.fault_around == 64 << 10 and config.sim.seed == 0


def test_overrides_and_seed():
    config = load_config(MINIMAL, overrides=["guest.vcpus=4", 'guest.memory="1GiB"',
                                             "processes[0].threads[0].steps[0].units=9"], seed=5)
    assert config.guest.vcpus == 4 and config.guest.memory == 1 << 30
    assert config.processes[0].threads[0].steps[0].units == 9 and config.sim.seed == 5


def test_override_of_a_missing_list_element_names_it():
    with pytest.raises(ConfigError, match=r"processes\[3\]: no such list element"):
        load_config(MINIMAL, overrides=["processes[3].name=x"])


def test_digest_ignores_the_seed_but_not_the_model():
    base = load_config(MINIMAL)
    assert config_digest(base) == config_digest(load_config(MINIMAL, seed=9))
    assert config_digest(base) != config_digest(load_config(MINIMAL, overrides=["guest.vcpus=2"]))


def test_vseg_overlap_is_reported_with_its_key():
    from pfsim import run

    data = {"processes": [{"name": "p", "vsegs": [
        {"name": "a", "type": "anon", "size": "64KiB", "base": 0x10000000},
        {"name": "b", "type": "anon", "size": "64KiB", "base": 0x10008000}],
        "threads": [{"steps": [{"op": "compute", "units": 1}]}]}]}
    with pytest.raises(ConfigError, match=r"processes\[0\]\.vsegs\[1\]\.base: vseg 'b' overlaps vseg 'a'"):
        run(data)
