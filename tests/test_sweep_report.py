"""``pfsim report`` and ``pfsim plot`` on a ``pfsim sweep`` directory: the summary with its
confidence intervals, the sweep figure, and one run per group for the per-run figures."""

from __future__ import annotations

import json
import math
import re
import statistics

import pandas as pd
import pytest
from chromium_page import find_browser, load
from test_report_html import FIGURE_CHECK, SMALL, cli, series_ids

import pfsim
from pfsim.plot import FIGURES
from pfsim.result_tables import find_runs

T_975_1 = 12.706204736174694
"""Student's t 0.975 quantile with one degree of freedom, tan(0.475 pi) (two seeds a group)."""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2 x 2 sweep of the small overcommit scenario (two modes, two memory limits), two
    seeds per group, run serially in this process, then ``pfsim report`` on it."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "small.toml").write_text(SMALL)
    (root / "s.toml").write_text(
        'base = "small.toml"\nseed = 5\nseeds = 2\n'
        '[axes]\n"hypervisor.async_pf" = ["off", "kvm"]\n'
        '"hypervisor.memory_limit" = ["12MiB", "16MiB"]\n')
    out = root / "out"
    pfsim.sweep(root / "s.toml", out, serial=True)
    return out


def test_one_run_per_group_its_lowest_replicate(swept):
    points = pd.read_csv(swept / "sweep.csv")
    runs = find_runs(swept)
    assert list(runs) == ["off, 12MiB", "off, 16MiB", "kvm, 12MiB", "kvm, 16MiB"]
    for label, result in runs.items():
        mode, limit = label.split(", ")
        first = points[(points["hypervisor.async_pf"] == mode)
                       & (points["hypervisor.memory_limit"] == limit)
                       & (points["replicate"] == 0)]
        assert len(first) == 1 and result["seed"] == int(first["seed"].iloc[0])


def test_report_shows_mean_and_interval_of_every_group(swept, capsys):
    code, out, err = cli(capsys, "report", str(swept))
    assert code == 0, err
    page = (swept / "report.html").read_text()
    points = pd.read_csv(swept / "sweep.csv")
    table = page[page.index('<table id="table-sweep"'):]
    table = table[:table.index("</table>")]
    header = re.findall(r"<th>([^<]*)</th>", table)
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
    assert len(rows) == 4
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        group = points[(points["hypervisor.async_pf"] == cells["hypervisor.async_pf"])
                       & (points["hypervisor.memory_limit"] == cells["hypervisor.memory_limit"])]
        work = [float(w) for w in group["work"]]
        mean = statistics.fmean(work)
        half = T_975_1 * statistics.stdev(work) / math.sqrt(2)  # hand: t * s / sqrt(n)
        assert cells["work"] == f"{mean:,.0f} ± {half:,.0f}"
        assert cells["n"] == "2" and cells["failed"] == "0"
    # the sweep figure: one series per memory limit (the second axis) in each panel
    ids = series_ids(page)
    assert sorted(i for i in ids if i.startswith("series-sweep-work-")) == [
        "series-sweep-work-12MiB", "series-sweep-work-16MiB"]
    # and the per-run figures show one run per group
    assert sorted(i for i in ids if re.fullmatch(r"series-work-[^-]*", i)) == sorted(
        f"series-work-{mode},_{limit}" for mode in ("off", "kvm") for limit in ("12MiB", "16MiB"))
    assert page.count("<figure") == len(FIGURES) + 1


def test_plot_sweep_figure_and_refusal(swept, tmp_path, capsys):
    code, out, err = cli(capsys, "plot", str(swept), "--figure", "sweep",
                         "--out", str(tmp_path / "s.svg"))
    assert code == 0, err
    assert "series-sweep-compute_units-16MiB" in (tmp_path / "s.svg").read_text()
    one = next(iter(find_runs(swept).values()))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(one))
    code, out, err = cli(capsys, "plot", str(tmp_path / "run"), "--figure", "sweep",
                         "--out", str(tmp_path / "x.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--figure sweep needs a directory written by pfsim sweep" in err
    assert not (tmp_path / "x.png").exists()


BROWSER = find_browser()


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get "
                                            "install chromium)")
def test_sweep_report_loads_in_a_browser(swept, capsys):
    cli(capsys, "report", str(swept))
    errors, value = load(BROWSER, (swept / "report.html").as_uri(), FIGURE_CHECK)
    assert errors == []
    figures = json.loads(value)
    assert [f["id"] for f in figures] == ["fig-sweep", *(f"fig-{name}" for name in FIGURES)]
    for figure in figures:
        assert figure["width"] > 300 and figure["height"] > 100 and figure["series"] > 0, figure
