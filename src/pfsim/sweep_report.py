"""A ``pfsim sweep`` directory in ``pfsim report`` and ``pfsim plot``.

A sweep directory (docs/sweeps.md) holds ``summary.csv`` (a row per group: the axis values,
``points``, ``failed``, ``n``, then ``<metric>_mean`` and ``<metric>_ci95``) and
``points/<digest>-<seed>/`` with each point's result.json and point.json.  The report shows the
summary (mean ± 95 % confidence interval per group) and the ``sweep`` figure: one panel per
headline metric, the first axis along x, one series per combination of the other axes, the
interval as error bars.  The per-run figures and tables show one run per group, its lowest
replicate, labelled by its axis values.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfsim.errors import OutputError, clip

HEADLINE = ("work", "compute_units", "accesses", "busy_pct", "stalled_pct", "steal_pct",
            "maj_flt", "swap_ins", "not_present")
"""The metrics of the ``sweep`` figure and the report's summary table, where the sweep's
summary has them and they are not zero in every group."""

GROUP_COLUMNS = ("points", "failed", "n")
"""The columns of summary.csv between the axes and the metrics."""


@dataclass
class Summary:
    """summary.csv: the axis keys, then one row per group as text."""

    axes: list[str]
    rows: list[dict[str, str]]

    def metrics(self) -> list[str]:
        """The headline metrics present in the summary and not zero in every group."""
        out = []
        for metric in HEADLINE:
            column = f"{metric}_mean"
            if self.rows and column in self.rows[0] and any(
                    _float(row[column]) not in (0.0, None) for row in self.rows):
                out.append(metric)
        return out

    def label(self, row: dict[str, str]) -> str:
        return ", ".join(row[key] for key in self.axes)


def is_sweep(path: Path) -> bool:
    """Whether ``path`` is a directory written by ``pfsim sweep``."""
    return (path / "points").is_dir() and (path / "summary.csv").is_file()


def read_summary(path: Path) -> Summary:
    """The sweep summary of directory ``path``.

    Raises:
        OutputError: summary.csv is unreadable or not a sweep summary.
    """
    file = path / "summary.csv"
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OutputError(f"{clip(str(file), 120)}: not a readable sweep summary ({exc})") from None
    if "points" not in header:
        raise OutputError(f"{clip(str(file), 120)}: not a pfsim sweep summary (no 'points' "
                          "column)")
    return Summary(axes=header[:header.index("points")], rows=rows)


def sweep_runs(path: Path) -> dict[str, Path]:
    """One result.json per group of the sweep in ``path``, its lowest replicate: {label:
    file}, in the order of summary.csv; the label is the group's axis values as the tables
    write them (sweep.csv names each point's directory)."""
    summary = read_summary(path)
    file = path / "sweep.csv"
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            points = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OutputError(f"{clip(str(file), 120)}: not a readable sweep table ({exc})") from None
    chosen: dict[str, tuple[int, Path]] = {}
    for point in points:
        try:
            label = summary.label(point)
            replicate = int(point["replicate"])
            result = path / "points" / point["point"] / "result.json"
        except (KeyError, ValueError, TypeError):
            raise OutputError(f"{clip(str(file), 120)}: not a pfsim sweep table") from None
        if point.get("status") == "ok" and result.is_file() and (
                label not in chosen or replicate < chosen[label][0]):
            chosen[label] = (replicate, result)
    order = [summary.label(row) for row in summary.rows]
    ranked = sorted(chosen, key=lambda label: (order.index(label) if label in order
                                               else len(order), label))
    if not ranked:
        raise OutputError(f"{clip(str(path), 120)}: a sweep directory without finished points")
    return {label: chosen[label][1] for label in ranked}


def summary_html(summary: Summary) -> str:
    """The summary as an HTML table: axis values, points, failed, then mean ± CI."""
    import html

    from pfsim.sweeps.show import mean_ci

    metrics = summary.metrics()
    head = [*summary.axes, *GROUP_COLUMNS, *metrics]
    cells = []
    for row in summary.rows:
        values = [f"<td>{html.escape(row[key])}</td>" for key in summary.axes]
        values += [f'<td class="n">{html.escape(row[key])}</td>' for key in GROUP_COLUMNS]
        for metric in metrics:
            mean, ci = _float(row[f"{metric}_mean"]), _float(row[f"{metric}_ci95"])
            text = mean_ci(metric, mean, ci)
            values.append(f'<td class="n">{html.escape(text)}</td>')
        cells.append("<tr>" + "".join(values) + "</tr>")
    header = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    return ('<table id="table-sweep"><caption>every group of the sweep: mean ± 95 % confidence '
            "interval over its seeds (summary.csv)</caption>"
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(cells)}</tbody></table>")


def sweep_figure(summary: Summary) -> Any:
    """One panel per headline metric: the first axis along x, a series per combination of
    the other axes (SVG id ``series-sweep-<metric>-<combination>``), 95 % intervals as
    error bars."""
    import matplotlib.pyplot as plt

    from pfsim.plot import _gid, _no_data

    metrics = summary.metrics()
    columns = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows),
                             layout="constrained", squeeze=False)
    flat = [ax for line in axes for ax in line]
    if not summary.axes or not metrics:
        _no_data(flat[0], "no metric varies in this sweep" if summary.axes else "no axes")
        for ax in flat[1:]:
            ax.set_visible(False)
        return fig
    first, others = summary.axes[0], summary.axes[1:]
    xs = list(dict.fromkeys(row[first] for row in summary.rows))
    series: dict[str, list[dict[str, str]]] = {}
    for row in summary.rows:
        series.setdefault(", ".join(row[key] for key in others) or "all", []).append(row)
    width = 0.8 / max(1, len(series))
    for ax, metric in zip(flat, metrics, strict=False):
        for k, (name, members) in enumerate(series.items()):
            points = [(xs.index(row[first]) + (k - (len(series) - 1) / 2) * width,
                       _float(row[f"{metric}_mean"]), _float(row[f"{metric}_ci95"]))
                      for row in members]
            points = [p for p in points if p[1] is not None]
            if not points:
                continue
            container = ax.errorbar([p[0] for p in points], [p[1] for p in points],
                                    yerr=[p[2] or 0.0 for p in points], fmt="o", capsize=3,
                                    label=name if others else None)
            container.lines[0].set_gid(_gid("sweep", metric, name))
        ax.set_title(metric, fontsize="medium")
        ax.set_xticks(range(len(xs)), xs, fontsize="small")
        ax.set_xlabel(first.rsplit(".", 1)[-1], fontsize="small")
        ax.margins(x=0.15)
        top = max((mean + (ci or 0.0) for row in summary.rows
                   if (mean := _float(row[f"{metric}_mean"])) is not None
                   for ci in [_float(row[f"{metric}_ci95"])]), default=0.0)
        ax.set_ylim(0, top * 1.12 or 1.0)
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    if others:
        flat[0].legend(fontsize="x-small", title=", ".join(k.rsplit(".", 1)[-1] for k in others),
                       title_fontsize="x-small")
    fig.suptitle("sweep: mean and 95 % interval per group")
    return fig


def _float(text: str | None) -> float | None:
    """A summary cell as a number; None for an empty or NaN cell."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return None if value is None or math.isnan(value) else value
