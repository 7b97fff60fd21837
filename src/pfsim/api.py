"""Python API for scripts and notebooks: run a config, get a result with result.json's names."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pfsim.config import Config, load_config
from pfsim.simulation import Simulation


class RunResult(Mapping[str, Any]):
    """The result of one run: a read-only mapping with exactly the structure of result.json.

    Shortcuts for the single-VM case: ``result.processes``, ``result.tasks``, ``result.vcpus``
    and ``result.outcome``.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def vm(self) -> dict[str, Any]:
        return self._data["vms"]["vm0"]

    @property
    def processes(self) -> dict[str, Any]:
        return self.vm["processes"]

    @property
    def tasks(self) -> dict[str, Any]:
        return self.vm["tasks"]

    @property
    def vcpus(self) -> list[dict[str, Any]]:
        return self.vm["vcpus"]

    @property
    def outcome(self) -> str:
        return self.vm["outcome"]

    def to_json(self) -> str:
        """The canonical result.json text (sorted keys, stable across runs)."""
        return json.dumps(self._data, indent=2, sort_keys=True) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())


def run(config: Config | str | Path | dict[str, Any], overrides: list[str] | None = None,
        seed: int | None = None, progress: Callable[[int], None] | None = None) -> RunResult:
    """Run a scenario and return its result.

    Args:
        config: a Config, a TOML path, or a dict shaped like the TOML.
        overrides: ``"dotted.key=value"`` strings applied before validation.
        seed: replaces ``sim.seed``.
        progress: called now and then with the simulated time (ns).
    """
    if not isinstance(config, Config) or overrides or seed is not None:
        source = config.model_dump(mode="json") if isinstance(config, Config) else config
        config = load_config(source, overrides=overrides, seed=seed)
    return RunResult(Simulation(config).run(progress=progress))
