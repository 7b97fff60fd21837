"""Test helpers: build small scenarios as dicts and run them."""

from __future__ import annotations

import copy
from typing import Any

from pfsim.api import RunResult, run
from pfsim.config import load_config
from pfsim.simulation import Simulation

BASE = 0x10000000  # where single-vseg test processes put their vseg
ENGINE: str | None = None  # set by the ``engine`` fixture: run on this sim.engine


def _with_engine(data: dict[str, Any]) -> dict[str, Any]:
    if ENGINE is None or "engine" in data.get("sim", {}):
        return data
    data = copy.deepcopy(data)
    data.setdefault("sim", {})["engine"] = ENGINE
    return data


def scenario(steps: list[dict[str, Any]] | None = None, vsegs: list[dict[str, Any]] | None = None,
             guest: dict[str, Any] | None = None, processes: list[dict[str, Any]] | None = None,
             **sim: Any) -> dict[str, Any]:
    """A config dict: one process 'p' with one thread running ``steps`` unless ``processes``."""
    if processes is None:
        processes = [{"name": "p", "vsegs": vsegs or [], "threads": [{"steps": steps or []}]}]
    return {"sim": dict(sim), "guest": copy.deepcopy(guest or {}), "processes": processes}


def run_dict(data: dict[str, Any]) -> RunResult:
    return run(_with_engine(data))


def simulation(data: dict[str, Any]) -> Simulation:
    """A Simulation that has not run yet, for tests that inspect state mid-run."""
    return Simulation(load_config(_with_engine(data)))


def chunked_hits(name: str, trace: list[int], frames: int, cuts: list[int],
                 seed: int = 0) -> tuple[list[bool], Any]:
    """Hits of replacement policy ``name`` fed ``trace`` in the chunks ``cuts`` mark (its state
    and arrays carried over from one feed to the next), and the finished policy."""
    import numpy as np

    from pfsim.replacement import PageIds, make_policy

    pages = np.array(trace, dtype=np.int64)
    page_ids = PageIds()
    policy = make_policy(name, frames, seed=seed)
    bounds = sorted({0, pages.size, *(cut for cut in cuts if cut < pages.size)})
    recorded = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        chunk = np.zeros(stop - start, dtype=np.uint8)
        policy.feed(page_ids.map(pages[start:stop]), page_ids.n_pages, chunk)
        recorded.append(chunk)
    policy.finish()  # the end of the trace (OPT replays it here)
    return np.concatenate(recorded).astype(bool).tolist(), policy
