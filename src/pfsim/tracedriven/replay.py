"""Replay a trace through several policies and frame counts in one pass.

The trace is read chunk by chunk (:mod:`pfsim.tracedriven.source`), each chunk renumbered to
dense page ids once (:class:`~pfsim.replacement.PageIds`) and fed to one policy object per
(policy, frame count): memory holds the chunk, the page-id table and the policies' per-page
state, whatever the trace's length. A policy that needs the future (``opt``) keeps the ids of
the whole trace (4 bytes per request, shared by all its frame counts) and replays at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pfsim.errors import ConfigError
from pfsim.replacement import REGISTRY, PageIds, Policy, make_policy, policy_names
from pfsim.replacement.opt import next_use_of
from pfsim.trace import DEFAULT_PAGE_SIZE
from pfsim.tracedriven.frames import parse_frames
from pfsim.tracedriven.source import TraceFacts, open_trace
from pfsim.units import parse_size

ROW_KEYS = ("policy", "frames", "requests", "faults", "miss_ratio")


class Rows(list):
    """Result rows (dicts with the keys :data:`ROW_KEYS`), ready for ``pandas.DataFrame``;
    ``trace`` holds what was read (:class:`~pfsim.tracedriven.source.TraceFacts`)."""

    trace: TraceFacts


def parse_policies(policies: str | Sequence[str]) -> list[str]:
    """Policy names from ``"lru,fifo"`` or a sequence; a ConfigError keyed ``--policy``."""
    names = policies.split(",") if isinstance(policies, str) else list(policies)
    names = [name.strip().lower() for name in names if name.strip()]
    if not names:
        raise ConfigError("--policy", f"expected policy names such as lru,fifo; valid "
                                      f"policies: {', '.join(policy_names())}")
    for name in names:
        if name not in REGISTRY:
            raise ConfigError("--policy", f"unknown replacement policy {name!r}; valid "
                                          f"policies: {', '.join(policy_names())}")
    return list(dict.fromkeys(names))


def replay(trace, policies: str | Sequence[str], frames: str | Sequence[int], *,
           seed: int = 0, **reader_options) -> Rows:
    """Replay ``trace`` through every policy at every frame count, reading it once.

    Args:
        trace: a trace file path, ``-`` (standard input), or an array of page numbers.
        policies: policy names (``"lru,fifo"`` or a list); see ``pfsim.replacement.REGISTRY``.
        frames: memory sizes in frames of ``page_size`` bytes, or a string as ``--frames``
            takes it (``"10:100:10,1GiB"``).
        seed: seed of the policies' random choices (``random``).
        reader_options: ``fmt``, ``unit``, ``page_size`` (bytes or ``"2MiB"``), ``column``,
            ``lackey_kinds``, ``skip_bad_lines``, ``progress`` (see
            :class:`pfsim.trace.TraceReader`).

    Returns:
        One row per (policy, frame count), policies in the given order and frame counts in
        the given order within each.

    Raises:
        ConfigError: a bad policy, frame count or reader option (keyed by its flag).
        TraceFormatError: the trace cannot be read.
    """
    names = parse_policies(policies)
    reader_options = normalize_options(reader_options)
    counts = frame_counts(frames, reader_options.get("page_size", DEFAULT_PAGE_SIZE))
    reader = open_trace(trace, **reader_options)
    instances = [make_policy(name, count, seed=seed) for name in names for count in counts]
    streaming = [policy for policy in instances if not policy.needs_future]
    future = [policy for policy in instances if policy.needs_future]
    page_ids = PageIds()
    collected: list[np.ndarray] = []
    ids = np.empty(0, dtype=np.int32)
    for pages in reader:
        if ids.size < pages.size:
            ids = np.empty(pages.size, dtype=np.int32)
        chunk = page_ids.map(pages, out=ids)
        for policy in streaming:
            policy.feed(chunk, page_ids.n_pages)
        if future:
            collected.append(chunk.copy())
    if future:
        _replay_future(future, collected, page_ids.n_pages)
    rows = Rows(_row(policy) for policy in instances)
    rows.trace = TraceFacts(reader.describe(), requests=reader.requests,
                            distinct_pages=page_ids.n_pages, warnings=list(reader.warnings),
                            first_bad=reader.first_bad)
    return rows


def normalize_options(options: dict) -> dict:
    """``page_size`` as bytes (a ``"2MiB"`` string is parsed)."""
    options = dict(options)
    size = options.get("page_size")
    if isinstance(size, str):
        try:
            options["page_size"] = int(size) if size.strip().isdigit() else parse_size(size)
        except ValueError as exc:
            raise ConfigError("--page-size", str(exc)) from None
    return options


def frame_counts(frames: str | Sequence[int], page_size: int) -> list[int]:
    """Frame counts from a ``--frames`` string or a sequence of positive integers."""
    if isinstance(frames, str):
        return parse_frames(frames, page_size)
    counts = [int(count) for count in frames]
    if not counts or any(count < 1 for count in counts):
        raise ConfigError("--frames", "frame counts must be positive integers")
    return counts


def _replay_future(policies: list[Policy], collected: list[np.ndarray], n_pages: int) -> None:
    ids = np.concatenate(collected) if len(collected) > 1 else collected[0]
    collected.clear()
    next_use = next_use_of(ids, n_pages)
    for policy in policies:
        policy.replay_whole(ids, n_pages, next_use)


def _row(policy: Policy) -> dict:
    return {"policy": policy.name, "frames": policy.frames, "requests": policy.requests,
            "faults": policy.faults, "miss_ratio": policy.faults / policy.requests}
