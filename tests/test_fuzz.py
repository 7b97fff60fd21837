"""Fuzzing the input edges: config dicts, ``--set`` strings and trace bytes.

Every input must end in success or in a user error (exit status 2, every stderr line
``pfsim: error: ...``, no output directory): never a traceback, never exit status 3.

In CI each property runs a fixed, small set of examples (``derandomize``: the same inputs
every run, a few seconds in all).  Before a release, run many more with fresh randomness::

    PFSIM_FUZZ_EXAMPLES=5000 PFSIM_FUZZ_RANDOM=1 python -m pytest tests/test_fuzz.py

A failure prints the smallest input Hypothesis found; add it to tests/test_error_boundary.py.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfsim.boundary import call
from pfsim.cli import cli
from pfsim.config import load_config
from pfsim.errors import PfsimError
from pfsim.footprint import BASELINE, estimate

EXAMPLES = int(os.environ.get("PFSIM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("PFSIM_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

BASE: dict[str, Any] = {
    "sim": {"duration": "200us", "engine": "reference"},
    "guest": {"vcpus": 2, "memory": "64MiB", "sched": {"policy": "cfs"}},
    "hypervisor": {"enabled": False, "memory_limit": "32MiB", "async_pf": "kvm"},
    "processes": [
        {"name": "kv", "vsegs": [{"name": "heap", "type": "anon", "size": "1MiB"},
                                 {"name": "lib", "type": "file", "size": "64KiB", "file": "f"}],
         "threads": [{"count": 2, "steps": [
             {"op": "access", "vseg": "heap", "pattern": "zipf", "accesses": 200,
              "write_ratio": 0.3, "think": "100ns"},
             {"op": "syscall", "vseg": "heap", "length": "8KiB", "kind": "read"},
             {"op": "fork", "steps": [{"op": "access", "vseg": "heap", "accesses": 10,
                                       "write_ratio": 1.0}]},
             {"op": "wait"}, {"op": "munmap", "vseg": "lib"}, {"op": "compute", "units": 5}]}]},
        {"name": "scan", "start": "10us", "threads": [{"steps": [
            {"op": "touch", "addr": "0xdead0000"}, {"op": "sleep", "duration": "5us"}]}]},
    ],
}

PLAUSIBLE = st.one_of(
    st.integers(0, 6), st.integers(0, 5000),
    st.sampled_from(["0B", "4KiB", "12KiB", "1MiB", "63MiB", "64MiB", "1GiB", "0ns", "1ns",
                     "1us", "3ms", "7ms", "1s", "0.5", True, False, 0.0, 1.0, 0.999]),
    st.sampled_from(["lru", "fifo", "clock", "random", "kvm", "s390", "off", "halt", "zram",
                     "hdd", "almos", "auto", "rpc", "panic", "kill-largest", "rr", "cfs", "stack",
                     "code", "data", "file", "remote", "anon", "sequential", "uniform", "zipf",
                     "hotcold", "read", "write", "kernel", "user", "access", "compute",
                     "syscall", "touch", "sleep", "fork", "exit", "wait", "munmap", "exec",
                     "heap", "lib", "@stack", "stack.1", "kv", "scan", "compiled"]),
)
ODD_VALUES = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE,
    st.integers(), st.sampled_from([-1, 0, 1, 2**31, 2**32 + 1, 2**53 + 1, 2**63, 2**64, -2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from(["64MB", "1e30", "0.5us", "-3ms", "4 KiB", "LRU", "KVM", "inf", "",
                     "\udcff", "x" * 300, "0x" + "f" * 17, "1.0000001KiB", "99999999999TiB"]),
    st.text(max_size=12),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "op", "name"]), st.integers(0, 3), max_size=2),
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside the config dict."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated_configs(draw) -> dict:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "unknown" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
        else:
            parent[path[-1]] = draw(ODD_VALUES)
        if not paths(data):
            break
    return data


UNIT_TEXT = st.builds(lambda n, u: f"{n}{u}", st.sampled_from(["0", "1", "3", "4", "7", "64", "1.5",
                                                              "100", "4096", "0.001"]),
                      st.sampled_from(["B", "KiB", "MiB", "GiB", "ns", "us", "ms", "s"]))


def like(value: Any) -> st.SearchStrategy:
    """Values of the same kind as ``value``, mostly plausible, sometimes at a boundary."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(0, 8), st.integers(-2, 10**6),
                         st.sampled_from([2**31, 2**53, 2**63 - 1]))
    if isinstance(value, float):
        return st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 1.0]))
    if isinstance(value, str) and value.endswith(("B", "KiB", "MiB", "GiB")):
        return st.builds(lambda n, u: f"{n}{u}", st.sampled_from(["0", "4", "12", "64", "1.5"]),
                         st.sampled_from(["KiB", "MiB"]))
    if isinstance(value, str) and value.endswith(("ns", "us", "ms")):
        return st.builds(lambda n, u: f"{n}{u}", st.sampled_from(["0", "1", "3", "7", "100"]),
                         st.sampled_from(["ns", "us", "ms"]))
    if isinstance(value, str):
        return st.one_of(UNIT_TEXT, PLAUSIBLE.filter(lambda v: isinstance(v, str)))
    return ODD_VALUES


def _choices() -> dict[str, list[str]]:
    """Each schema key that takes a choice -> its choices (over all tables)."""
    import typing

    from pydantic import BaseModel

    from pfsim.config import schema

    found: dict[str, list[str]] = {}
    pending, seen = [schema.Config], set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            stack = [field.annotation]
            while stack:
                item = stack.pop()
                if typing.get_origin(item) is typing.Literal:
                    found.setdefault(name, []).extend(typing.get_args(item))
                elif isinstance(item, type) and issubclass(item, BaseModel):
                    pending.append(item)
                else:
                    stack.extend(typing.get_args(item))
    return found


CHOICES = _choices()


@st.composite
def tuned_configs(draw) -> dict:
    """The base with a few leaves changed to values of their own kind, and the big switches
    (host model, clusters, vCPUs) drawn: configs that mostly validate and run."""
    data = copy.deepcopy(BASE)
    data["guest"]["vcpus"] = draw(st.sampled_from([1, 2, 4]))
    data["guest"]["clusters"] = draw(st.sampled_from([1, 1, 2]))
    data["hypervisor"]["enabled"] = data["guest"]["clusters"] == 1 and draw(st.booleans())
    leaves = [p for p in paths(data) if not isinstance(_at(data, p), (dict, list))]
    for path in draw(st.lists(st.sampled_from(leaves), min_size=0, max_size=3, unique=True)):
        parent = _at(data, path[:-1])
        if path[-1] in CHOICES and draw(st.integers(0, 9)):
            parent[path[-1]] = draw(st.sampled_from(CHOICES[path[-1]]))
        else:
            parent[path[-1]] = draw(like(parent[path[-1]]))
    return data


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def runnable(config) -> bool:
    """Small enough to run in a fuzz example (validation itself is always exercised)."""
    threads = sum(g.count for p in config.processes for g in p.threads)
    return (estimate(config).total < BASELINE + (256 << 20) and threads <= 64
            and config.guest.vcpus <= 64 and config.hypervisor.host_tasks <= 64)


@FUZZ
@given(st.one_of(mutated_configs(), tuned_configs()))
def test_any_config_dict_is_accepted_or_refused_cleanly(data):
    from pfsim.api import run

    try:
        config = load_config(data)
    except PfsimError as exc:
        assert exc.lines() and all(line and "\n" not in line for line in exc.lines())
        return
    if not runnable(config):
        return
    settled = config.model_dump(mode="json")
    settled["sim"]["duration"] = "200us"  # a mutation may have removed the limit
    if not os.environ.get("PFSIM_FUZZ_RANDOM"):
        settled["sim"]["engine"] = "reference"  # CI: no first compile of the compiled core
    try:
        result = run(settled)
    except PfsimError:
        return
    assert result["sim_time_ns"] <= 200_000


SET_KEYS = ["guest.vcpus", "guest.memory", "guest.clusters", "guest.sched.policy",
            "guest.costs.entry", "guest.mm.oom", "guest.disk.readahead", "hypervisor.enabled",
            "hypervisor.reclaim", "hypervisor.swap.device", "processes[0].name",
            "processes[0].vsegs[0].size", "processes[0].threads[0].steps[0].think",
            "processes[0].threads[0].steps[0].pattern", "processes[1].start", "sim.seed",
            "processes[0].threads[0].steps[0].write_ratio", "processes[9].name", "guest",
            "guest.vmm.mesh"]
SET_VALUES = st.one_of(
    st.sampled_from(["4", "-1", "0", "1e30", "inf", "nan", "true", '"64MB"', '"64MiB"', "[1,2]",
                     "{a=1}", '"LRU"', "lru", "kvm", "[" * 80 + "]" * 80, "1\nx=2", '"\\ud800"',
                     "9" * 5000, "0x10", '"1.5us"', "2**63", "[[]]", '"' + "n" * 300 + '"']),
    st.text(max_size=20))


@st.composite
def set_arguments(draw) -> str:
    key = draw(st.one_of(st.sampled_from(SET_KEYS), st.text(min_size=0, max_size=15)))
    return f"{key}={draw(SET_VALUES)}" if draw(st.booleans()) else key


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    data = copy.deepcopy(BASE)
    lines = ['[sim]\nduration = "200us"\nengine = "reference"\n[guest]\nvcpus = 2\n'
             'memory = "64MiB"\n[[processes]]\nname = "p"\n'
             'vsegs = [{ name = "h", type = "anon", size = "1MiB" }]\n'
             '[[processes.threads]]\nsteps = [{ op = "access", vseg = "h", accesses = 50 },'
             ' { op = "compute", units = 3 }]\n[[processes]]\nname = "q"\nstart = "1us"\n'
             '[[processes.threads]]\nsteps = [{ op = "sleep", duration = "1us" }]\n']
    (path / "base.toml").write_text("".join(lines))
    del data
    return path


def cli_status(capsys, args: list[str]) -> tuple[int, str]:
    code = call(lambda: cli.main(args=args, prog_name="pfsim", standalone_mode=False), args)
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str, out: Path | None = None) -> None:
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and "Traceback" not in err, err
        assert all(line.startswith(("pfsim: error: ", "pfsim: warning: ")) for line in lines), err
        if out is not None:
            assert not out.exists()


@FUZZ
@given(st.lists(set_arguments(), min_size=1, max_size=3))
def test_any_set_argument_is_accepted_or_refused_cleanly(capsys, fuzz_dir, overrides):
    out = fuzz_dir / "out"
    shutil.rmtree(out, ignore_errors=True)
    args = ["run", str(fuzz_dir / "base.toml"), "--out", str(out), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    code, err = cli_status(capsys, args)
    assert_clean(code, err, out)


def npy(shape_text: str, body: bytes, dtype: str = "<i8") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape_text}, }}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


TRACE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet="0123456789abcdefx# ,\nLSMI=-", max_size=200).map(str.encode),
    st.builds(npy, st.sampled_from(["(1099511627776,)", "(3,)", "(2, 2)", "()", "(-1,)",
                                    "(" + "1," * 70 + ")"]),
              st.binary(max_size=64), st.sampled_from(["<i8", "<f8", "|O", "<u2", "<i8x"])),
)


@FUZZ
@given(TRACE_BYTES, st.sampled_from(["trace.txt", "trace.csv", "trace.npy", "trace.lackey",
                                     "trace"]))
def test_any_trace_file_is_replayed_or_refused_cleanly(capsys, fuzz_dir, content, name):
    path = fuzz_dir / name
    path.write_bytes(content)
    code, err = cli_status(capsys, ["replay", str(path), "--policy", "lru,opt", "--frames", "4"])
    assert_clean(code, err)
    assert not math.isnan(code)
