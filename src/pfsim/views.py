"""``pfsim report``, ``pfsim plot``, and what ``pfsim run --report / --format`` add after a run.

Every output is checked before anything is drawn (a bad ``--out`` suffix or directory ends
with one line and exit 2) and written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

from pathlib import Path

import click

from pfsim.errors import OutputError, clip

FORMATS = ("csv", "parquet")
IMAGE_SUFFIXES = (".png", ".svg")


def after_run(directory: Path, report: bool, fmt: str | None) -> list[Path]:
    """``--report`` and ``--format`` of ``pfsim run``: write them into the run's directory."""
    written = []
    if fmt is not None:
        written += write_tables(directory, fmt)
    if report:
        written.append(write_report(directory))
    return written


def write_tables(directory: Path, fmt: str) -> list[Path]:
    from pfsim.result_tables import tables
    from pfsim.result_tables import write_tables as write

    return write(tables(directory), directory, fmt)


def write_report(directory: Path) -> Path:
    from pfsim.html_report import write_report as write
    from pfsim.result_tables import find_runs

    return write(directory, find_runs(directory))


def report_command(directory: Path, fmt: str | None) -> None:
    """``pfsim report DIR``: report.html (and the tables with ``--format``) in DIR."""
    from pfsim.result_tables import locate_runs

    locate_runs(directory)  # refuse a directory without results before writing anything
    for path in after_run(directory, True, fmt):
        click.echo(f"wrote {path}")


def plot_command(directory: Path, figure: str, out: Path) -> None:
    """``pfsim plot DIR --figure NAME --out FILE``: one figure as PNG or SVG."""
    from pfsim.output import OutputDir

    suffix = out.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise OutputError(f"--out {clip(str(out), 120)}: the file name must end in .png or "
                          ".svg (the image format)")
    target = OutputDir(out.parent if str(out.parent) else Path("."), flag="--out").prepare()
    from pfsim.plot import FIGURES, render
    from pfsim.result_tables import find_runs

    if figure == "sweep":
        from pfsim.sweep_report import is_sweep, read_summary, sweep_figure

        if not is_sweep(directory):
            raise OutputError(f"{clip(str(directory), 120)}: --figure sweep needs a directory "
                              "written by pfsim sweep (summary.csv and points/)")
        data = render(sweep_figure(read_summary(directory)), suffix[1:])
    else:
        data = render(FIGURES[figure](find_runs(directory)), suffix[1:])
    path = target.write(out.name, data)
    click.echo(f"wrote {path}")
