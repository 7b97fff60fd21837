"""What runs one point, in a Dask worker process or in this one: the simulation, timed, with
every failure turned into a one-line error instead of an exception.

The result travels back as result.json's canonical text, so the file the client writes is
byte-identical to what ``pfsim run`` writes for the same config and seed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from pfsim.config import Config, load_config
from pfsim.errors import PfsimError
from pfsim.units import NS_PER_MS, format_time

WARM_DURATION_NS = NS_PER_MS
"""A warm-up run lasts this long in simulated time: enough to call every compiled function the
scenario's engine starts with, so that numba compiles (or loads from its cache) the code."""


WARM_LOCK_WAIT_S = 600.0
"""Longest wait for another process's warm-up (a compile takes about a minute)."""


class PointTimeout(Exception):  # noqa: N818 (a timeout, not an error of the model)
    """Raised from the progress callback when a point exceeds --point-timeout."""

    def __init__(self, now_ns: int) -> None:
        super().__init__(now_ns)
        self.now_ns = now_ns


def run_point(config: Config, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one point; never raises for a failure of the point.

    Returns:
        ``status`` (``ok`` or ``failed``), ``wall_s`` and ``cpu_s`` (this thread's CPU time),
        ``started`` (epoch seconds) and ``pid`` (of the process that ran it), and ``result``
        (result.json's text) or ``error`` (one line) and ``detail`` (the traceback of an
        unexpected exception, else empty).
    """
    from pfsim.api import run

    started = time.monotonic()
    stamp = time.time()
    cpu = time.thread_time()
    deadline = None if timeout_s is None else started + timeout_s

    def progress(now_ns: int) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise PointTimeout(now_ns)

    outcome: dict[str, Any] = {"status": "failed", "result": None, "error": "", "detail": ""}
    try:
        result = run(config, progress=progress if deadline is not None else None)
        outcome.update(status="ok", result=result.to_json())
    except PointTimeout as stop:
        outcome["error"] = (f"exceeded --point-timeout {timeout_s:g}s (stopped at simulated time "
                            f"{format_time(stop.now_ns)})")
    except PfsimError as exc:
        outcome["error"] = one_line(str(exc))
    except Exception as exc:  # a bug in pfsim: recorded with its traceback, the sweep goes on
        outcome["error"] = one_line(f"{type(exc).__name__}: {exc}")
        outcome["detail"] = traceback.format_exc()
    outcome["wall_s"] = time.monotonic() - started
    outcome["cpu_s"] = time.thread_time() - cpu
    outcome["started"], outcome["pid"] = stamp, os.getpid()  # for the scheduling gaps
    return outcome


def warm(config: Config) -> float:
    """Run ``config`` for :data:`WARM_DURATION_NS` of simulated time and return the wall time:
    the first call in a fresh environment compiles the numba code the scenario needs and
    caches it beside the sources (or in ``NUMBA_CACHE_DIR``); later calls, in this process or
    another, load it.  A failure is ignored (the point itself will report it)."""
    from pfsim.api import run

    started = time.monotonic()
    data = config.model_dump(mode="json")
    duration = data["sim"].get("duration")
    data["sim"]["duration"] = min(duration or WARM_DURATION_NS, WARM_DURATION_NS)
    with contextlib.suppress(Exception):  # the real run reports it
        run(load_config(data))
    return time.monotonic() - started


def warm_in_turn(config: Config) -> float:
    """:func:`warm` holding an exclusive lock shared by the processes of this machine that use
    the same pfsim sources and numba cache: the first worker to get it compiles the code (or
    loads it when it is cached) while the others wait, then they load it from the cache.
    Measured on a 2-core machine with an empty cache: one process compiles the compiled core in
    46 s, two compiling at once take 100 s each; a load takes 0.5 s.  A lock held for more than
    :data:`WARM_LOCK_WAIT_S` (a stuck process) is given up on."""
    try:
        import fcntl
    except ImportError:  # not POSIX: each worker compiles for itself
        return warm(config)
    import hashlib

    package = Path(__file__).resolve().parents[1]  # the pfsim install (not an import of it)
    place = f"{package}\0{os.environ.get('NUMBA_CACHE_DIR', '')}"
    name = f"pfsim-warm-{os.getuid()}-{hashlib.sha256(place.encode()).hexdigest()[:12]}.lock"
    with open(Path(tempfile.gettempdir()) / name, "a") as handle:
        deadline = time.monotonic() + WARM_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return warm(config)
                time.sleep(0.02)
        try:
            return warm(config)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def dask_setup(worker: object) -> None:
    """Dask worker preload (``LocalCluster(preload=["pfsim.sweeps.worker"])``): Ctrl-C at the
    terminal reaches every process of the group; the client stops the sweep and closes the
    cluster, so a worker ignores it instead of printing its own traceback.  The simulation's
    modules are imported here, while the workers start side by side, rather than in the
    warm-ups they take in turn."""
    import signal

    import pfsim.api  # noqa: F401

    signal.signal(signal.SIGINT, signal.SIG_IGN)
