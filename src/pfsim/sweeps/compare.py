"""``pfsim run CONFIG --compare KEY=V1,V2 [--compare KEY2=...]``: every combination of the
values (a small grid), all with the same seed, run in parallel on the sweep machinery.

Each variant's result.json goes to ``OUT/<name>/`` where the name is ``KEY=VALUE`` (joined
with ``,`` for several keys) made safe by :func:`pfsim.sweeps.paths.safe_name`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfsim.config import Config, config_warnings, load_config
from pfsim.errors import ResourceError
from pfsim.footprint import check_resources
from pfsim.output import OutputDir
from pfsim.sweeps.execute import Engine, run_tasks
from pfsim.sweeps.paths import safe_name


@dataclass
class Variant:
    values: tuple[tuple[str, str], ...]
    """(key, value) per --compare, in the order given."""
    config: Config
    path: Path
    """Where its result.json goes."""
    result: dict[str, Any] | None = None
    wall_s: float = 0.0
    error: str = ""

    @property
    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.values)


def parse_compare(items: tuple[str, ...] | list[str]) -> list[tuple[str, list[str]]]:
    """``KEY=V1,V2,...`` strings → (key, values); a key or a value given twice is refused."""
    import click

    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise click.BadParameter(f"expected KEY=V1,V2,..., got {item!r}",
                                     param_hint="--compare")
        if any(key.strip() == known for known, _ in axes):
            raise click.BadParameter(f"{key.strip()} is given twice", param_hint="--compare")
        for index, value in enumerate(choices):
            if value in choices[:index]:  # two variants would share a directory and a name
                raise click.BadParameter(f"{key.strip()}: value {value} is given twice",
                                         param_hint="--compare")
        axes.append((key.strip(), choices))
    return axes


def plan_compare(config_path: Path, seed: int | None, overrides: list[str],
                 axes: list[tuple[str, list[str]]], out_dir: Path) -> list[Variant]:
    """Every variant, validated before anything runs or is written: its config, and the memory
    simulating it takes (:func:`pfsim.footprint.check_resources`, the error naming the
    variant), so that a variant too large for this machine stops the comparison before the
    others have run."""
    variants = []
    for combo in itertools.product(*([(key, v) for v in values] for key, values in axes)):
        config = load_config(config_path, overrides=[*overrides, *(f"{k}={v}" for k, v in combo)],
                             seed=seed)
        try:
            check_resources(config)
        except ResourceError as exc:
            label = ",".join(f"{k}={v}" for k, v in combo)
            raise ResourceError(f"--compare {label}: {exc}") from None
        name = safe_name(",".join(f"{k}={v}" for k, v in combo))
        variants.append(Variant(values=tuple(combo), config=config,
                                path=out_dir / name / "result.json"))
    return variants


def compare_warnings(variants: list[Variant]) -> list[str]:
    """:func:`pfsim.config.config_warnings` of every variant, each distinct line once."""
    seen: dict[str, None] = {}
    for variant in variants:
        for warning in config_warnings(variant.config):
            seen.setdefault(warning)
    return list(seen)


def run_compare(variants: list[Variant], workers: int | None = None) -> None:
    """Run the variants (in parallel on a local Dask cluster unless there is one variant or
    ``workers`` is 1) and write each result.json; fills ``result``, ``wall_s`` and ``error``.
    Every output directory is checked before anything runs; an interrupted comparison removes
    the directories it created for variants that have no result."""
    import json

    outs = [OutputDir(variant.path.parent) for variant in variants]
    try:
        for out in outs:
            out.prepare()

        def done(index: int, outcome: dict[str, Any]) -> None:
            variant = variants[index]
            variant.wall_s = outcome.get("wall_s") or 0.0
            if outcome["status"] != "ok":
                variant.error = outcome["error"]
                return
            outs[index].write("result.json", outcome["result"])
            variant.result = json.loads(outcome["result"])

        serial = len(variants) == 1 or workers == 1
        run_tasks([v.config for v in variants], Engine(serial=serial, workers=workers), done,
                  keys=[f"compare-{i}" for i in range(len(variants))])
    except BaseException:
        # the last prepared first: the first variant's OutputDir also created --out itself,
        # which is empty only once the other variants' directories are gone
        for out, variant in reversed(list(zip(outs, variants, strict=True))):
            if variant.result is None:
                out.discard()
        raise
