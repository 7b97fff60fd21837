"""The sweep file: a base scenario, overrides for every point, axes and seeds → the points.

A sweep file is TOML with these top-level keys (``examples/sweep-apf.toml``)::

    base = "overcommit.toml"    # the base scenario, relative to the sweep file
    seed = 1                    # the sweep seed (default: the base scenario's sim.seed)
    seeds = 5                   # replicates per group, or a list of seeds used as given
    metrics = ["work", ...]     # the summary's columns (default: metrics.DEFAULT_SUMMARY)

    [set]                       # overrides for every point, as with --set
    "sim.duration" = "2s"

    [axes]                      # one factor of the cartesian product per key
    "hypervisor.async_pf" = ["off", "halt", "kvm", "s390"]

    [[zip]]                     # keys whose lists advance together: one factor for the group
    "hypervisor.memory_limit" = ["256MiB", "512MiB"]
    "hypervisor.reclaim_batch" = [16, 32]

A *group* is one combination of axis values; a *point* is a group and one replicate (one seed).
Every point is validated before anything runs; an error names the sweep file and the axis.
"""

from __future__ import annotations

import copy
import itertools
import math
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pfsim.config import Config, config_digest, load_config
from pfsim.errors import ConfigError, PfsimError
from pfsim.sweeps.literal import shown, toml_literal
from pfsim.sweeps.metrics import DEFAULT_SUMMARY, NUMERIC
from pfsim.sweeps.seeds import point_seed

KEYS = ("base", "seed", "seeds", "metrics", "set", "axes", "zip")
MAX_SEED = (1 << 63) - 1
MAX_POINTS = 100_000
"""Most points a sweep may have: each is a validated config in memory and a directory on disk
(a typo such as ``seeds = 100000000`` is refused instead of building them for hours)."""


class SweepError(PfsimError):
    """A sweep file, a sweep flag or a sweep's output directory that cannot be used."""


@dataclass(frozen=True)
class Factor:
    """One factor of the product: one key (an ``[axes]`` entry) or a ``[[zip]]`` group."""

    keys: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    """rows[i] holds the i-th value of every key."""


@dataclass(frozen=True)
class Sweep:
    where: str
    """The sweep file as messages name it."""
    base: Path | dict[str, Any]
    """The base scenario's file, or the scenario itself."""
    name: str
    """Default output directory name (the sweep file's stem)."""
    seed: int
    seeds: tuple[int, ...] | None
    """Seeds used as given, or None: ``replicates`` seeds derived per point."""
    replicates: int
    metrics: tuple[str, ...]
    overrides: tuple[str, ...]
    factors: tuple[Factor, ...]

    @property
    def axis_keys(self) -> tuple[str, ...]:
        return tuple(key for factor in self.factors for key in factor.keys)

    @property
    def groups(self) -> int:
        return math.prod(len(factor.rows) for factor in self.factors)


@dataclass(frozen=True)
class Point:
    axes: dict[str, Any]
    replicate: int
    seed: int
    config: Config
    overrides: tuple[str, ...]
    """The axis values as ``--set`` strings (after the sweep's own overrides)."""

    @cached_property
    def key(self) -> str:
        """The point's directory name: its config digest and its seed."""
        return f"{config_digest(self.config)}-{self.seed}"

    @property
    def label(self) -> str:
        values = " ".join(f"{k}={v if isinstance(v, str) else shown(v, 40)}"
                          for k, v in self.axes.items())
        return f"{values} #{self.replicate}" if values else f"#{self.replicate}"


def load_sweep(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Sweep:
    """Read and check a sweep file (or a dict shaped like one; its ``base`` is then relative
    to the current directory).  ``overrides`` are ``--set`` strings applied after ``[set]``.

    Raises:
        SweepError: one line naming the sweep file and what is wrong.
    """
    if isinstance(source, dict):
        data, where, home, name = dict(source), "sweep", Path("."), "sweep"
    else:
        path = Path(source)
        where, home, name = str(path), path.parent, path.stem
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SweepError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise SweepError(f"{path}: cannot read ({reason})") from None
        except (tomllib.TOMLDecodeError, RecursionError) as exc:
            raise SweepError(f"{path}: malformed TOML: {exc}") from None
    unknown = [key for key in data if key not in KEYS]
    if unknown:
        raise SweepError(f"{where}: {unknown[0]}: unknown key; allowed: {', '.join(KEYS)}")
    if "base" not in data:
        raise SweepError(f"{where}: base: missing; name the base scenario, "
                         'e.g. base = "overcommit.toml"')
    if isinstance(data["base"], dict):
        base: Path | dict[str, Any] = data["base"]  # the scenario itself, as a table
    elif isinstance(data["base"], str) and data["base"]:
        base = home / data["base"]
    else:
        raise SweepError(f"{where}: base: expected the path of a scenario file (or its table)")
    sets = _flatten_set(_table(data, "set", where), "", where)
    set_overrides = [f"{key}={toml_literal(value)}" for key, value in sets.items()]
    all_overrides = tuple(set_overrides + list(overrides or []))
    try:
        base_config = load_config(base, overrides=list(all_overrides))
    except ConfigError as exc:
        shown_base = base if isinstance(base, Path) else "table"
        raise SweepError(f"{where}: base {shown_base}: {_first(exc)}") from None

    seed = data.get("seed", base_config.sim.seed)
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise SweepError(f"{where}: seed: expected an integer from 0 to 2^63-1, got {shown(seed)}")
    seeds, replicates = _seeds(data.get("seeds", 1), where)
    metrics = data.get("metrics", list(DEFAULT_SUMMARY))
    if not isinstance(metrics, list) or not metrics:
        raise SweepError(f"{where}: metrics: expected a non-empty list of metric names")
    for metric in metrics:
        if metric not in NUMERIC:
            raise SweepError(f"{where}: metrics: unknown metric {shown(metric)}; allowed: "
                             f"{', '.join(NUMERIC)}")

    factors: list[Factor] = []
    seen: set[str] = set(sets)
    for key, values in _flatten_axes(_table(data, "axes", where), "", where).items():
        _check_axis(key, values, seen, where)
        factors.append(Factor((key,), tuple((v,) for v in values)))
    groups = data.get("zip", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise SweepError(f"{where}: zip: expected [[zip]] tables of equal-length value lists")
    for n, group in enumerate(groups):
        axes = _flatten_axes(group, "", f"{where}: zip[{n}]")
        if not axes:
            raise SweepError(f"{where}: zip[{n}]: empty; give two or more keys with value lists")
        for key, values in axes.items():
            _check_axis(key, values, seen, where)
        lengths = {key: len(values) for key, values in axes.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{key} has {length}" for key, length in lengths.items())
            raise SweepError(f"{where}: zip[{n}]: the lists must have the same length ({detail})")
        factors.append(Factor(tuple(axes), tuple(zip(*axes.values(), strict=True))))
    groups_n = math.prod(len(factor.rows) for factor in factors)
    if groups_n * replicates > MAX_POINTS:
        raise SweepError(f"{where}: {groups_n * replicates:,} points ({groups_n:,} "
                         f"group{'s' if groups_n != 1 else ''} x {replicates:,} seed"
                         f"{'s' if replicates != 1 else ''}); a sweep has at most "
                         f"{MAX_POINTS:,}")
    return Sweep(where=where, base=base, name=name, seed=seed, seeds=seeds,
                 replicates=replicates, metrics=tuple(metrics), overrides=all_overrides,
                 factors=tuple(factors))


def expand(sweep: Sweep) -> list[Point]:
    """Every point of the sweep in order (first axis slowest, replicates fastest), each
    config validated.

    Raises:
        SweepError: a point's config is refused (the message names the axis at fault), or two
            points resolve to the same config and seed.
    """
    data = _read_base(sweep)
    points: list[Point] = []
    keys: dict[str, Point] = {}
    for combo in itertools.product(*(factor.rows for factor in sweep.factors)):
        axes = {key: value for factor, row in zip(sweep.factors, combo, strict=True)
                for key, value in zip(factor.keys, row, strict=True)}
        overrides = tuple(f"{key}={toml_literal(value)}" for key, value in axes.items())
        try:
            config = load_config(data, overrides=[*sweep.overrides, *overrides])
        except ConfigError as exc:
            raise _blame(sweep.where, axes, exc) from None
        seeds = sweep.seeds or tuple(point_seed(sweep.seed, axes, r)
                                     for r in range(sweep.replicates))
        for replicate, seed in enumerate(seeds):
            point = Point(axes=axes, replicate=replicate, seed=seed, overrides=overrides,
                          config=config.model_copy(update={
                              "sim": config.sim.model_copy(update={"seed": seed})}))
            twin = keys.get(point.key)
            if twin is not None:
                raise SweepError(f"{sweep.where}: points {twin.label} and {point.label} resolve to "
                                 f"the same config and seed (digest {point.key})")
            keys[point.key] = point
            points.append(point)
    for seed in sweep.seeds or ():  # the config's own rules for a seed, checked once
        try:
            load_config(data, overrides=list(sweep.overrides), seed=seed)
        except ConfigError as exc:
            raise SweepError(f"{sweep.where}: seeds: {_first(exc)}") from None
    return points


# ----------------------------------------------------------------------------- helpers


def _first(exc: ConfigError) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.message


def _blame(where: str, axes: dict[str, Any], exc: ConfigError) -> SweepError:
    """Name the axis a config error is about (its key, a key inside it, or a key above it)."""
    key = exc.key or ""
    for axis, value in axes.items():
        if key and (key == axis or axis.startswith((key + ".", key + "["))
                    or key.startswith((axis + ".", axis + "["))):
            detail = exc.message if key == axis else f"{key}: {exc.message}"
            return SweepError(f"{where}: axis {axis} = {shown(value)}: {detail}")
    label = ", ".join(f"{k} = {shown(v)}" for k, v in axes.items()) or "the base scenario"
    return SweepError(f"{where}: at {label}: {_first(exc)}")


def _read_base(sweep: Sweep) -> dict[str, Any]:
    """The base scenario as a dict (load_sweep has already read and validated it)."""
    if isinstance(sweep.base, dict):
        return copy.deepcopy(sweep.base)
    return tomllib.loads(sweep.base.read_text(encoding="utf-8"))


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SweepError(f"{where}: {key}: expected a table ([{key}])")
    return value


def _flatten_set(table: dict[str, Any], prefix: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten_set(v, key, where))
        else:
            _check_value(v, f"{where}: set {key}")
            out[key] = v
    return out


def _flatten_axes(table: dict[str, Any], prefix: str, where: str) -> dict[str, list[Any]]:
    """``[axes]`` written with quoted dotted keys or as nested tables: dotted key → values."""
    out: dict[str, list[Any]] = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            for sub, values in _flatten_axes(v, key, where).items():
                if sub in out:
                    raise SweepError(f"{where}: axis {sub}: given twice")
                out[sub] = values
        elif isinstance(v, list):
            if key in out:
                raise SweepError(f"{where}: axis {key}: given twice")
            out[key] = v
        else:
            raise SweepError(f"{where}: axis {key}: expected a list of values, got {shown(v)}")
    return out


def _check_axis(key: str, values: list[Any], seen: set[str], where: str) -> None:
    if key in seen:
        raise SweepError(f"{where}: axis {key}: given twice (in [set], [axes] or [[zip]])")
    seen.add(key)
    if key in ("sim.seed", "seed"):
        raise SweepError(f"{where}: axis {key}: a sweep's seeds come from its seed and seeds keys "
                         "(seeds = [1, 2, 3] runs those seeds for every group)")
    if not values:
        raise SweepError(f"{where}: axis {key}: empty list; give at least one value")
    for value in values:
        _check_value(value, f"{where}: axis {key}")


def _check_value(value: Any, where: str) -> None:
    try:
        toml_literal(value)
    except TypeError as exc:
        raise SweepError(f"{where}: {exc} ({shown(value)})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seeds(value: Any, where: str) -> tuple[tuple[int, ...] | None, int]:
    if _is_int(value):
        if value < 1:
            raise SweepError(f"{where}: seeds: expected at least 1 replicate, got {value}")
        return None, value
    if isinstance(value, list) and value:
        if not all(_is_int(s) and 0 <= s <= MAX_SEED for s in value):
            raise SweepError(f"{where}: seeds: expected seeds from 0 to 2^63-1, got {shown(value)}")
        if len(set(value)) != len(value):
            raise SweepError(f"{where}: seeds: a seed is listed twice")
        return tuple(value), len(value)
    raise SweepError(f"{where}: seeds: expected a number of replicates or a non-empty list of "
                     f"seeds, got {shown(value)}")
