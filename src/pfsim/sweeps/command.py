"""``pfsim sweep FILE``: run or resume a sweep, print its summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from pfsim.sweeps.execute import Engine, silence_dask_logs
from pfsim.sweeps.run import SweepInterrupted, run_sweep
from pfsim.sweeps.show import ConsoleReporter, print_header, print_interrupted, print_summary


def sweep_command(source: Path, out: Path | None, overrides: list[str], workers: int | None,
                  scheduler: str | None, serial: bool, retry_failed: bool,
                  point_timeout: float | None, quiet: bool) -> None:
    """Exit status: 0 when every point is done, 1 when some failed, 2 for bad input, 130 when
    interrupted (the finished points are kept)."""
    if scheduler and (workers is not None or serial):
        raise click.UsageError("--scheduler runs on an existing cluster: it takes neither "
                               "--workers nor --serial")
    if serial and workers is not None:
        raise click.UsageError("--serial runs in this process: it takes no --workers")
    started = time.monotonic()
    reporter = _HeaderFirst(quiet)
    try:
        run = run_sweep(source, out=out, overrides=overrides,
                        engine=Engine(serial=serial, workers=workers, scheduler=scheduler),
                        retry_failed=retry_failed, point_timeout=point_timeout, reporter=reporter)
    except SweepInterrupted as stop:
        print_interrupted(stop.run, stop.terminated)
        silence_dask_logs()  # the process ends now: what Dask's loops log as it exits is noise
        sys.exit(143 if stop.terminated else 130)
    print_summary(run, time.monotonic() - started)
    if run.failed or run.failed_before:
        sys.exit(1)


class _HeaderFirst(ConsoleReporter):
    """Prints the ARG line once the points are known, before the first one runs."""

    def start(self, run):  # type: ignore[no-untyped-def]
        print_header(run)
        super().start(run)
