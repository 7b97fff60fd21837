"""Backend of ``pfsim replay``: run a memory trace through one host reclaim policy alone."""

from __future__ import annotations

from pathlib import Path

from pfsim.errors import ConfigError
from pfsim.hypervisor.reclaim import DenseTrace, get_policy
from pfsim.trace import read_trace


def replay_trace(path: str | Path, policy: str, frames: list[int], fmt: str | None = None,
                 seed: int = 0) -> list[dict]:
    """Replay the trace at ``path`` through ``policy`` once per frame count.

    Args:
        path: trace file (see :mod:`pfsim.trace.read` for the formats).
        policy: reclaim policy name, a key of ``pfsim.hypervisor.reclaim.REGISTRY``.
        frames: host memory sizes to try, in 4 KiB frames.
        fmt: trace format, or ``None`` to detect it.
        seed: seed of the ``random`` policy's victim draws.

    Returns:
        One dict per frame count, in the given order, with the keys ``policy``, ``frames``,
        ``requests`` (accesses in the trace), ``faults`` and ``miss_ratio`` (faults / requests).

    Raises:
        ConfigError: unknown policy (named as ``--policy``) or format (``--format``).
        TraceFormatError: the trace cannot be read.
    """
    try:
        reclaim = get_policy(policy, seed=seed)
    except ConfigError as exc:
        raise ConfigError("--policy", exc.message) from None
    try:
        pages = read_trace(path, fmt)
    except ConfigError as exc:
        raise ConfigError("--format", exc.message) from None
    trace = DenseTrace(pages)
    rows = []
    for frame_count in frames:
        faults = reclaim.simulate(trace, frame_count)
        rows.append({
            "policy": reclaim.name,
            "frames": int(frame_count),
            "requests": len(trace),
            "faults": faults,
            "miss_ratio": faults / len(trace),
        })
    return rows
