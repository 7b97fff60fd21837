"""``pfsim run``: echo the resolved scenario, show progress, print the summary, write result.json."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pfsim.api import RunResult, run
from pfsim.config import config_digest, config_warnings, load_config
from pfsim.console_tables import output_console
from pfsim.errors import clip
from pfsim.footprint import check_resources
from pfsim.output import OutputDir
from pfsim.units import format_time

PROGRESS_AFTER_S = 1.5
"""Runs shorter than this show no progress bar."""


class _LazyProgress:
    """A progress bar on stderr that appears only for long runs on a terminal."""

    def __init__(self, total_ns: int | None) -> None:
        self.total = total_ns
        self.started = time.monotonic()
        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal
        self.bar: Progress | None = None
        self.task_id: Any = None

    def __call__(self, now_ns: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < PROGRESS_AFTER_S:
                return
            self.bar = Progress(TextColumn("simulating"), BarColumn(),
                                TextColumn("{task.fields[sim]}"), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.start()
            self.task_id = self.bar.add_task("run", total=self.total, sim="")
        self.bar.update(self.task_id, completed=now_ns if self.total else None,
                        sim=f"sim {format_time(now_ns)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def config_json(config: Any) -> str:
    """The resolved config as written to config.json beside result.json."""
    import json

    return json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def write_config(out: OutputDir, config: Any) -> None:
    """config.json beside result.json (what ``pfsim report`` shows); a failure to write it
    leaves no stale one and is a warning, the result being written already."""
    from pfsim.errors import OutputError

    try:
        out.write("config.json", config_json(config))
    except OutputError as exc:
        with contextlib.suppress(OSError):  # e.g. a directory of that name: left as it is
            (out.path / "config.json").unlink(missing_ok=True)
        click.echo(f"pfsim: warning: {exc}", err=True)


def run_command(config_path: Path, seed: int | None, out_dir: Path | None, overrides: list[str],
                quiet: bool, trace: tuple[Path, str | None, str | None, int | None] | None = None,
                report: bool = False, fmt: str | None = None, wide: bool = False) -> None:
    """Implementation of ``pfsim run`` (errors propagate as PfsimError).

    Everything the user gave is checked before the run: the config, the memory the scenario
    needs and the output directory; a run that fails or is interrupted removes the output
    directories it created and leaves an existing result.json as it was.
    """
    config = load_config(config_path, overrides=overrides, seed=seed)
    for warning in config_warnings(config):
        click.echo(f"pfsim: warning: {clip(warning, 400)}", err=True)
    check_resources(config)
    out_path = out_dir if out_dir is not None else Path("out") / config_path.stem
    tracing = None
    if trace is not None:
        from pfsim.tracing import trace_options

        _check_trace_is_its_own_file(trace[0], config_path, out_path, report, fmt)
        tracing = trace_options(*trace)  # checked (and its directory made) before the run
    out = OutputDir(out_path).prepare()
    console = output_console(pipe_width=140)
    try:
        if not quiet:
            click.echo(f"ARG config {config_path}  seed {config.sim.seed}  digest "
                       f"{config_digest(config)}  vcpus {config.guest.vcpus}  memory "
                       f"{config.guest.memory >> 20}MiB  processes {len(config.processes)}")
        progress = _LazyProgress(config.sim.duration)
        wall = time.monotonic()
        try:
            result = run(config, progress=progress, trace=tracing)
        finally:
            progress.close()
        wall = time.monotonic() - wall
        path = out.write("result.json", result.to_json())
    except BaseException:
        out.discard()
        if tracing is not None:
            tracing.out.discard()
        raise
    write_config(out, config)
    if not quiet:
        print_summary(console, result, wide=wide)
    if result.trace_warning is not None:
        click.echo(f"pfsim: warning: {result.trace_warning}", err=True)
    line = final_line(result, wall, path)
    click.echo(line if result.trace_path is None else f"{line} trace={result.trace_path}")
    _after_run(out.path, report, fmt)


def _check_trace_is_its_own_file(trace: Path, config_path: Path, out_dir: Path, report: bool,
                                 fmt: str | None) -> None:
    """Refuse a --trace file that is the config (the trace would be written over it) or one of
    the files the run writes in ``out_dir`` (which would be written over the trace)."""
    from pfsim.errors import OutputError

    names = ["result.json", "config.json", *(["report.html"] if report else [])]
    if fmt is not None:
        from pfsim.result_tables import TABLES

        names += [f"{table}.{fmt}" for table in TABLES]
    others = {config_path.resolve(): "is the config file CONFIG",
              **{(out_dir / name).resolve(): f"is the run's {name}" for name in names}}
    what = others.get(trace.resolve())
    if what is not None:
        raise OutputError(f"--trace {clip(str(trace), 120)}: {what}; choose another name")


def _after_run(directory: Path, report: bool, fmt: str | None) -> None:
    from pfsim.views import after_run

    for written in after_run(directory, report, fmt):
        click.echo(f"wrote {written}")


def compare_command(config_path: Path, seed: int | None, out_dir: Path | None,
                    overrides: list[str], axes: list[tuple[str, list[str]]],
                    workers: int | None = None, report: bool = False, fmt: str | None = None,
                    wide: bool = False) -> None:
    """Implementation of ``pfsim run --compare KEY=V1,V2,... [--compare ...]``: one run per
    combination of the values, same seed, in parallel (pfsim.sweeps.compare)."""
    from pfsim.sweeps.compare import compare_warnings, plan_compare, run_compare

    out_dir = out_dir if out_dir is not None else Path("out") / config_path.stem
    variants = plan_compare(config_path, seed, overrides, axes, out_dir)  # all validated first
    for warning in compare_warnings(variants):
        click.echo(f"pfsim: warning: {clip(warning, 400)}", err=True)
    console = output_console(pipe_width=1000)  # a file or a pipe: every column
    click.echo(f"ARG config {config_path}  seed {variants[0].config.sim.seed}  compare "
               + "  ".join(f"{key} = {', '.join(values)}" for key, values in axes))
    run_compare(variants, workers=workers)
    _record_compare(out_dir, variants)
    keys = [key for key, _values in axes]
    rows = [(tuple(value for _key, value in v.values), RunResult(v.result), v.wall_s, v.path)
            for v in variants if v.result is not None]
    if rows:
        print_comparison(console, keys, rows, wide=wide)
    for variant in variants:
        if variant.result is None:
            click.echo(f"FAILED {variant.label}: {variant.error}")
            continue
        line = final_line(RunResult(variant.result), variant.wall_s, variant.path)
        click.echo(f"FINAL {variant.label} " + line[len("FINAL "):])
    if any(variant.result is None for variant in variants):
        sys.exit(1)
    _after_run(out_dir, report, fmt)


def _record_compare(out_dir: Path, variants: list[Any]) -> None:
    """config.json beside each variant's result.json, and the order of the variants
    (compare.json) for ``pfsim report``."""
    import json

    done = [v for v in variants if v.result is not None]
    for variant in done:
        write_config(OutputDir(variant.path.parent), variant.config)
    if done:
        order = {"keys": [key for key, _value in done[0].values],
                 "runs": [variant.path.parent.name for variant in done]}
        OutputDir(out_dir).write("compare.json", json.dumps(order, indent=2) + "\n")


COMPARISON_COLUMNS = (("work", 0), ("ratio", 0), ("compute_units", 1), ("compute ratio", 1),
                      ("accesses", 3), ("access ratio", 4), ("busy", 1), ("stalled", 1), ("idle", 4),
                      ("min_flt", 3), ("maj_flt", 5), ("host faults", 5), ("swap-ins", 2),
                      ("not_present", 2), ("page_ready", 3), ("sync_fallbacks", 4),
                      ("outcome", 0))
"""The columns of the comparison and their rank (console_tables: the highest rank is left
out first on a narrow terminal)."""


def print_comparison(console: Console, keys: list[str] | str,
                     rows: list[tuple[tuple[str, ...] | str, RunResult, float, Path]],
                     wide: bool = False) -> None:
    """One row per variant: work, ratio to the first, the same for compute units (the
    CPU-bound threads' progress, what published async-PF experiments count) and accesses,
    vCPU time split, faults, async PF."""
    from pfsim.console_tables import show

    keys = [keys] if isinstance(keys, str) else keys
    columns = [(key.rsplit(".", 1)[-1], "left", 0) for key in keys]
    columns += [(name, "left" if name == "outcome" else "right", rank)
                for name, rank in COMPARISON_COLUMNS]
    cells = []
    base: dict[str, int] = {}
    for values, result, _wall, _path in rows:
        values = (values,) if isinstance(values, str) else values
        totals = _totals(result)
        base = base or {key: totals[key] for key in ("work", "compute_units", "accesses")}
        vcpus = result.vcpus
        span = max(1, result["sim_time_ns"] * len(vcpus))
        apf = result.vm["async_pf"]
        host = result["host"]
        cells.append([*values, f"{totals['work']:,}", _ratio(totals, base, "work"),
                      f"{totals['compute_units']:,}", _ratio(totals, base, "compute_units"),
                      f"{totals['accesses']:,}", _ratio(totals, base, "accesses"),
                      f"{100 * sum(v['busy_ns'] for v in vcpus) / span:.1f}%",
                      f"{100 * sum(v['stalled_ns'] for v in vcpus) / span:.1f}%",
                      f"{100 * sum(v['idle_ns'] for v in vcpus) / span:.1f}%",
                      f"{totals['min_flt']:,}", f"{totals['maj_flt']:,}",
                      f"{host['ept_violations']:,}", f"{host['swap_ins']:,}",
                      f"{apf['not_present']:,}", f"{apf['page_ready']:,}",
                      f"{apf['sync_fallbacks']:,}", result.outcome])
    show(console, f"comparison over {' x '.join(keys)}", columns, cells, wide)
    print_paging_comparison(console, [key.rsplit(".", 1)[-1] for key in keys], rows)


PAGING_COLUMNS = ("guest swap-outs", "guest swap-ins", "pgsteal", "allocstall", "balloon",
                  "host swap-outs", "host swap-ins", "host frames ballooned",
                  "guest swap-outs of host-swapped", "host swap-ins for guest I/O",
                  "of which false reads", "kswapd CPU", "balloon CPU")


def print_paging_comparison(console: Console, names: list[str],
                            rows: list[tuple[tuple[str, ...] | str, RunResult, float, Path]]) -> None:
    """Guest reclaim beside host swapping, when a variant's guest reclaimed: the double-paging
    counters side by side."""
    memories = [result.vm["memory"] for _v, result, _w, _p in rows]
    if not any(m.get("pgscan_kswapd", 0) + m.get("pgscan_direct", 0)
               + m.get("balloon_inflated", 0) for m in memories):
        return
    table = Table(title="guest reclaim and double paging", title_justify="left")
    for column in names:
        table.add_column(column, justify="left")
    for column in PAGING_COLUMNS:
        table.add_column(column, justify="right")
    for (values, result, _wall, _path), memory in zip(rows, memories, strict=True):
        values = (values,) if isinstance(values, str) else values
        host = result["host"]
        table.add_row(*values, *(f"{n:,}" for n in (
            memory.get("swap_outs", 0), memory.get("swap_ins", 0), memory.get("pgsteal", 0),
            memory.get("allocstall", 0), memory.get("balloon_inflated", 0), host["swap_outs"],
            host["swap_ins"], host.get("balloon_freed_frames", 0),
            memory.get("swap_outs_host_swapped", 0), host.get("swap_ins_guest_io", 0),
            host.get("false_reads", 0))),
            format_time(memory.get("kswapd_cpu_ns", 0)),
            format_time(memory.get("balloon_cpu_ns", 0)))
    console.print(table)


def _ratio(totals: dict[str, int], base: dict[str, int], key: str) -> str:
    """``totals[key]`` over the first variant's, or "-" when the first variant has none."""
    return f"{totals[key] / base[key]:.3f}" if base[key] else "-"


def _totals(result: RunResult) -> dict[str, int]:
    totals = {"work": 0, "compute_units": 0, "accesses": 0, "min_flt": 0, "maj_flt": 0,
              "segv": 0}
    for p in result.processes.values():
        for key in totals:
            totals[key] += p[key]
    return totals


PROCESS_COLUMNS = (("process", 0), ("threads", 3), ("work", 0), ("accesses", 2),
                   ("compute_units", 2),
                   ("min_flt", 0), ("maj_flt", 0), ("segv", 2), ("cow copy/reuse", 4),
                   ("exit", 0))
"""The columns of the process table and their rank (left out highest first when narrow)."""


def print_summary(console: Console, result: RunResult, wide: bool = False) -> None:
    """Per-process and per-vCPU tables."""
    from pfsim.console_tables import show

    oom = result.vm["memory"]["oom_kills"]
    killed = f"; OOM killer: {oom} process{'es' if oom > 1 else ''} killed" if oom else ""
    columns = [(name, "left" if name in ("process", "exit") else "right", rank)
               for name, rank in PROCESS_COLUMNS]
    cells = []
    for name, p in result.processes.items():
        exit_text = p["exit"]
        if p["signal"]:
            exit_text += f" ({p['signal'].get('si_code', p['signal'].get('signal'))})"
        cells.append([name, str(p["threads"]), f"{p['work']:,}", f"{p['accesses']:,}",
                      f"{p['compute_units']:,}", f"{p['min_flt']:,}", f"{p['maj_flt']:,}", str(p["segv"]),
                      f"{p['cow_copies']}/{p['cow_reuses']}", exit_text])
    show(console, f"processes (VM outcome: {result.outcome}{killed})", columns, cells, wide)
    total = result["sim_time_ns"] or 1
    cpus = Table(title="vCPUs", title_justify="left")
    for column in ("vcpu", "busy", "idle", "stalled", "context switches"):
        cpus.add_column(column, justify="right")
    for v in result.vcpus:
        cpus.add_row(str(v["vcpu"]), f"{100 * v['busy_ns'] / total:.1f}%",
                     format_time(v["idle_ns"]), format_time(v["stalled_ns"]), f"{v['context_switches']:,}")
    console.print(cpus)
    print_reclaim(console, result)
    if result.vm.get("clusters"):
        print_clusters(console, result)
    if result.vm["panic"]:
        console.print(f"kernel panic: {result.vm['panic']}")


RECLAIM_COLUMNS = ("swap_outs", "swap_ins", "pgscan_kswapd", "pgscan_direct", "pgsteal",
                   "refaults", "allocstall", "oom_kills")


def print_reclaim(console: Console, result: RunResult) -> None:
    """The guest's reclaim counters, when it reclaimed or has a swap device."""
    memory = result.vm["memory"]
    if "pgsteal" not in memory or not (memory["pgscan_kswapd"] + memory["pgscan_direct"]
                                       or memory["swap_device"] != "none"):
        return
    table = Table(title=f"guest memory (swap: {memory['swap_device']})", title_justify="left")
    for column in RECLAIM_COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("kswapd CPU", justify="right")
    table.add_row(*(f"{memory[column]:,}" for column in RECLAIM_COLUMNS),
                  format_time(memory.get("kswapd_cpu_ns", 0)))
    console.print(table)


def print_clusters(console: Console, result: RunResult) -> None:
    """ALMOS-MKH counters per process, and the clusters' memory (docs/clusters.md)."""
    info = result.vm["clusters"]
    table = Table(title=f"clusters (mesh {info['mesh'][0]}x{info['mesh'][1]}, outcomes "
                        f"{', '.join(f'{k} {v:,}' for k, v in info['outcomes'].items())})",
                  title_justify="left")
    columns = ("false_pgfault_nr", "local_pgfault_nr", "global_pgfault_nr", "remote_accesses",
               "rpcs", "pte_lock_waits", "rwlock_waits")
    table.add_column("process")
    for column in ("false", "local", "global", "remote accesses", "rpcs", "pte lock waits",
                   "rwlock waits"):
        table.add_column(column, justify="right")
    for name, p in result.processes.items():
        table.add_row(name, *(f"{p.get(c, 0):,}" for c in columns))
    console.print(table)
    placed = Table(title="cluster memory", title_justify="left")
    for column in ("cluster", "vcpus", "allocations (whole run)", "free frames at the end"):
        placed.add_column(column, justify="right")
    for c in info["clusters"]:
        placed.add_row(str(c["cluster"]), ",".join(map(str, c["vcpus"])),
                       f"{c['frames_allocated_total']:,}", f"{c['free_frames']:,}")
    console.print(placed)


def final_line(result: RunResult, wall_s: float, path: Path) -> str:
    """The one parsable summary line that ends every run."""
    totals = _totals(result)
    fields = " ".join(f"{k}={v}" for k, v in totals.items())
    return (f"FINAL outcome={result.outcome} sim_time_ns={result['sim_time_ns']} {fields} "
            f"events={result['events']} wall_s={wall_s:.2f} result={path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: pfsim run CONFIG")
