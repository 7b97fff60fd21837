"""Python API for scripts and notebooks: run a config, get a result with result.json's names."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pfsim.config import Config, load_config
from pfsim.errors import ResourceError
from pfsim.simulation import Simulation

if TYPE_CHECKING:
    from pfsim.tracing import TraceOptions


class FrozenList(tuple):  # type: ignore[type-arg]
    """A read-only list of a result: a tuple that also compares equal to the same list."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


def freeze(value: Any) -> Any:
    """``value`` with every dict made a read-only mapping and every list a FrozenList."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        if not any(isinstance(item, (dict, list)) for item in value):
            return FrozenList(value)  # a column of numbers (samples): nothing to freeze inside
        return FrozenList(freeze(item) for item in value)
    return value


class RunResult(Mapping[str, Any]):
    """The result of one run: a read-only mapping with exactly the structure of result.json.

    Read-only at every depth (``result["vms"]["vm0"]["processes"]`` cannot be changed either);
    :meth:`to_dict` gives a plain, mutable copy.  Shortcuts for the single-VM case:
    ``result.processes``, ``result.tasks``, ``result.vcpus`` and ``result.outcome``.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self._frozen = freeze(data)
        self.trace_path: Path | None = None
        """The trace file written by ``run(..., trace=...)`` (not part of result.json)."""
        self.trace_warning: str | None = None
        """Why the trace is incomplete (records dropped at the limit), or None."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunResult, (self._data,))

    def __getitem__(self, key: str) -> Any:
        return self._frozen[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def vm(self) -> Mapping[str, Any]:
        return self._frozen["vms"]["vm0"]

    @property
    def processes(self) -> Mapping[str, Any]:
        return self.vm["processes"]

    @property
    def tasks(self) -> Mapping[str, Any]:
        return self.vm["tasks"]

    @property
    def vcpus(self) -> Sequence[Mapping[str, Any]]:
        return self.vm["vcpus"]

    @property
    def outcome(self) -> str:
        return self.vm["outcome"]

    def to_json(self) -> str:
        """The canonical result.json text (sorted keys, stable across runs; the columns of
        ``samples`` one per line)."""
        return result_json(self._data)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())


def result_json(data: dict[str, Any]) -> str:
    """``data`` as canonical JSON: sorted keys, indented, but every list of integers under
    ``samples`` on one line (a time series of thousands of values stays readable and small)."""
    samples = data.get("samples")
    if not isinstance(samples, dict):
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    columns: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            columns.append(json.dumps(value, separators=(",", ":")))
            return f"\x00{len(columns) - 1}\x00"
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps({**data, "samples": mark(samples)}, indent=2, sort_keys=True) + "\n"
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: columns[int(m.group(1))], text)


def run(config: Config | str | Path | dict[str, Any], overrides: list[str] | None = None,
        seed: int | None = None, progress: Callable[[int], None] | None = None,
        trace: str | Path | TraceOptions | None = None) -> RunResult:
    """Run a scenario and return its result.

    Args:
        config: a Config, a TOML path, or a dict shaped like the TOML.
        overrides: ``"dotted.key=value"`` strings applied before validation.
        seed: replaces ``sim.seed``.
        progress: called now and then with the simulated time (ns).
        trace: also write a timeline of the run there (Perfetto protobuf, or Chrome JSON for
            a ``.json`` name; :func:`pfsim.tracing.trace_options` for the other choices); the
            result is the same as without it.

    Raises:
        pfsim.errors.ConfigError: the config is refused (ConfigErrors: several problems).
        pfsim.errors.ResourceError: simulating it needs more memory than is available (by
            the estimate made before the run, or because memory ran out during it).
        pfsim.errors.InvariantViolation: a bug in pfsim (please report it).
    """
    if not isinstance(config, Config) or overrides or seed is not None:
        source = config.model_dump(mode="json") if isinstance(config, Config) else config
        config = load_config(source, overrides=overrides, seed=seed)
    if trace is not None:  # the trace writer loads only when asked for
        from pfsim.tracing import TraceOptions, trace_options

        if not isinstance(trace, TraceOptions):
            trace = trace_options(Path(trace), None, None, None)
    try:
        recorder = trace.recorder() if trace is not None else None
        simulation = Simulation(config) if recorder is None else Simulation(config, recorder)
        result = RunResult(simulation.run(progress=progress))
        if trace is not None and recorder is not None:
            from pfsim.tracing import names_of, write_trace

            names = names_of(simulation, result["sim_time_ns"])
            result.trace_path, result.trace_warning = write_trace(trace, recorder, names)
        return result
    except MemoryError:
        raise ResourceError("out of memory while simulating: this scenario needs more memory "
                            "than this machine has free; make it smaller (guest.memory, vseg "
                            "sizes, thread counts) or close other programs") from None
