"""pfsim: a deterministic discrete-event simulator of page-fault handling.

Public API (for notebooks and scripts)::

    import pfsim
    config = pfsim.load_config("examples/quickstart.toml", overrides=["guest.vcpus=4"])
    result = pfsim.run(config)
    rows = pfsim.replay("trace.lackey", policies=["lru", "clock"], frames="64:1024:64")
    curve = pfsim.mrc("trace.lackey"); curve.miss_ratio([64, 128]), curve.footprint
    frame = pfsim.sweep("examples/sweep-apf.toml")   # pandas DataFrame, a row per point
    t = pfsim.tables("out/quickstart")   # DataFrames: t.tasks, t.processes, t.vcpus, t.intervals
    result.processes["kvstore"]["min_flt"]          # shortcut for the single VM
    result["vms"]["vm0"]["processes"]["kvstore"]    # the same, as in result.json
"""

from pfsim import numba_cache

numba_cache.configure()  # before any compiled function is decorated (read-only installs)


__version__ = "0.1.0"

__all__ = ["Config", "RunResult", "__version__", "load_config", "mrc", "replay", "run",
           "sweep", "tables"]


def __getattr__(name: str):  # lazy: keep `import pfsim` cheap (numba loads on first run)
    if name in ("Config", "load_config"):  # pydantic: not for `pfsim replay` or `pfsim mrc`
        from pfsim import config

        return getattr(config, name)
    if name in ("run", "RunResult"):
        from pfsim import api

        return getattr(api, name)
    if name == "replay":  # trace replay: no pydantic, no simulation code
        from pfsim.tracedriven.replay import replay

        return replay
    if name == "mrc":
        from pfsim.tracedriven.mrc import mrc

        return mrc
    if name == "sweep":  # pandas and Dask load only with it
        from pfsim.sweeps.api import sweep

        return sweep
    if name == "tables":  # pandas loads only with it
        from pfsim.result_tables import tables

        return tables
    raise AttributeError(name)
