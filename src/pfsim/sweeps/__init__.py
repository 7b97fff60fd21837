"""Sweeps: a base scenario run over grids of parameters and seeds, in parallel on Dask,
resumable, with tables for pandas (``pfsim sweep FILE``, ``pfsim.sweep(...)``).

spec.py (the sweep file → points), seeds.py (per-point seeds), worker.py (what runs one point),
execute.py (Dask or serial execution, warm-up, timeouts), store.py (the output directory),
metrics.py, table.py, stats.py (the tables and their confidence intervals), run.py (a whole
sweep), show.py and command.py (the command line), compare.py and paths.py (``pfsim run
--compare`` on the same machinery), api.py (``pfsim.sweep``).
"""

from pfsim.sweeps.spec import SweepError

__all__ = ["SweepError", "summarize", "sweep"]


def __getattr__(name: str):  # lazy: pandas and Dask load only when a sweep runs
    if name == "sweep":
        from pfsim.sweeps.api import sweep

        return sweep
    if name == "summarize":
        from pfsim.sweeps.table import summarize

        return summarize
    raise AttributeError(name)
