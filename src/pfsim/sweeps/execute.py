"""Run points on Dask (``dask.distributed``): an in-process LocalCluster using all cores, or an
existing cluster (``--scheduler tcp://HOST:8786``); or one after another in this process.

Each point is one Dask task (:func:`pfsim.sweeps.worker.run_point`) in a worker process with
one thread, so points run in parallel on separate cores and numba's compiled code runs without
the GIL in the way.  Results come back to this process, which writes them (the workers need no
access to the output directory).

The first compile.  The compiled core is compiled in a fresh environment and then cached beside
the sources (or in ``NUMBA_CACHE_DIR``).  Each worker's first task is a warm-up pinned to it
(:func:`pfsim.sweeps.worker.warm_in_turn`): under a lock file of the machine, the first worker
compiles (46 s on a 2-core machine, where two workers compiling at once take 100 s each) or
loads the cache (0.5 s), then the others load it; no point's wall time includes loading code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pfsim.config import Config
from pfsim.sweeps.spec import SweepError
from pfsim.sweeps.worker import run_point, warm, warm_in_turn

Done = Callable[[int, dict[str, Any]], None]
"""Called in this process with (index of the task, its outcome) as each task ends."""

HARD_GRACE_S = 5.0
"""A point still running this long after its --point-timeout (it gives the simulation no
chance to stop, e.g. a setup or a compile that takes longer) is cancelled and its worker
restarted."""
POLL_S = 0.05
START_TOPIC = "pfsim-point-start"


@dataclass(frozen=True)
class Engine:
    """Where points run: ``serial`` in this process, else Dask (``scheduler`` address, or a
    LocalCluster of ``workers`` processes, default all cores)."""

    serial: bool = False
    workers: int | None = None
    scheduler: str | None = None

    def describe(self, tasks: int) -> str:
        if self.serial:
            return "serial (this process)"
        if self.scheduler:
            return f"Dask scheduler {self.scheduler}"
        return f"Dask LocalCluster, {self.local_workers(tasks)} worker processes"

    def local_workers(self, tasks: int) -> int:
        return max(1, min(self.workers or available_cores(), max(tasks, 1)))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_tasks(configs: Sequence[Config], engine: Engine, on_done: Done,
              timeout_s: float | None = None,
              keys: Sequence[str] | None = None) -> dict[str, float]:
    """Run every config and call ``on_done`` as each ends; returns timings of the phases
    (``start_s``: cluster start, ``warm_s``: the warm-up in this process, serial only; on Dask
    the workers warm up as their first task)."""
    if not configs:
        return {"start_s": 0.0, "warm_s": 0.0}
    if engine.serial:
        started = time.monotonic()
        warm(configs[0])
        timings = {"start_s": 0.0, "warm_s": time.monotonic() - started}
        for index, config in enumerate(configs):
            on_done(index, run_point(config, timeout_s))
        return timings
    keys = list(keys) if keys is not None else [f"point-{i}" for i in range(len(configs))]
    started = time.monotonic()
    with _client(engine, len(configs)) as client:
        timings = {"start_s": time.monotonic() - started, "warm_s": 0.0}
        warming = _warm_workers(client, configs[0])  # each worker's first task
        _run_on_dask(client, configs, keys, on_done, timeout_s)
        for future in warming:
            future.release()
    return timings


@contextlib.contextmanager
def _client(engine: Engine, tasks: int) -> Iterator[Any]:
    import dask
    from dask.distributed import Client, LocalCluster

    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if engine.scheduler:
        try:
            client = Client(engine.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepError(f"--scheduler {engine.scheduler}: cannot connect ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    settings = {
        # a point that kills its worker (a crash, the memory limit) is tried on one other
        # worker, then reported; the default (3) would crash three more workers first
        "distributed.scheduler.allowed-failures": 1,
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
        # dynamic mmap threshold: every array a point allocates is then a fresh mmap whose
        # pages fault in again.  Measured on the overcommit example: 50 % more CPU time per
        # point than in this process; without it, the same as here.
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # the statistical profiler feeds the dashboard, which a sweep does not start
        "distributed.worker.profile.enabled": False,
        # a worker holds only the point it runs (Dask's default, 1.1, gives it a second one
        # in advance): the last points go to whichever worker frees up first, so the sweep does
        # not end with one worker idle while the other still has a queued point; the cost is
        # one round trip per point (a few ms, against points of seconds)
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        # dashboard_address ":0": the scheduler's HTTP server on a free port (the default,
        # 8787, is taken by any other Dask cluster on the machine, a warning then)
        cluster = LocalCluster(n_workers=engine.local_workers(tasks), threads_per_worker=1,
                               processes=True, dashboard_address=":0", silence_logs=logging.ERROR,
                               preload=["pfsim.sweeps.worker"])
        client = Client(cluster)
        interrupted = False
        try:
            yield client
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (errors.Terminated)
            interrupted = True
            raise
        finally:
            # every result is in (or Ctrl-C, SIGTERM): a graceful close would wait for the
            # workers, up to seconds for the points they are running, for nothing.  What the
            # event loops log while the killed workers' connections drop (tornado and asyncio
            # "Exception in callback" tracebacks) is noise now: silenced.
            levels = silence_dask_logs()
            _kill_workers(cluster)
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(Exception):
                cluster.close()
            if not interrupted:  # else the process is ending and late callbacks still log
                for logger, level in levels:
                    logger.setLevel(level)


DASK_LOGGERS = ("distributed", "bokeh", "tornado", "asyncio")


def silence_dask_logs() -> list[tuple[logging.Logger, int]]:
    """Silence Dask's, tornado's and asyncio's loggers, and every logger below them (Dask's
    logging config gives some their own level, e.g. ``tornado.application``, which a parent's
    level does not cover); returns the (logger, level) pairs to restore."""
    loggers = [logging.getLogger(name) for name in DASK_LOGGERS]
    loggers += [logger for name, logger in list(logging.root.manager.loggerDict.items())
                if isinstance(logger, logging.Logger)
                and any(name.startswith(prefix + ".") for prefix in DASK_LOGGERS)]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    return levels


def _kill_workers(cluster: Any) -> None:
    """End the worker processes this cluster started (a graceful close waits seconds for the
    points they are running)."""
    import signal

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _warm_workers(client: Any, config: Config) -> list[Any]:
    """Load (or compile) the first point's code in every worker: one task pinned to each,
    submitted before the points so that each worker runs it first (Dask runs a worker's tasks
    in submission order), without waiting for the slowest worker."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"]) if _takes_n_workers(client) \
        else list(client.scheduler_info()["workers"])
    futures = [client.submit(warm_in_turn, config, workers=[address], allow_other_workers=False,
                             pure=False, key=f"pfsim-warm-{n}")
               for n, address in enumerate(workers)]
    return futures


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _dask_point(config: Config, timeout_s: float | None,
                call: Callable[..., dict[str, Any]] = run_point) -> dict[str, Any]:
    """run_point in a Dask worker, which first tells the client it started (for the hard
    timeout)."""
    from distributed import get_worker

    with contextlib.suppress(Exception):
        worker = get_worker()
        worker.log_event(START_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    return call(config, timeout_s)


def _run_on_dask(client: Any, configs: Sequence[Config], keys: Sequence[str], on_done: Done,
                 timeout_s: float | None, call: Callable[..., dict[str, Any]] = run_point) -> None:
    """Submit one task per config and report each outcome as it arrives; a task still running
    :data:`HARD_GRACE_S` after ``timeout_s`` is cancelled and its worker restarted."""
    from dask.distributed import as_completed

    started: dict[str, tuple[float, str]] = {}

    def record_start(event: Any) -> None:
        _stamp, message = event
        started[message["key"]] = (time.monotonic(), message["worker"])

    if timeout_s is not None:
        client.subscribe_topic(START_TOPIC, record_start)
    futures = {}
    for index, (config, key) in enumerate(zip(configs, keys, strict=True)):
        future = client.submit(_dask_point, config, timeout_s, call, key=f"pfsim-{key}", pure=False)
        futures[future.key] = (index, future)
    pending = as_completed([future for _index, future in futures.values()])
    try:
        while not pending.is_empty():
            batch = pending.next_batch(block=False)
            for future in batch:
                index, _ = futures.pop(future.key, (None, None))
                if index is None:
                    continue  # cancelled after a hard timeout, already reported
                on_done(index, _outcome(future))
                future.release()
            if timeout_s is not None:
                _hard_timeouts(client, futures, started, timeout_s, on_done)
            if not batch:
                time.sleep(POLL_S)
    finally:
        if timeout_s is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(START_TOPIC)
        for _index, future in futures.values():
            future.cancel()


def _outcome(future: Any) -> dict[str, Any]:
    if future.status == "finished":
        return future.result()
    try:
        exc = future.exception()
    except Exception as why:  # noqa: BLE001 (a cancelled future)
        exc = why
    from pfsim.sweeps.worker import one_line

    name = type(exc).__name__
    error = f"{name}: {exc}" if name != "KilledWorker" else \
        f"the worker process died while running this point ({exc})"
    return {"status": "failed", "error": one_line(error), "detail": "", "wall_s": None,
            "cpu_s": None, "result": None}


def _hard_timeouts(client: Any, futures: dict[str, tuple[int, Any]],
                   started: dict[str, tuple[float, str]], timeout_s: float, on_done: Done) -> None:
    now = time.monotonic()
    limit = timeout_s + HARD_GRACE_S
    for key, (when, worker) in list(started.items()):
        if key not in futures:
            started.pop(key)
            continue
        if now - when <= limit:
            continue
        index, future = futures.pop(key)
        started.pop(key)
        future.cancel()
        with contextlib.suppress(Exception):
            client.restart_workers([worker], raise_for_error=False)
        on_done(index, {"status": "failed", "result": None, "detail": "",
                        "wall_s": now - when, "cpu_s": None,
                        "error": f"exceeded --point-timeout {timeout_s:g}s and did not stop; its "
                                 f"worker was restarted"})
