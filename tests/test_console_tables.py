"""Console tables fit the terminal: fewer columns when narrow, all with --wide, no cell cut."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from pfsim.cli import main
from pfsim.console_tables import fitted, table_width

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COLUMNS = [("name", "left", 0), ("a", "right", 2), ("b", "right", 1), ("c", "right", 2)]
ROWS = [["alpha", "1,000", "22", "333"], ["b", "4", "55,555", "6"]]


def rendered(table, width: int = 200) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def test_table_width_is_what_rich_draws():
    """Widths 5, 5, 6, 3 (the longest cell or header of each column): 1 + (5+3) + (5+3) +
    (6+3) + (3+3) = 32 cells, as rich draws it."""
    table, hidden, _ = fitted("t", COLUMNS, ROWS, 200)
    assert hidden == 0
    assert table_width([5, 5, 6, 3]) == 32
    assert max(cell_len(line) for line in rendered(table)[1:]) == 32


def test_the_highest_rank_goes_first_rightmost_first():
    """At 31 cells one column must go: rank 2 holds a and c, the rightmost (c) goes (32 - 6 =
    26); at 25, a goes too (26 - 8 = 18); rank 0 stays whatever the width."""
    table, hidden, _ = fitted("t", COLUMNS, ROWS, 31)
    assert hidden == 1 and [c.header for c in table.columns] == ["name", "a", "b"]
    table, hidden, _ = fitted("t", COLUMNS, ROWS, 25)
    assert hidden == 2 and [c.header for c in table.columns] == ["name", "b"]
    table, hidden, _ = fitted("t", COLUMNS, ROWS, 5)
    assert [c.header for c in table.columns] == ["name"]
    table, hidden, _ = fitted("t", COLUMNS, ROWS, 5, wide=True)
    assert hidden == 0


def test_a_cell_too_long_folds_instead_of_being_cut():
    table, _, _ = fitted("t", [("name", "left", 0)], [["a-process-name-of-forty-characters-xx"]],
                      20)
    lines = rendered(table, width=20)
    assert not any("…" in line for line in lines)
    assert "".join(line.strip("│ ") for line in lines if line.startswith("│")) == \
        "a-process-name-of-forty-characters-xx"


def quickstart(capsys, monkeypatch, tmp_path, *extra: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(EXAMPLES / "quickstart.toml"), "--out", str(tmp_path / "q"), *extra])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_the_quickstart_fits_80_columns_without_cutting_a_cell(capsys, monkeypatch, tmp_path):
    out = quickstart(capsys, monkeypatch, tmp_path)
    tables = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables and all(cell_len(line) <= 80 for line in tables)
    assert "…" not in out
    result = json.loads((tmp_path / "q" / "result.json").read_text())
    for name, process in result["vms"]["vm0"]["processes"].items():  # every cell whole
        row = next(line for line in tables if line.startswith(f"│ {name} "))
        for key in ("work", "accesses", "min_flt", "maj_flt"):
            assert f" {process[key]:,} │" in row, (name, key)
    assert "cow copy/reuse" not in out and "--wide shows every column" in out
    wide = quickstart(capsys, monkeypatch, tmp_path, "--wide")
    assert "cow copy/reuse" in wide and "--wide shows" not in wide
