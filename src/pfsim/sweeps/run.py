"""Run a sweep: expand its points, skip the finished ones, run the rest, write the tables.

Resuming is the default: a point whose directory exists is done and is not run again; a point
that failed is reported with its recorded error and is run again only with ``retry_failed``.
The tables are rebuilt from the point directories at the end of every run, including one that
is interrupted, so they always describe exactly the points on disk.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pfsim.errors import Terminated
from pfsim.sweeps.execute import Engine, run_tasks
from pfsim.sweeps.spec import Point, Sweep, SweepError, expand, load_sweep
from pfsim.sweeps.store import Store

if TYPE_CHECKING:
    import pandas as pd


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``run`` holds what was done (the tables are written)."""

    def __init__(self, run: SweepRun, terminated: bool = False) -> None:
        super().__init__()
        self.run = run
        self.terminated = terminated


class Reporter(Protocol):
    def start(self, run: SweepRun) -> None: ...
    def point(self, point: Point, outcome: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


@dataclass
class SweepRun:
    sweep: Sweep
    points: list[Point]
    out: Path
    engine: Engine
    to_run: list[Point] = field(default_factory=list)
    skipped: int = 0
    """Points already done by an earlier run."""
    failed_before: list[tuple[Point, str]] = field(default_factory=list)
    """Points that failed in an earlier run and were not retried, with their errors."""
    failed: list[tuple[Point, str]] = field(default_factory=list)
    """Points that failed in this run."""
    ran: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    frame: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None

    @property
    def base_name(self) -> str:
        return str(self.sweep.base) if isinstance(self.sweep.base, Path) else "<base table>"


def run_sweep(source: str | Path | dict[str, Any], *, out: str | Path | None = None,
              overrides: list[str] | None = None, engine: Engine | None = None,
              retry_failed: bool = False, point_timeout: float | None = None,
              reporter: Reporter | None = None) -> SweepRun:
    """Run (or resume) the sweep ``source`` into ``out`` (default ``out/<sweep file stem>``).

    Raises:
        SweepError: the sweep file, a point's config, a flag or the output directory is wrong
            (nothing has run or been written then; an output directory the sweep created
            is removed again).
    """
    if point_timeout is not None and not point_timeout > 0:
        raise SweepError(f"--point-timeout: expected a positive number of seconds, "
                         f"got {point_timeout}")
    engine = engine or Engine()
    if engine.workers is not None and engine.workers < 1:
        raise SweepError(f"--workers: expected at least 1, got {engine.workers}")
    # pandas (the tables, at the end) and Dask (to start the cluster) are imported while the
    # sweep file is checked and the points run, not before: 0.2 s each off the critical path
    _prefetch("pfsim.sweeps.table", *(() if engine.serial else ("dask.distributed",)))
    sweep = load_sweep(source, overrides)
    points = expand(sweep)
    run = SweepRun(sweep=sweep, points=points, engine=engine,
                   out=Path(out) if out is not None else Path("out") / sweep.name)
    store = Store(run.out)
    store.prepare()
    for point in points:
        if store.done(point.key):
            run.skipped += 1
            continue
        record = store.failure(point.key)
        if record is not None and not retry_failed:
            run.failed_before.append((point, record.get("error", "")))
        else:
            run.to_run.append(point)

    def done(index: int, outcome: dict[str, Any]) -> None:
        point = run.to_run[index]
        if outcome["status"] == "ok":
            store.write_done(point, outcome, run.base_name, sweep.overrides)
        else:
            store.write_failed(point, outcome, run.base_name, sweep.overrides)
            run.failed.append((point, outcome["error"]))
        run.ran += 1
        if reporter is not None:
            reporter.point(point, outcome)

    if reporter is not None:
        reporter.start(run)
    nothing_ran = False
    try:
        run.timings = run_tasks([p.config for p in run.to_run], engine, done, point_timeout,
                                keys=[p.key for p in run.to_run])
    except KeyboardInterrupt as stop:
        interrupted: KeyboardInterrupt | None = stop
    except BaseException:
        nothing_ran = run.ran == 0  # e.g. the --scheduler cannot be reached
        raise
    else:
        interrupted = None
    finally:
        if reporter is not None:
            reporter.close()
        if nothing_ran:  # no tables of nothing; a fresh --out is removed
            store.discard()
        else:
            from pfsim.sweeps.table import summarize, write_tables

            run.frame = build_frame(sweep, points, store)
            run.summary = summarize(run.frame)
            write_tables(run.out, run.frame, run.summary)
    if interrupted is not None:
        raise SweepInterrupted(run, terminated=isinstance(interrupted, Terminated))
    return run


def build_frame(sweep: Sweep, points: list[Point], store: Store) -> pd.DataFrame:
    """The point table of every point that is done or failed, from the output directory."""
    from pfsim.sweeps.table import metrics_row, points_frame

    rows = []
    for point in points:
        row: dict[str, Any] = {**point.axes, "replicate": point.replicate, "seed": point.seed,
                               "point": point.key}
        if store.done(point.key):
            result, meta = store.read(point.key)
            row.update(metrics_row(result), status="ok", error="", wall_s=meta.get("wall_s"),
                       cpu_s=meta.get("cpu_s"))
        else:
            record = store.failure(point.key)
            if record is None:
                continue  # not run yet (an interrupted sweep)
            row.update(status="failed", error=record.get("error", ""), wall_s=record.get("wall_s"))
        rows.append(row)
    return points_frame(sweep.axis_keys, rows)


def _prefetch(*modules: str) -> None:
    """Import ``modules`` in a background thread (an import in progress makes a later import
    of the same module wait for it, so nothing is used half-imported)."""
    def load() -> None:
        for name in modules:
            importlib.import_module(name)

    threading.Thread(target=load, name="pfsim-prefetch", daemon=True).start()
