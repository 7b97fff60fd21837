"""``pfsim.sweep(...)``: run or resume a sweep from Python and get its point table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pfsim.sweeps.execute import Engine
from pfsim.sweeps.run import run_sweep


def sweep(source: str | Path | dict[str, Any], out: str | Path | None = None, *,
          overrides: list[str] | None = None, workers: int | None = None,
          scheduler: str | None = None, serial: bool = False, retry_failed: bool = False,
          point_timeout: float | None = None, progress: bool = False) -> pd.DataFrame:
    """Run (or resume) a sweep and return its point table, as ``sweep.parquet`` holds it.

    Args:
        source: a sweep file, or a dict shaped like one (its ``base`` is a path relative to the
            current directory, or the scenario itself as a dict).
        out: the output directory (default ``out/<sweep file stem>``, ``out/sweep`` for a dict).
        overrides: ``--set`` strings applied to every point.
        workers: processes of the local Dask cluster (default: all cores).
        scheduler: address of an existing Dask scheduler (``tcp://HOST:8786``) instead.
        serial: run the points one after another in this process, without Dask.
        retry_failed: run the points that failed in an earlier run again.
        point_timeout: seconds after which a point is stopped and recorded as failed.
        progress: show the progress bar (on a terminal) or one line per point (elsewhere).

    Returns:
        One row per point that is done or failed: the axes (one column per dotted key),
        ``replicate``, ``seed``, ``status``, ``error``, the headline metrics, ``wall_s``,
        ``cpu_s``, ``point``.  ``pfsim.sweeps.summarize(frame)`` gives mean and 95 % interval
        per group.

    Raises:
        pfsim.sweeps.SweepError: bad sweep file, config, argument or output directory.
    """
    reporter = None
    if progress:
        from pfsim.sweeps.show import ConsoleReporter

        reporter = ConsoleReporter()
    run = run_sweep(source, out=out, overrides=overrides,
                    engine=Engine(serial=serial, workers=workers, scheduler=scheduler),
                    retry_failed=retry_failed, point_timeout=point_timeout, reporter=reporter)
    assert run.frame is not None
    return run.frame
