"""Results as tables: result.json of one run or of a ``--compare`` directory as pandas
DataFrames (``pfsim.tables(DIR)``), and as CSV or Parquet files (``pfsim run --format``,
``pfsim report --format``).

Four tables, each with a ``run`` column naming the run (the variant's directory name for a
``--compare`` directory, the directory's own name for one run):

- ``tasks``: a row per task, the counters of ``vms.vm0.tasks`` (``task`` is its name);
- ``processes``: a row per process, the counters of ``vms.vm0.processes`` (``signal`` as text);
- ``vcpus``: a row per vCPU, the times of ``vms.vm0.vcpus``;
- ``intervals``: the time series of ``samples`` in long form, a row per (sample, series):
  ``t_ns`` (end of the interval), ``start_ns``, ``kind`` (task, vcpu, host, guest, async_pf),
  ``name`` (task name, vCPU number, or empty), ``metric``, ``value`` (the change over the
  interval for a counter; the level at ``t_ns`` for ``free_frames`` and
  ``swap_busy_slots``) and ``total`` (the cumulative count, or the level).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pfsim.errors import OutputError, clip
from pfsim.output import _umask

LEVELS = frozenset({"free_frames", "guest_free_frames", "swap_busy_slots"})
"""Series that are levels at the sample time, not counters."""

TABLES = ("tasks", "processes", "vcpus", "intervals")


@dataclass
class Tables:
    """The four tables of one or more runs (see the module docstring)."""

    tasks: pd.DataFrame
    processes: pd.DataFrame
    vcpus: pd.DataFrame
    intervals: pd.DataFrame

    def items(self) -> Iterator[tuple[str, pd.DataFrame]]:
        for name in TABLES:
            yield name, getattr(self, name)


def locate_runs(path: str | Path) -> dict[str, Path]:
    """The result.json files under ``path``: {label: file}.

    ``path`` is a result.json, a run directory holding one, a ``--compare`` directory whose
    subdirectories hold one each, or a ``pfsim sweep`` directory (one run per group, its lowest
    replicate, labelled by its axis values: :func:`pfsim.sweep_report.sweep_runs`).  Labels of a comparison are its directory names, in the
    order of ``--compare`` (``compare.json``) or else sorted; ``KEY=`` is left out when every
    run varies the same single key (``hypervisor.async_pf=kvm`` is labelled ``kvm``).  A
    directory that a plain run and comparisons were all written to holds what was written
    last: the plain run's result.json if it is newer than compare.json, else the variants
    compare.json lists (not those of earlier comparisons).

    Raises:
        OutputError: nothing to read there.
    """
    path = Path(path)
    if path.is_file():
        return {path.resolve().parent.name or ".": path}
    compared = _compared_runs(path)
    if (path / "result.json").is_file() and (
            compared is None or _mtime(path / "result.json") > _mtime(path / "compare.json")):
        return {path.resolve().name or ".": path / "result.json"}
    if not path.is_dir():
        raise OutputError(f"{clip(str(path), 120)}: no such result directory")
    from pfsim.sweep_report import is_sweep, sweep_runs

    if is_sweep(path):
        return sweep_runs(path)
    found = compared or {p.parent.name: p for p in sorted(path.glob("*/result.json"))
                         if p.is_file()}
    if not found:
        raise OutputError(f"{clip(str(path), 120)}: no result.json in it or in its "
                          "subdirectories (give a directory written by pfsim run)")
    keys = {name.partition("=")[0] for name in found}
    if len(keys) == 1 and all("=" in name and "," not in name for name in found):
        return {name.partition("=")[2]: file for name, file in found.items()}
    return found


def _compared_runs(path: Path) -> dict[str, Path] | None:
    """The variants of the last ``--compare`` written to ``path`` (``compare.json``), those
    whose result.json exists, in its order; None without one.  Subdirectories of earlier
    comparisons into the same directory are not among them."""
    try:
        order = json.loads((path / "compare.json").read_text(encoding="utf-8"))["runs"]
        files = [path / name / "result.json" for name in order
                 if isinstance(name, str) and name not in ("", ".", "..") and "/" not in name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = {file.parent.name: file for file in files if file.is_file()}
    return found or None


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def find_runs(path: str | Path) -> dict[str, dict[str, Any]]:
    """The results under ``path`` (see :func:`locate_runs`): {label: result.json as a dict}.

    Raises:
        OutputError: nothing to read there, or a result.json that does not parse.
    """
    return {label: _read(file) for label, file in locate_runs(path).items()}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputError(f"{clip(str(path), 120)}: not a readable result.json ({exc})") from None
    if not isinstance(data, dict) or "vms" not in data:
        raise OutputError(f"{clip(str(path), 120)}: not a pfsim result.json (no 'vms')")
    missing = _missing_key(data)
    if missing is not None:
        raise OutputError(f"{clip(str(path), 120)}: not a pfsim result.json ({missing})")
    return data


_SHAPE = {"sim_time_ns": int, "host": dict, "vms": dict}
_VM_SHAPE = {"processes": dict, "tasks": dict, "vcpus": list, "async_pf": dict, "latency": dict,
             "memory": dict}
"""What the tables, figures and report read of every result.json: a file without it (written
by hand, cut down) is refused with one line instead of failing while a figure is drawn."""


_KIND = {int: "a number", dict: "a table", list: "a list"}


def _missing_key(data: dict[str, Any]) -> str | None:
    for key, kind in _SHAPE.items():
        if not isinstance(data.get(key), kind):
            return f"{key!r} missing or not {_KIND[kind]}"
    vm = data["vms"].get("vm0")
    if not isinstance(vm, dict):
        return "'vms.vm0' missing or not a table"
    for key, kind in _VM_SHAPE.items():
        if not isinstance(vm.get(key), kind):
            return f"'vms.vm0.{key}' missing or not {_KIND[kind]}"
    return None


def _vm(result: dict[str, Any]) -> dict[str, Any]:
    return result["vms"]["vm0"]


def task_rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"run": label, "task": name, **task} for name, task in _vm(result)["tasks"].items()]


def process_rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, process in _vm(result)["processes"].items():
        row = {"run": label, "process": name, **process}
        row["signal"] = json.dumps(row["signal"], sort_keys=True) if row.get("signal") else ""
        rows.append({k: v for k, v in row.items() if not isinstance(v, (dict, list))})
    return rows


def vcpu_rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"run": label, **vcpu} for vcpu in _vm(result)["vcpus"]]


def interval_rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    samples = result.get("samples")
    if not samples or not samples["t_ns"]:
        return []
    t = samples["t_ns"]
    series: list[tuple[str, str, str, list[int]]] = []
    for name, columns in samples["tasks"].items():
        series += [("task", name, metric, column) for metric, column in columns.items()]
    for index, columns in enumerate(samples["vcpus"]):
        series += [("vcpu", str(index), metric, column) for metric, column in columns.items()]
    series.append(("guest", "", "free_frames", samples["guest_free_frames"]))
    for kind in ("host", "async_pf"):
        series += [(kind, "", metric, column) for metric, column in samples.get(kind, {}).items()]
    rows = []
    for kind, name, metric, column in series:
        level = metric in LEVELS
        before = 0
        for i, total in enumerate(column):
            rows.append({"run": label, "t_ns": t[i], "start_ns": t[i - 1] if i else 0,
                         "kind": kind, "name": name, "metric": metric,
                         "value": total if level else total - before, "total": total})
            before = total
    return rows


def tables(path: str | Path | None = None, *, runs: dict[str, dict[str, Any]] | None = None
           ) -> Tables:
    """The tables of the run(s) at ``path`` (see :func:`find_runs`), or of ``runs``
    ({label: result dict}, e.g. ``{"a": pfsim.run(...).to_dict()}``)."""
    if runs is None:
        if path is None:
            raise TypeError("give a path or runs")
        runs = find_runs(path)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for label, result in runs.items():
        parts["tasks"] += task_rows(label, result)
        parts["processes"] += process_rows(label, result)
        parts["vcpus"] += vcpu_rows(label, result)
        parts["intervals"] += interval_rows(label, result)
    columns = {"intervals": ["run", "t_ns", "start_ns", "kind", "name", "metric", "value",
                             "total"]}
    return Tables(**{name: pd.DataFrame(rows, columns=columns.get(name))
                     for name, rows in parts.items()})


def write_tables(found: Tables, directory: Path, fmt: str) -> list[Path]:
    """Write each table as ``<name>.csv`` or ``<name>.parquet`` in ``directory``, atomically
    (a temporary file renamed into place); returns the paths."""
    import os
    import tempfile

    paths = []
    for name, frame in found.items():
        target = directory / f"{name}.{fmt}"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"cannot write {clip(str(target), 120)} "
                              f"({exc.strerror or exc})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(target)
    return paths
