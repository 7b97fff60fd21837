"""Config checks of the cluster keys: each refusal names the dotted key and what is allowed."""

from __future__ import annotations

import pytest

from pfsim.config import load_config
from pfsim.errors import ConfigError


def _cfg(guest=None, process=None, steps=None, vsegs=None):
    proc = {"name": "p", "vsegs": vsegs or [{"name": "h", "type": "anon", "size": "64KiB"}],
            "threads": [{"steps": steps or [{"op": "compute", "units": 1}]}], **(process or {})}
    return {"guest": {"vcpus": 4, "clusters": 2, **(guest or {})}, "processes": [proc]}


@pytest.mark.parametrize(("data", "key", "text"), [
    (_cfg(guest={"vmm": {"mesh": [1, 1]}}), "guest.vmm.mesh", "fewer positions"),
    (_cfg(guest={"vmm": {"mesh": [2, 1, 1]}}), "guest.vmm.mesh", "[x_size, y_size]"),
    (_cfg(guest={"memory": "24580KiB", "mm": {"kernel_reserved": "4MiB"}}), "guest.memory", "banks"),
    (_cfg(guest={"memory": "16MiB", "mm": {"kernel_reserved": "16380KiB"}}), "guest.mm.kernel_reserved",
     "no user page"),
    (_cfg(process={"cluster": 2}), "processes[0].cluster", "does not exist"),
    (_cfg(vsegs=[{"name": "h", "type": "anon", "size": "4KiB", "cluster": 5}]),
     "processes[0].vsegs[0].cluster", "does not exist"),
    (_cfg(vsegs=[{"name": "h", "type": "data", "size": "4KiB", "cluster": 1}]),
     "processes[0].vsegs[0].cluster", "only anon and remote"),
    (_cfg(steps=[{"op": "fork", "cluster": 3, "steps": [{"op": "exit"}]}]),
     "processes[0].threads[0].steps[0].cluster", "does not exist"),
    (_cfg(steps=[{"op": "fork", "cluster": 1, "cpu": 0, "steps": [{"op": "exit"}]}]),
     "processes[0].threads[0].steps[0].cpu", "not in cluster 1"),
    (_cfg(steps=[{"op": "fork", "steps": [{"op": "access", "vseg": "nope", "accesses": 1}]}]),
     "processes[0].threads[0].steps[0].steps[0].vseg", "unknown vseg"),
    (_cfg(steps=[{"op": "munmap", "vseg": "nope"}]), "processes[0].threads[0].steps[0].vseg",
     "munmap takes"),
    (_cfg(steps=[{"op": "teleport"}]), "processes[0].threads[0].steps[0].op", "fork, exit, wait"),
])
def test_refused_with_the_dotted_key(data, key, text):
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.key == key
    assert text in info.value.message


def test_hypervisor_with_clusters_is_refused():
    data = _cfg()
    data["hypervisor"] = {"enabled": True}
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.key == "hypervisor.enabled"


def test_thread_stacks_are_step_targets():
    """'@stack' (the thread's own stack) and 'stack.N' (thread N's) are accepted vseg names;
    a thread without a stack gives no name."""
    steps = [{"op": "access", "vseg": "@stack", "accesses": 1},
             {"op": "access", "vseg": "stack.0", "accesses": 1}]
    load_config(_cfg(steps=steps))
    data = _cfg(steps=steps[1:])
    data["processes"][0]["threads"][0]["stack"] = False
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.key == "processes[0].threads[0].steps[0].vseg"


def test_defaults_are_documented_switches():
    """Every switch of uncertain behaviour in docs/clusters.md's table exists in the schema
    with the default that table states (the hand-written page and the schema agree)."""
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "clusters.md").read_text()
    table = doc[doc.index("| key (`[guest.vmm]`) | default |"):].split("\n\n", 1)[0]
    vmm = load_config(_cfg()).guest.vmm
    documented = {}
    for row in table.splitlines()[2:]:
        key, default = (cell.strip() for cell in row.strip("|").split("|")[:2])
        literal = re.match(r"`([^`]+)`", default)
        duration = re.fullmatch(r"(\d+) µs", default)
        if literal:
            documented[key.strip("`")] = tomllib.loads(f"v = {literal.group(1)}")["v"]
        elif duration:
            documented[key.strip("`")] = int(duration.group(1)) * 1000
        else:  # mesh: "squarest power-of-two split", computed when unset
            assert getattr(vmm, key.strip("`")) is None, key
    assert set(documented) >= {"oom_rule", "cow_oom_policy", "cow_race_is_user_error",
                               "cow_update_unmapped_copies", "remote_ops", "vsl_lock",
                               "distrib_index", "lookahead"}
    for key, value in documented.items():
        assert getattr(vmm, key) == value, key
