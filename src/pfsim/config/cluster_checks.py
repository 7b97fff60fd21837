"""Cross-field checks of the cluster-related config keys (called by the config loader), and
:func:`almos_enabled`, which says whether a config runs the ALMOS-MKH cluster VMM.

Kept apart from :mod:`pfsim.config.load` so the loader only gains one call; every failure is
a :class:`~pfsim.errors.ConfigError` naming the dotted key.  The cluster VMM itself is
:mod:`pfsim.cluster`; this module reads only the config.
"""

from __future__ import annotations

import re
from typing import Any

from pfsim.config.schema import Config
from pfsim.errors import ConfigError
from pfsim.units import PAGE_SIZE

THREAD_STACK_BYTES = 16 << 10
"""Size of a thread's automatic stack (guest.kernel.THREAD_STACK_SIZE)."""
_THREAD_STACK = re.compile(r"^stack\.(\d+)$")


class _Extent:
    """A pseudo vseg for name checks: only its size matters."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.type = "stack"


def almos_enabled(config: Config) -> bool:
    """Does this config run the ALMOS-MKH VMM (rather than the flat kernel)?"""
    guest = config.guest
    return guest.clusters > 1 or guest.vmm.model == "almos"


def step_targets(proc: Any, vsegs: dict[str, Any]) -> dict[str, Any]:
    """Names a step of ``proc`` may use as ``vseg``: its vsegs, ``@stack`` (the running
    thread's own stack) and ``stack.N`` (thread N's stack, when thread N has one)."""
    names = dict(vsegs)
    names["@stack"] = _Extent(THREAD_STACK_BYTES)
    index = 0
    for group in proc.threads:
        for _ in range(group.count):
            if group.stack:
                names[f"stack.{index}"] = _Extent(THREAD_STACK_BYTES)
            index += 1
    return names


def is_thread_stack(name: str) -> bool:
    return name == "@stack" or _THREAD_STACK.match(name) is not None


def _walk(steps: list[Any], where: str):  # type: ignore[no-untyped-def]
    for s, step in enumerate(steps):
        here = f"{where}.steps[{s}]"
        yield step, here
        if step.op == "fork":
            yield from _walk(step.steps, here)


def check_cluster_config(config: Config) -> None:
    """Refuse cluster settings that cannot work together."""
    guest = config.guest
    cluster = guest.vmm
    n = guest.clusters
    if cluster.mesh is not None:
        if len(cluster.mesh) != 2:
            raise ConfigError("guest.vmm.mesh", "must be [x_size, y_size]")
        if cluster.mesh[0] * cluster.mesh[1] < n:
            raise ConfigError("guest.vmm.mesh",
                              f"{cluster.mesh[0]}x{cluster.mesh[1]} has fewer positions than "
                              f"guest.clusters ({n})")
    almos = almos_enabled(config)
    if almos:
        frames = guest.memory // PAGE_SIZE
        if frames % n:
            raise ConfigError("guest.memory", f"must split into {n} equal cluster banks of whole "
                              "4KiB pages")
        reserved = max(1, guest.mm.kernel_reserved // PAGE_SIZE)
        if (reserved + n - 1) // n >= frames // n:
            raise ConfigError("guest.mm.kernel_reserved", "leaves no user page in a cluster bank")
        if config.hypervisor.enabled:
            raise ConfigError("hypervisor.enabled",
                              "the ALMOS-MKH cluster model (guest.clusters > 1 or "
                              "guest.vmm.model = 'almos') does not run under the host model "
                              "yet; set it to false")
    if not almos:
        return  # the flat kernel ignores every placement key
    for p, proc in enumerate(config.processes):
        where = f"processes[{p}]"
        if proc.cluster is not None and proc.cluster >= n:
            raise ConfigError(f"{where}.cluster", f"cluster {proc.cluster} does not exist "
                              f"(guest.clusters = {n})")
        for v, vseg in enumerate(proc.vsegs):
            if vseg.cluster is not None:
                if vseg.cluster >= n:
                    raise ConfigError(f"{where}.vsegs[{v}].cluster",
                                      f"cluster {vseg.cluster} does not exist "
                                      f"(guest.clusters = {n})")
                if vseg.type not in ("anon", "remote"):
                    raise ConfigError(f"{where}.vsegs[{v}].cluster",
                                      "only anon and remote vsegs are placed in a chosen cluster")
        for t, group in enumerate(proc.threads):
            for step, here in _walk(group.steps, f"{where}.threads[{t}]"):
                if step.op != "fork":
                    continue
                if step.cluster is not None and step.cluster >= n:
                    raise ConfigError(f"{here}.cluster", f"cluster {step.cluster} does not exist "
                                      f"(guest.clusters = {n})")
                if step.cpu is not None:
                    if step.cpu >= guest.vcpus:
                        raise ConfigError(f"{here}.cpu", f"vCPU {step.cpu} does not exist "
                                          f"(guest.vcpus = {guest.vcpus})")
                    per = guest.vcpus // n
                    if almos and step.cluster is not None and step.cpu // per != step.cluster:
                        raise ConfigError(f"{here}.cpu", f"vCPU {step.cpu} is not in cluster "
                                          f"{step.cluster}")
