"""``pfsim report``, ``pfsim run --report / --format``, ``pfsim plot`` and ``pfsim.tables``:
what a user gets from a run directory and from a ``--compare`` directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from chromium_page import find_browser, load

import pfsim
from pfsim.cli import main
from pfsim.plot import FIGURES

SMALL = """
[sim]
seed = 3
duration = "40ms"
sample = "4ms"

[guest]
vcpus = 2
memory = "64MiB"

[hypervisor]
enabled = true
host_cpus = 2
memory_limit = "16MiB"
reclaim = "lru"
async_pf = "off"
swap = { device = "nvme" }

[[processes]]
name = "writers"
vsegs = [{ name = "a", type = "anon", size = "32MiB" }]
[[processes.threads]]
count = 2
steps = [{ op = "access", vseg = "a", pattern = "uniform", duration = "10s", write_ratio = 1.0, think = "2us" }]

[[processes]]
name = "counters"
[[processes.threads]]
count = 2
steps = [{ op = "compute", duration = "10s", unit = "1us" }]
"""
MODES = ("off", "kvm", "s390")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """``pfsim run small.toml --compare hypervisor.async_pf=off,kvm,s390 --report --format
    csv`` (run once for the module)."""
    root = tmp_path_factory.mktemp("compare")
    (root / "small.toml").write_text(SMALL)
    out = root / "cmp"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(root / "small.toml"), "--compare",
              "hypervisor.async_pf=" + ",".join(MODES), "--workers", "1", "--out", str(out),
              "--report", "--format", "csv"])
    assert exit_.value.code == 0
    return out


def series_ids(page: str) -> list[str]:
    return re.findall(r'id="(series-[^"]*)"', page)


def test_compare_report_has_one_series_per_mode(compared):
    page = (compared / "report.html").read_text()
    ids = series_ids(page)
    # work: one line per mode in the all-tasks panel and in each process's panel
    assert [i for i in ids if re.fullmatch(r"series-work-[a-z0-9]+", i)] == [
        f"series-work-{mode}" for mode in MODES]
    for process in ("writers", "counters"):
        assert sorted(i for i in ids if i.endswith(f"-process-{process}")) == sorted(
            f"series-work-{mode}-process-{process}" for mode in MODES)
    # host memory: one free-frames line per mode; vCPU states: one stacked panel per mode
    assert [i for i in ids if i.endswith("-free")] == [f"series-memory-{m}-free" for m in MODES]
    for mode in MODES:
        assert sum(i.startswith(f"series-vcpus-{mode}-") for i in ids) == 4
    # async round trips exist only for kvm and s390: one CDF line each
    assert sorted(i for i in ids if i.startswith("series-latency-async-")) == [
        "series-latency-async-kvm", "series-latency-async-s390"]
    assert page.count("<figure") == len(FIGURES)
    # the comparison table: the counting threads' compute units and their ratio to the first
    table = page[page.index('<table id="table-comparison"'):]
    table = table[:table.index("</table>")]
    header = re.findall(r"<th>([^<]*)</th>", table)
    units = {}
    for row in table.split("<tr>")[2:]:
        cells = dict(zip(header, re.findall(r"<td[^>]*>([^<]*)</td>", row), strict=True))
        result = json.loads((compared / f"hypervisor.async_pf={cells['run']}" / "result.json")
                            .read_text())
        units[cells["run"]] = result["vms"]["vm0"]["processes"]["counters"]["compute_units"]
        assert cells["compute units"] == f"{units[cells['run']]:,}"
        assert cells["compute ratio"] == f"{round(units[cells['run']] / units['off'], 3):,.3f}"
    assert list(units) == list(MODES)


def test_report_is_self_contained(compared):
    page = (compared / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", page))


def test_compare_writes_config_order_and_tables(compared):
    assert json.loads((compared / "compare.json").read_text())["runs"] == [
        f"hypervisor.async_pf={mode}" for mode in MODES]
    for mode in MODES:
        config = json.loads((compared / f"hypervisor.async_pf={mode}" / "config.json")
                            .read_text())
        assert config["hypervisor"]["async_pf"] == mode
    tasks = pd.read_csv(compared / "tasks.csv")
    assert list(tasks["run"].unique()) == list(MODES)
    frames = pfsim.tables(compared)
    for mode in MODES:
        result = json.loads((compared / f"hypervisor.async_pf={mode}" / "result.json")
                            .read_text())
        rows = frames.tasks[frames.tasks["run"] == mode].set_index("task")
        for name, task in result["vms"]["vm0"]["tasks"].items():
            assert rows.loc[name, "work"] == task["work"]
        # per-interval changes add up to the cumulative count at each sample
        work = frames.intervals.query("run == @mode and kind == 'task' and metric == 'work'")
        for name, group in work.groupby("name"):
            assert group["value"].cumsum().tolist() == group["total"].tolist()
            assert group["total"].iloc[-1] == result["vms"]["vm0"]["tasks"][name]["work"]


def test_intervals_hold_hand_computed_work(tmp_path):
    """One thread computing 1 us units from t = 5 us (one context switch): 995 units in the
    first millisecond, 1000 in each of the next three; the vCPU is busy all along."""
    data = {"sim": {"duration": "4ms", "sample": "1ms"},
            "guest": {"vcpus": 1, "memory": "64MiB", "sched": {"context_switch": "5us"}},
            "processes": [{"name": "c", "threads": [{"stack": False, "steps": [
                {"op": "compute", "units": 100_000, "unit": "1us"}]}]}]}
    result = pfsim.run(data).to_dict()
    frames = pfsim.tables(runs={"one": result})
    work = frames.intervals.query("kind == 'task' and metric == 'work'")
    assert work["value"].tolist() == [995, 1000, 1000, 1000]
    assert work["start_ns"].tolist() == [0, 1_000_000, 2_000_000, 3_000_000]
    busy = frames.intervals.query("kind == 'vcpu' and metric == 'busy_ns'")
    assert busy["value"].tolist() == [1_000_000] * 4


def test_parquet_tables_of_one_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.toml").write_text(SMALL)
    code, out, err = cli(capsys, "run", "small.toml", "--out", "one", "--quiet", "--format",
                         "parquet")
    assert code == 0, err
    for name in ("tasks", "processes", "vcpus", "intervals"):
        assert f"wrote one/{name}.parquet" in out
    vcpus = pd.read_parquet(tmp_path / "one" / "vcpus.parquet")
    result = json.loads((tmp_path / "one" / "result.json").read_text())
    assert vcpus["busy_ns"].tolist() == [v["busy_ns"] for v in result["vms"]["vm0"]["vcpus"]]
    intervals = pd.read_parquet(tmp_path / "one" / "intervals.parquet")
    assert sorted(intervals["t_ns"].unique()) == [4_000_000 * k for k in range(1, 11)]


def test_plot_writes_png_and_svg(compared, tmp_path, capsys):
    code, _out, err = cli(capsys, "plot", str(compared), "--figure", "vcpus", "--out",
                          str(tmp_path / "v.png"))
    assert code == 0, err
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _out, err = cli(capsys, "plot", str(compared / "hypervisor.async_pf=kvm"), "--figure",
                          "latency", "--out", str(tmp_path / "l.svg"))
    assert code == 0, err
    svg = (tmp_path / "l.svg").read_text()
    assert "<svg" in svg and 'id="series-latency-async-hypervisor.async_pf=kvm"' in svg


def test_bad_plot_and_report_arguments_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = cli(capsys, "report", str(empty))
    assert code == 2 and err.count("\n") == 1 and "no result.json" in err
    assert list(empty.iterdir()) == []
    code, _out, err = cli(capsys, "plot", str(empty), "--figure", "work", "--out",
                          str(tmp_path / "x.jpg"))
    assert code == 2 and err.count("\n") == 1 and ".png or .svg" in err
    assert not (tmp_path / "x.jpg").exists()


def test_a_stale_config_json_is_not_shown(compared, tmp_path, capsys):
    """config.json from another config (a reused --out) is not presented as this run's."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    kvm = compared / "hypervisor.async_pf=kvm"
    (run_dir / "result.json").write_text((kvm / "result.json").read_text())
    other = json.loads((kvm / "config.json").read_text())
    other["guest"]["vcpus"] = 3
    (run_dir / "config.json").write_text(json.dumps(other))
    code, _out, err = cli(capsys, "report", str(run_dir))
    assert code == 0, err
    page = (run_dir / "report.html").read_text()
    assert "No config.json matching these results" in page
    (run_dir / "config.json").write_text((kvm / "config.json").read_text())
    cli(capsys, "report", str(run_dir))
    assert "guest: 2 vCPUs" in (run_dir / "report.html").read_text()


BROWSER = find_browser()
FIGURE_CHECK = """JSON.stringify(Array.from(document.querySelectorAll("figure")).map(f => {
  const svg = f.querySelector("svg");
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.id, width: box.width, height: box.height,
          series: f.querySelectorAll("[id^=series-]").length};
}))"""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get "
                                            "install chromium)")
def test_report_loads_in_a_browser_without_errors_and_shows_every_figure(compared):
    errors, value = load(BROWSER, (compared / "report.html").as_uri(), FIGURE_CHECK)
    assert errors == []
    figures = json.loads(value)
    assert [f["id"] for f in figures] == [f"fig-{name}" for name in FIGURES]
    for figure in figures:
        assert figure["width"] > 300 and figure["height"] > 100, figure
        assert figure["series"] > 0, figure


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
def test_the_browser_check_sees_errors(tmp_path):
    """The harness can fail: a page with a script error, a console error and a missing
    image reports all three."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                    '<script>console.error("boom"); undefinedFunction();</script>'
                    "</body></html>")
    errors, value = load(BROWSER, page.as_uri(), "document.querySelectorAll('figure').length")
    assert value == 0
    text = "\n".join(errors)
    assert "boom" in text and "undefinedFunction" in text and "load failed" in text


TINY = """
[guest]
vcpus = 2
memory = "16MiB"
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", pattern = "sequential", stride = "4KiB", accesses = 10 }]
"""
STEP = "processes[0].threads[0].steps[0].accesses"


def test_a_directory_reports_what_was_last_written_there(tmp_path, capsys, monkeypatch):
    """The README's order: a plain run, then two comparisons into the same --out.  The
    report and tables of each comparison hold its own variants (not the plain run's
    result.json beside them, nor the variants of the comparison before); a plain run written
    last is reported alone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text(TINY)
    assert cli(capsys, "run", "t.toml", "--out", "o", "--quiet")[0] == 0
    assert cli(capsys, "run", "t.toml", "--out", "o", "--compare", "guest.vcpus=1,2",
               "--workers", "1")[0] == 0
    assert list(pfsim.tables("o").tasks["run"].unique()) == ["1", "2"]
    code, _, err = cli(capsys, "run", "t.toml", "--out", "o", "--compare", f"{STEP}=20,10",
                       "--workers", "1", "--format", "csv")
    assert code == 0, err
    tasks = pd.read_csv(tmp_path / "o" / "tasks.csv", dtype={"run": str})
    assert list(tasks["run"].unique()) == ["20", "10"]
    assert dict(zip(tasks["run"], tasks["accesses"], strict=True)) == {"20": 20, "10": 10}
    assert cli(capsys, "run", "t.toml", "--out", "o", "--quiet")[0] == 0
    assert list(pfsim.tables("o").tasks["run"].unique()) == ["o"]
