"""The sweep's tables: one row per point (``sweep.parquet``, ``sweep.csv``) and one row per
group with mean and 95 % interval over its seeds (``summary.csv``).

Columns of the point table, in order: one per axis (named by its dotted key), ``replicate``,
``seed``, ``status`` (``ok`` or ``failed``), ``error``, the headline metrics
(:mod:`pfsim.sweeps.metrics`), ``wall_s``, ``cpu_s``, ``point`` (the point's directory name under
``points/``).  A failed point has empty metrics.  Rows follow the sweep file's order (first
axis slowest, replicates fastest), whatever order the points finished in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pfsim.sweeps.metrics import HEADLINE, NUMERIC, TIMING
from pfsim.sweeps.stats import mean_ci95
from pfsim.sweeps.store import atomic_write

LEAD = ("replicate", "seed", "status", "error")
"""The columns between the axes and the metrics; summarize() groups by the columns before
``replicate``."""


def points_frame(axis_keys: Sequence[str], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The point table from rows holding the axis values, the LEAD columns, the metrics (absent
    for a failed point) and ``point``."""
    columns = [*axis_keys, *LEAD, *(m.name for m in HEADLINE + TIMING), "point"]
    data: dict[str, Any] = {}
    for key in axis_keys:
        data[key] = _axis_column([row[key] for row in rows])
    data["replicate"] = pd.array([row["replicate"] for row in rows], dtype="int64")
    data["seed"] = pd.array([row["seed"] for row in rows], dtype="int64")
    for name in ("status", "error", "point"):
        data[name] = pd.array([row.get(name) or "" for row in rows], dtype="string")
    for metric in HEADLINE + TIMING:
        values = [row.get(metric.name) for row in rows]
        dtype = {"int": "Int64", "float": "Float64", "str": "string"}[metric.kind]
        data[metric.name] = pd.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=columns)


def _axis_column(values: list[Any]) -> Any:
    """An axis keeps its type when every value has the same simple type (str, int, float,
    bool); otherwise (mixed, arrays, tables) it holds each value's TOML text."""
    from pfsim.sweeps.literal import toml_literal

    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return pd.array(values, dtype="boolean")
    if kinds == {int}:
        return pd.array(values, dtype="Int64")
    if kinds <= {int, float} and kinds:
        return pd.array([float(v) for v in values], dtype="Float64")
    if kinds == {str}:
        return pd.array(values, dtype="string")
    return pd.array([toml_literal(v) for v in values], dtype="string")


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The axis columns of a point table: every column before ``replicate``."""
    return list(frame.columns[: list(frame.columns).index("replicate")])


def summarize(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group (combination of axis values, in the table's order): ``points``,
    ``failed``, ``n`` (points that ran), then ``<metric>_mean`` and ``<metric>_ci95`` (the
    half-width of the 95 % interval; empty below two points) for each metric."""
    axes = group_columns(frame)
    metrics = list(metrics or NUMERIC)
    columns = [*axes, "points", "failed", "n",
               *(f"{metric}_{part}" for metric in metrics for part in ("mean", "ci95"))]
    if frame.empty:
        return pd.DataFrame({column: frame[column] if column in axes else pd.Series(dtype="float64")
                             for column in columns}, columns=columns)
    rows = []
    keyed = frame.assign(_order=range(len(frame)))
    groups = keyed.groupby(axes, sort=False, dropna=False) if axes else [((), keyed)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = dict(zip(axes, values, strict=True))
        row.update(points=len(group), failed=int((group["status"] == "failed").sum()), n=len(ok))
        for metric in metrics:
            mean, ci = mean_ci95([float(v) for v in ok[metric].dropna()])
            row[f"{metric}_mean"], row[f"{metric}_ci95"] = mean, ci
        row["_order"] = int(group["_order"].min())
        rows.append(row)
    summary = pd.DataFrame(rows).sort_values("_order").drop(columns="_order")
    for axis in axes:
        summary[axis] = summary[axis].astype(frame[axis].dtype)
    return summary.reset_index(drop=True)


def write_tables(out: Path, frame: pd.DataFrame, summary: pd.DataFrame) -> None:
    """sweep.parquet, sweep.csv and summary.csv, each replaced atomically."""
    atomic_write(out / "sweep.parquet",
                 lambda p: frame.to_parquet(p, index=False, engine="pyarrow"), out)
    atomic_write(out / "sweep.csv", lambda p: frame.to_csv(p, index=False), out)
    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False), out)


def metrics_row(result_text: str | dict[str, Any]) -> dict[str, Any]:
    from pfsim.sweeps.metrics import headline

    result = json.loads(result_text) if isinstance(result_text, str) else result_text
    return headline(result)
