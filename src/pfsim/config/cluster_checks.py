"""Cross-field checks of the cluster-related config keys (called by the config loader), and
:func:`almos_enabled`, which says whether a config runs the ALMOS-MKH cluster VMM.

Kept apart from :mod:`pfsim.config.load` so the loader only gains one call; every failure is
a :class:`~pfsim.errors.ConfigError` naming the dotted key.  The cluster VMM itself is
:mod:`pfsim.cluster`; this module reads only the config.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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


class StepTargets(Mapping[str, Any]):
    """Names a step of a process may use as ``vseg``: its vsegs, ``@stack`` (the running
    thread's own stack) and ``stack.N`` (thread N's stack, when thread N has one).  The
    thread stacks are not listed one by one (a group may hold millions of threads)."""

    def __init__(self, proc: Any, vsegs: dict[str, Any]) -> None:
        self.vsegs = vsegs
        self.groups: list[tuple[int, bool]] = []  # (first thread index, has stacks) per group
        self.threads = 0
        for group in proc.threads:
            self.groups.append((self.threads, group.stack))
            self.threads += group.count

    def __getitem__(self, name: str) -> Any:
        if name in self.vsegs:
            return self.vsegs[name]
        if name == "@stack":
            return _Extent(THREAD_STACK_BYTES)
        match = _THREAD_STACK.match(name)
        if match and len(match.group(1)) < 12:
            index = int(match.group(1))
            if index < self.threads:
                first, has_stack = max(g for g in self.groups if g[0] <= index)
                if has_stack:
                    return _Extent(THREAD_STACK_BYTES)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self.vsegs
        yield "@stack"
        for first, has_stack in self.groups:
            if has_stack:
                yield f"stack.{first}"  # the first of the group's stacks: enough for a listing

    def __len__(self) -> int:
        return len(self.vsegs) + 1 + sum(1 for _, has_stack in self.groups if has_stack)


def step_targets(proc: Any, vsegs: dict[str, Any]) -> StepTargets:
    """The names a step of ``proc`` may use as ``vseg`` (see :class:`StepTargets`)."""
    return StepTargets(proc, vsegs)


def is_thread_stack(name: str) -> bool:
    return name == "@stack" or _THREAD_STACK.match(name) is not None


def _walk(steps: list[Any], where: str):  # type: ignore[no-untyped-def]
    for s, step in enumerate(steps):
        here = f"{where}.steps[{s}]"
        yield step, here
        if step.op == "fork":
            yield from _walk(step.steps, here)


def check_cluster_config(config: Config) -> list[ConfigError]:
    """Every problem of cluster settings that cannot work together, in config order."""
    problems: list[ConfigError] = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigError(key, message))

    guest = config.guest
    cluster = guest.vmm
    n = guest.clusters
    if cluster.mesh is not None:
        if len(cluster.mesh) != 2:
            problem("guest.vmm.mesh", "must be [x_size, y_size]")
        elif cluster.mesh[0] * cluster.mesh[1] < n:
            problem("guest.vmm.mesh", f"{cluster.mesh[0]}x{cluster.mesh[1]} has fewer positions "
                    f"than guest.clusters ({n})")
        elif cluster.mesh[0] * cluster.mesh[1] > 1 << 20:
            problem("guest.vmm.mesh", "has more than 2**20 positions")
    almos = almos_enabled(config)
    if not almos:
        return problems  # the flat kernel ignores every placement key
    frames = guest.memory // PAGE_SIZE
    if frames % n:
        problem("guest.memory", f"must split into {n} equal cluster banks of whole 4KiB pages")
    reserved = max(1, guest.mm.kernel_reserved // PAGE_SIZE)
    if (reserved + n - 1) // n >= frames // n:
        problem("guest.mm.kernel_reserved", "leaves no user page in a cluster bank")
    if config.hypervisor.enabled:
        problem("hypervisor.enabled", "the ALMOS-MKH cluster model (guest.clusters > 1 or "
                "guest.vmm.model = 'almos') does not run under the host model yet; set it to false")
    per = guest.vcpus // n  # vCPUs per cluster (0 when guest.clusters is refused)
    for p, proc in enumerate(config.processes):
        where = f"processes[{p}]"
        if proc.cluster is not None and proc.cluster >= n:
            problem(f"{where}.cluster",
                    f"cluster {proc.cluster} does not exist (guest.clusters = {n})")
        for v, vseg in enumerate(proc.vsegs):
            if vseg.cluster is None:
                continue
            if vseg.cluster >= n:
                problem(f"{where}.vsegs[{v}].cluster",
                        f"cluster {vseg.cluster} does not exist (guest.clusters = {n})")
            if vseg.type not in ("anon", "remote"):
                problem(f"{where}.vsegs[{v}].cluster",
                        "only anon and remote vsegs are placed in a chosen cluster")
        for t, group in enumerate(proc.threads):
            for step, here in _walk(group.steps, f"{where}.threads[{t}]"):
                if step.op != "fork":
                    continue
                if step.cluster is not None and step.cluster >= n:
                    problem(f"{here}.cluster",
                            f"cluster {step.cluster} does not exist (guest.clusters = {n})")
                if step.cpu is None:
                    continue
                if step.cpu >= guest.vcpus:
                    problem(f"{here}.cpu",
                            f"vCPU {step.cpu} does not exist (guest.vcpus = {guest.vcpus})")
                elif per and step.cluster is not None and step.cpu // per != step.cluster:
                    problem(f"{here}.cpu", f"vCPU {step.cpu} is not in cluster {step.cluster}")
    return problems
