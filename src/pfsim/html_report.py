"""``pfsim report DIR`` and ``pfsim run ... --report``: one self-contained ``report.html``.

The page needs no network and no script: the styles are inline, the figures are inline SVG
(:mod:`pfsim.plot`), the tables are HTML.  It shows, for one run or the variants of a
``--compare`` directory side by side: the resolved config (``config.json`` beside each
result.json, when the run wrote one), summary tables, and the figures of :data:`FIGURES`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from pfsim.plot import FIGURES, render

Runs = dict[str, dict[str, Any]]

CAPTIONS = {
    "work": "Work (completed accesses plus compute units) per second of simulated time, per "
            "sampling interval: per task for one run; for a comparison, summed over all tasks "
            "and over the tasks of each process, one line per run.",
    "vcpus": "Where the vCPUs' time went in each interval, all vCPUs together: running guest "
             "code (busy), in the host for faults, swap waits and APF halts (stalled), with "
             "nothing to run (idle), runnable without a host CPU (steal).",
    "latency": "Cumulative distributions of the fault latencies (result.json "
               "vms.vm0.latency, log buckets at most 1/16 wide).",
    "sweep": "Each headline metric of the sweep per group: the mean over the group's seeds, "
             "with its 95 % confidence interval (Student's t) as error bars; the first axis "
             "along x, one series per combination of the other axes.",
    "memory": "Host frames free under the memory limit, and pages read from swap (swap-ins, "
              "readahead included) and written to it (swap-outs) per second.",
}

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; } caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.meta { color: #555; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{_esc(value if value is not None else '')}</td>"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}"
    return f'<td class="n">{text}</td>'


def _table(caption: str, header: list[str], rows: list[list[Any]], table_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_num(v) for v in row) + "</tr>" for row in rows)
    return (f'<table id="{_esc(table_id)}"><caption>{_esc(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _totals(result: dict[str, Any]) -> dict[str, int]:
    totals = dict.fromkeys(("work", "accesses", "compute_units", "min_flt", "maj_flt"), 0)
    for process in result["vms"]["vm0"]["processes"].values():
        for key in totals:
            totals[key] += process[key]
    return totals


def comparison_table(runs: Runs) -> str:
    """One row per run: work, compute units and accesses with their ratios to the first run,
    vCPU time split, faults, host, async PF."""
    header = ["run", "work", "ratio", "compute units", "compute ratio", "accesses",
              "access ratio", "busy", "stalled", "idle", "steal", "min_flt", "maj_flt",
              "host faults", "swap-ins", "not_present", "page_ready", "sync_fallbacks",
              "outcome"]
    rows: list[list[Any]] = []
    base: dict[str, int] = {}
    for label, result in runs.items():
        vm = result["vms"]["vm0"]
        totals = _totals(result)
        base = base or totals
        ratios = {key: round(totals[key] / base[key], 3) if base[key] else "-"
                  for key in ("work", "compute_units", "accesses")}
        span = result["sim_time_ns"] * len(vm["vcpus"])
        times = {k: sum(v[k] for v in vm["vcpus"]) for k in
                 ("busy_ns", "stalled_ns", "idle_ns", "steal_ns")}
        apf = vm["async_pf"]
        rows.append([label, totals["work"], ratios["work"], totals["compute_units"],
                     ratios["compute_units"], totals["accesses"], ratios["accesses"],
                     _pct(times["busy_ns"], span), _pct(times["stalled_ns"], span),
                     _pct(times["idle_ns"], span), _pct(times["steal_ns"], span),
                     totals["min_flt"], totals["maj_flt"], result["host"]["ept_violations"],
                     result["host"]["swap_ins"], apf["not_present"], apf["page_ready"],
                     apf["sync_fallbacks"], vm["outcome"]])
    return _table("runs side by side (ratios: relative to the first run)", header, rows,
                  "table-comparison")


def run_tables(label: str, result: dict[str, Any]) -> str:
    vm = result["vms"]["vm0"]
    parts = []
    rows = [[name, p["threads"], p["work"], p["accesses"], p["compute_units"], p["min_flt"],
             p["maj_flt"], p["segv"], p["exit"]] for name, p in vm["processes"].items()]
    parts.append(_table(f"processes of {label} (VM outcome: {vm['outcome']})",
                        ["process", "threads", "work", "accesses", "compute units", "min_flt",
                         "maj_flt", "segv", "exit"], rows, f"table-processes-{label}"))
    total = result["sim_time_ns"]
    rows = [[v["vcpu"], _pct(v["busy_ns"], total), _pct(v["stalled_ns"], total),
             _pct(v["idle_ns"], total), _pct(v["steal_ns"], total), v["context_switches"]]
            for v in vm["vcpus"]]
    parts.append(_table(f"vCPUs of {label}", ["vcpu", "busy", "stalled", "idle", "steal",
                                             "context switches"], rows, f"table-vcpus-{label}"))
    latency = vm.get("latency")
    if latency:
        from pfsim.machine.latency import percentile

        from pfsim.machine.latency import KINDS

        rows = []
        for kind, hist in sorted(latency.items(), key=lambda item: KINDS.index(item[0])
                                 if item[0] in KINDS else len(KINDS)):
            if hist["count"]:
                rows.append([kind, hist["count"], hist["min_ns"],
                             percentile(hist, 0.5), percentile(hist, 0.99), hist["max_ns"],
                             hist["sum_ns"] // hist["count"]])
            else:
                rows.append([kind, 0, "", "", "", "", ""])
        parts.append(_table(f"fault latencies of {label} (ns; percentiles at most 1/16 high)",
                            ["kind", "count", "min", "p50", "p99", "max", "mean"], rows,
                            f"table-latency-{label}"))
    host = result["host"]
    keys = [k for k in ("ept_violations", "host_minor_faults", "host_major_faults",
                        "swap_ins", "swap_outs", "evictions", "readahead_pages",
                        "resident_frames", "memory_limit_frames") if k in host]
    if host.get("memory_limit_frames"):
        parts.append(_table(f"host of {label}", keys, [[host[k] for k in keys]],
                            f"table-host-{label}"))
    return "\n".join(parts)


def _config_section(directory: Path, runs: Runs) -> str:
    from pfsim.result_tables import locate_runs

    configs = {}
    files = locate_runs(directory)
    for label in runs:
        candidate = files[label].parent / "config.json" if label in files else None
        if candidate is not None and candidate.is_file():
            config = _matching_config(candidate, runs[label])
            if config is not None:
                configs[label] = config
    if not configs:
        return ("<p class=\"meta\">No config.json matching these results beside them "
                "(pfsim run writes one next to result.json).</p>")
    first = next(iter(configs.values()))
    text = json.dumps(first, indent=2, sort_keys=True)
    out = [f"<p>{_esc(_config_line(first))}</p>",
           f"<details><summary>the whole resolved config of {_esc(next(iter(configs)))} "
           f"(config.json)</summary><pre>{_esc(text)}</pre></details>"]
    if len(configs) > 1:
        rows = []
        flat_first = _flatten(first)
        for label, config in configs.items():
            flat = _flatten(config)
            diff = {k: v for k, v in flat.items() if flat_first.get(k) != v}
            rows.append([label, ", ".join(f"{k} = {v}" for k, v in sorted(diff.items()))
                         or "(the first)"])
        out.append(_table("how the runs' configs differ from the first",
                          ["run", "differences"], rows, "table-config-diff"))
    return "\n".join(out)


def _matching_config(path: Path, result: dict[str, Any]) -> dict[str, Any] | None:
    """The config in ``path`` if it is the one of ``result`` (same digest), else None."""
    from pfsim.config import config_digest
    from pfsim.config.load import validate_config
    from pfsim.errors import PfsimError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if config_digest(validate_config(data)) != result.get("config_digest"):
            return None
    except (OSError, ValueError, PfsimError):
        return None
    return data


def _config_line(config: dict[str, Any]) -> str:
    guest, host, sim = config["guest"], config["hypervisor"], config["sim"]
    words = [f"guest: {guest['vcpus']} vCPUs, {guest['memory'] >> 20} MiB"]
    if host.get("enabled"):
        words.append(f"host: {host['host_cpus']} CPUs, memory limit "
                     f"{(host['memory_limit'] or 0) >> 20} MiB, reclaim {host['reclaim']}, "
                     f"swap {host['swap']['device']}, async PF {host['async_pf']}")
    counts = [(p["name"], sum(t["count"] for t in p["threads"])) for p in config["processes"]]
    words.append("processes: " + ", ".join(
        f"{name} ({n} thread{'s' if n != 1 else ''})" for name, n in counts))
    duration = sim.get("duration")
    words.append(f"duration {duration / 1e9:g} s" if duration else "until every task exits")
    return "; ".join(words)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def build(directory: Path, runs: Runs) -> str:
    """The report page of ``runs`` (found under ``directory``)."""
    first = next(iter(runs.values()))
    title = f"pfsim report: {directory}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_esc(title)}</h1>",
             f"<p class=\"meta\">pfsim {_esc(first.get('pfsim_version', '?'))}, "
             f"{len(runs)} run{'s' if len(runs) > 1 else ''}, seed {_esc(first.get('seed'))}, "
             f"simulated time {first['sim_time_ns'] / 1e9:.3f} s, engine "
             f"{_esc(first.get('engine'))}.</p>",
             *_sweep_section(directory),
             "<h2>Config</h2>", _config_section(directory, runs), "<h2>Summary</h2>"]
    details = [run_tables(label, result) for label, result in runs.items()]
    if len(runs) > 1:
        parts.append(comparison_table(runs))
    else:
        parts += details
    parts.append("<h2>Figures</h2>")
    for name, draw in FIGURES.items():
        svg = render(draw(runs), "svg").decode("utf-8")
        svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG
        parts.append(f'<figure id="fig-{name}">{svg}<figcaption>{_esc(CAPTIONS[name])}'
                     "</figcaption></figure>")
    if len(runs) > 1:
        parts += ["<h2>Each run</h2>", *details]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _sweep_section(directory: Path) -> list[str]:
    """For a ``pfsim sweep`` directory: its summary with confidence intervals and the sweep
    figure; the rest of the page then shows one run per group."""
    from pfsim.sweep_report import is_sweep, read_summary, summary_html, sweep_figure

    if not is_sweep(directory):
        return []
    summary = read_summary(directory)
    points = sum(int(row["points"]) for row in summary.rows)
    failed = sum(int(row["failed"]) for row in summary.rows)
    svg = render(sweep_figure(summary), "svg").decode("utf-8")
    return ["<h2>Sweep</h2>",
            f"<p>{len(summary.rows)} groups over {_esc(', '.join(summary.axes))}; {points} "
            f"points, {failed} failed. The sections after this one show one run per group "
            "(its lowest replicate), labelled by its axis values.</p>",
            summary_html(summary),
            f'<figure id="fig-sweep">{svg[svg.index("<svg"):]}<figcaption>'
            f"{_esc(CAPTIONS['sweep'])}</figcaption></figure>"]


def write_report(directory: Path, runs: Runs) -> Path:
    """Write ``directory/report.html`` atomically; returns its path."""
    from pfsim.output import OutputDir

    return OutputDir(directory, flag="report").write("report.html", build(directory, runs))
