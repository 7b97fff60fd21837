"""What ``pfsim sweep`` prints: a progress bar over points, the summary table, the failures."""

from __future__ import annotations

import math
import time
from typing import Any

import click
from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pfsim.sweeps.run import SweepRun
from pfsim.sweeps.spec import Point


class ConsoleReporter:
    """A progress bar over the points on a terminal; elsewhere (a log file, a pipe) one line per
    finished point on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: Any = None
        self.total = 0
        self.count = 0
        self.failed = 0
        self.started = time.monotonic()

    def start(self, run: SweepRun) -> None:
        self.total = len(run.to_run)
        if self.quiet or not self.total or not self.console.is_terminal:
            return
        self.bar = Progress(TextColumn("points"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
                            TextColumn("eta"), TimeRemainingColumn(), console=self.console,
                            transient=True)
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=self.total, failed="")

    def point(self, point: Point, outcome: dict[str, Any]) -> None:
        self.count += 1
        self.failed += outcome["status"] != "ok"
        if self.bar is not None:
            self.bar.update(self.task, advance=1,
                            failed=f"[red]{self.failed} failed[/red]" if self.failed else "")
        elif not self.quiet:
            state = "ok" if outcome["status"] == "ok" else f"FAILED: {outcome['error']}"
            wall = f" {outcome['wall_s']:.2f}s" if outcome.get("wall_s") is not None else ""
            click.echo(f"[{self.count}/{self.total}] {point.label} seed={point.seed}{wall} {state}",
                       err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def print_header(run: SweepRun) -> None:
    sweep = run.sweep
    seeds = f"{sweep.replicates} seed{'s' * (sweep.replicates != 1)}"
    groups = f"{sweep.groups} group{'s' * (sweep.groups != 1)}"
    where = run.engine.describe(len(run.to_run)) if run.to_run else "nothing"
    click.echo(f"ARG sweep {sweep.where}  base {run.base_name}  seed {sweep.seed}  points "
               f"{len(run.points)} ({groups} x {seeds})  done {run.skipped}  failed before "
               f"{len(run.failed_before)}  to run {len(run.to_run)}  on {where}")


def print_summary(run: SweepRun, wall_s: float, console: Console | None = None) -> None:
    """The summary table (mean ± 95 % interval per group), the failures, the FINAL line."""
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=1000)  # a file or a pipe: never cut
    summary = run.summary
    assert summary is not None and run.frame is not None
    table = summary_table(run, stacked=False)
    wide = Measurement.get(console, console.options.update(max_width=100_000), table).maximum
    if wide > console.width:  # a narrow terminal: "± ci" on a line of its own
        table = summary_table(run, stacked=True)
    console.print(table)
    for point, error in run.failed_before:
        click.echo(f"FAILED (earlier run; --retry-failed runs it again) {point.label} "
                   f"seed={point.seed}: {error}")
    for point, error in run.failed:
        click.echo(f"FAILED {point.label} seed={point.seed}: {error}")
    click.echo(f"FINAL sweep points={len(run.points)} ran={run.ran} skipped={run.skipped} "
               f"failed={len(run.failed) + len(run.failed_before)} wall_s={wall_s:.2f} "
               f"table={run.out / 'sweep.parquet'}")


def summary_table(run: SweepRun, stacked: bool) -> Table:
    """One row per group: the axis values, the points that ran, mean ± 95 % CI per metric
    (``stacked``: the interval on a second line of the cell)."""
    assert run.summary is not None
    axes = list(run.sweep.axis_keys)
    table = Table(title=f"{run.sweep.name}: mean ± 95% CI over {run.sweep.replicates} seed"
                        f"{'s' * (run.sweep.replicates != 1)} per group", title_justify="left")
    for key in axes:  # cells fold onto more lines rather than being cut
        table.add_column(_short(key, axes), overflow="fold")
    table.add_column("n", justify="right")
    for metric in run.sweep.metrics:
        table.add_column(metric, justify="right", overflow="fold")
    for _index, row in run.summary.iterrows():
        ran, points = int(row["n"]), int(row["points"])
        n = f"{ran}" if ran == points else f"{ran}/{points}"
        cells = (mean_ci(metric, row[f"{metric}_mean"], row[f"{metric}_ci95"])
                 for metric in run.sweep.metrics)
        table.add_row(*(_value(row[key]) for key in axes), n,
                      *(cell.replace(" ± ", "\n± ") if stacked else cell for cell in cells))
    return table


def _short(key: str, keys: list[str]) -> str:
    """An axis column's title: the key's last part, unless another axis ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def _missing(value: Any) -> bool:
    """None, NaN or pandas' missing value."""
    try:
        return value is None or bool(value != value)
    except TypeError:  # pandas.NA compares to nothing
        return True


def _value(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def mean_ci(metric: str, mean: Any, ci: Any) -> str:
    """``mean ± ci`` of ``metric`` as the sweep tables show it ("-" when there is no mean;
    the interval left out when there is none or it is 0)."""
    if _missing(mean):
        return "-"
    spread = not _missing(ci) and ci > 0
    if metric in ("wall_s", "cpu_s"):
        decimals = 2
    elif metric.endswith("_pct"):
        decimals = 1
    else:  # a count: whole numbers unless the mean is small and varies
        decimals = 0 if abs(mean) >= 100 or not spread and mean == round(mean) else 1
    text = f"{mean:,.{decimals}f}"
    return text + f" ± {ci:,.{decimals}f}" if spread else text


def print_interrupted(run: SweepRun, terminated: bool = False) -> None:
    done = len(run.frame) if run.frame is not None else run.skipped
    how = "terminated" if terminated else "interrupted"
    click.echo(f"pfsim: {how} with {done} of {len(run.points)} points done or failed; run "
               f"the same command again to resume", err=True)
