"""Figures of one run or of the variants of a ``--compare`` directory (matplotlib, Agg: no
display needed), for ``pfsim plot`` and the HTML report.

Every figure takes ``runs`` ({label: result.json dict}, :func:`pfsim.result_tables.find_runs`)
and draws one series per run where runs are compared (the variants side by side); each line or
area carries the SVG id ``series-<figure>-<label>[-<part>]`` so that a reader of the SVG (or a
test) can find it.

- ``work``: work per second over time, per task (one run) or summed over the tasks (several);
- ``vcpus``: the vCPUs' time split busy / stalled / idle / steal over time, stacked, one panel
  per run;
- ``latency``: CDFs of the fault latencies (``vms.vm0.latency``: minor, major, async round
  trip), one line per run;
- ``memory``: host free frames and swap-ins / swap-outs per second over time, one line per run.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

Runs = dict[str, dict[str, Any]]
NS_PER_S = 1_000_000_000
STATES = (("busy_ns", "busy", "#4c72b0"), ("stalled_ns", "stalled", "#dd8452"),
          ("idle_ns", "idle", "#bbbbbb"), ("steal_ns", "steal", "#8172b3"))


def _gid(figure: str, *parts: str) -> str:
    text = "-".join(("series", figure, *parts))
    return re.sub(r"[^A-Za-z0-9_.=,-]", "_", text)


def _samples(result: dict[str, Any]) -> dict[str, Any] | None:
    samples = result.get("samples")
    return samples if samples and samples.get("t_ns") else None


def _seconds(samples: dict[str, Any]) -> list[float]:
    return [t / NS_PER_S for t in samples["t_ns"]]


def _rate(column: list[int], t_ns: list[int]) -> list[float]:
    """Per-second rate of a cumulative counter over each interval."""
    out, before, t0 = [], 0, 0
    for value, t in zip(column, t_ns, strict=True):
        out.append((value - before) * NS_PER_S / max(1, t - t0))
        before, t0 = value, t
    return out


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def work_figure(runs: Runs) -> Figure:
    """One run: a line per task.  Several: a panel for all tasks and one per process, a line
    per run in each."""
    if len(runs) == 1:
        label, result = next(iter(runs.items()))
        fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
        samples = _samples(result)
        if samples is None:
            _no_data(ax, "no samples (sim.sample = 0)")
        else:
            t = _seconds(samples)
            for name in sorted(samples["tasks"]):
                line, = ax.plot(t, _rate(samples["tasks"][name]["work"], samples["t_ns"]),
                                label=name)
                line.set_gid(_gid("work", label, name))
            _work_axes(ax)
        ax.set_title("work over time per task")
        return fig
    processes: list[str] = []
    for result in runs.values():
        for name in _vm(result)["processes"]:
            if name not in processes:
                processes.append(name)
    panels = ["all tasks", *processes]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(18, 4 + 4 * len(panels)), 3.8),
                             layout="constrained", squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        drawn = False
        for label, result in runs.items():
            samples = _samples(result)
            if samples is None:
                continue
            owner = {name: task["process"] for name, task in _vm(result)["tasks"].items()}
            columns = [c["work"] for name, c in samples["tasks"].items()
                       if panel == "all tasks" or owner.get(name) == panel]
            if not columns:
                continue
            total = [sum(values) for values in zip(*columns, strict=True)]
            line, = ax.plot(_seconds(samples), _rate(total, samples["t_ns"]), label=label)
            line.set_gid(_gid("work", label) if panel == "all tasks"
                         else _gid("work", label, "process", panel))
            drawn = True
        if drawn:
            _work_axes(ax)
        else:
            _no_data(ax, "no samples (sim.sample = 0)")
        ax.set_title(panel if panel == "all tasks" else f"process {panel}", fontsize="medium")
    fig.suptitle("work over time per run")
    return fig


def _work_axes(ax: Any) -> None:
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("work per second")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="lower right")


def vcpu_figure(runs: Runs) -> Figure:
    n = len(runs)
    fig, axes = plt.subplots(1, n, figsize=(min(16, 4 + 4 * n), 3.6), sharey=True,
                             layout="constrained", squeeze=False)
    for ax, (label, result) in zip(axes[0], runs.items(), strict=True):
        samples = _samples(result)
        if samples is None:
            _no_data(ax, "no samples")
            ax.set_title(label, fontsize="medium")
            continue
        t_ns = samples["t_ns"]
        t = _seconds(samples)
        span = [(b - a) * len(samples["vcpus"]) for a, b in zip([0, *t_ns[:-1]], t_ns,
                                                                  strict=True)]
        layers = []
        for key, _name, _color in STATES:
            total = [sum(c) for c in zip(*(v[key] for v in samples["vcpus"]), strict=True)]
            per = _rate(total, t_ns)  # ns per s of simulated time, summed over vCPUs
            layers.append([100 * p * (ts - t0) / NS_PER_S / max(1, s)
                           for p, ts, t0, s in zip(per, t_ns, [0, *t_ns[:-1]], span,
                                                   strict=True)])
        polys = ax.stackplot(t, *layers, labels=[name for _k, name, _c in STATES],
                             colors=[c for _k, _n, c in STATES], step="pre")
        for poly, (_key, name, _color) in zip(polys, STATES, strict=True):
            poly.set_gid(_gid("vcpus", label, name))
        ax.set_ylim(0, 100)
        ax.set_xlabel("simulated time (s)")
        ax.set_title(label, fontsize="medium")
    axes[0][0].set_ylabel("% of vCPU time")
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside right upper", fontsize="small")
    fig.suptitle("vCPU state over time (all vCPUs)")
    return fig


LATENCY_KINDS = (("minor", "minor faults"), ("major", "major faults"),
                 ("async", "async PF round trips"))


def latency_figure(runs: Runs) -> Figure:
    from pfsim.machine.latency import cdf_points

    fig, axes = plt.subplots(1, len(LATENCY_KINDS), figsize=(12, 3.6), layout="constrained")
    for ax, (kind, title) in zip(axes, LATENCY_KINDS, strict=True):
        drawn = False
        for label, result in runs.items():
            hist = _vm(result).get("latency", {}).get(kind)
            if not hist or not hist.get("count"):
                continue
            xs, ys = cdf_points(hist)
            xs, ys = [max(1, hist["min_ns"]), *xs], [0.0, *ys]  # from 0 at the minimum
            line, = ax.step([x / 1000 for x in xs], ys, where="post", label=label)
            line.set_gid(_gid("latency", kind, label))
            drawn = True
        ax.set_title(title, fontsize="medium")
        if drawn:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("latency (us)")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize="small", loc="lower right")
        else:
            _no_data(ax, "none in this run")
    axes[0].set_ylabel("fraction at or below")
    fig.suptitle("fault latency CDFs")
    return fig


def memory_figure(runs: Runs) -> Figure:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True,
                                      layout="constrained")
    drawn = False
    for label, result in runs.items():
        samples = _samples(result)
        if samples is None or "host" not in samples:
            continue
        t = _seconds(samples)
        host = samples["host"]
        line, = top.plot(t, host["free_frames"], label=label)
        line.set_gid(_gid("memory", label, "free"))
        line, = bottom.plot(t, _rate(host["swap_ins"], samples["t_ns"]),
                            label=f"{label} swap-ins")
        line.set_gid(_gid("memory", label, "swap_ins"))
        color = line.get_color()
        line, = bottom.plot(t, _rate(host["swap_outs"], samples["t_ns"]), linestyle="--",
                            color=color, label=f"{label} swap-outs")
        line.set_gid(_gid("memory", label, "swap_outs"))
        drawn = True
    if not drawn:
        _no_data(top, "no host samples (no hypervisor, or sim.sample = 0)")
        _no_data(bottom, "")
    else:
        top.set_ylabel("host free frames")
        top.set_ylim(bottom=0)
        top.legend(fontsize="small")
        bottom.set_ylabel("pages per second")
        bottom.set_xlabel("simulated time (s)")
        bottom.set_ylim(bottom=0)
        bottom.legend(fontsize="small", ncol=2)
    top.set_title("host memory and swap traffic over time")
    return fig


def _vm(result: dict[str, Any]) -> dict[str, Any]:
    return result["vms"]["vm0"]


FIGURES: dict[str, Callable[[Runs], Figure]] = {
    "work": work_figure, "vcpus": vcpu_figure, "latency": latency_figure,
    "memory": memory_figure}
"""``pfsim plot --figure NAME``: the figure functions by name."""


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as ``svg`` or ``png`` bytes (deterministic: no dates, fixed hash salt)."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "pfsim", "svg.fonttype": "path"}):
        fig.savefig(buffer, format=fmt, metadata=metadata, dpi=110)
    plt.close(fig)
    return buffer.getvalue()
