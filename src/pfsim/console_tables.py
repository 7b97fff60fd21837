"""Console tables that fit the terminal: the least important columns are left out until the
table fits the console's width (``--wide`` keeps them all), and no cell is ever cut short
(a cell too long for its column folds onto the next line instead of ending in "...").

A column is ``(name, justify, rank)``: rank 0 is always shown; above 0, the highest rank goes
first, then the next (the rightmost first among equal ranks).
"""

from __future__ import annotations

import os

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

Column = tuple[str, str, int]


def table_width(widths: list[int]) -> int:
    """Width of a rich table with the default box and padding: a border, then one space,
    the cell, one space and a border per column."""
    return 1 + sum(w + 3 for w in widths)


def fitted(title: str, columns: list[Column], rows: list[list[str]], width: int,
           wide: bool = False) -> tuple[Table, int, int]:
    """The table with the columns that fit in ``width`` cells (all with ``wide``); returns
    it, how many columns were left out, and the width it needs to show every cell whole."""
    keep = list(range(len(columns)))
    widths = [max([cell_len(columns[i][0]), *(cell_len(row[i]) for row in rows)])
              for i in range(len(columns))]
    order = sorted((i for i in keep if columns[i][2] > 0), key=lambda i: (-columns[i][2], -i))
    while not wide and order and table_width([widths[i] for i in keep]) > width:
        keep.remove(order.pop(0))
    table = Table(title=title, title_justify="left")
    for i in keep:
        name, justify, _rank = columns[i]
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table, len(columns) - len(keep), table_width([widths[i] for i in keep])


def show(console: Console, title: str, columns: list[Column], rows: list[list[str]],
         wide: bool = False) -> None:
    """Print the fitted table, and a line saying how to see the columns left out."""
    table, hidden, needed = fitted(title, columns, rows, console.width, wide)
    if needed > console.width:  # --wide: the whole table, wider than the terminal
        saved = console.width
        console.width = needed
        console.print(table)
        console.width = saved
    else:
        console.print(table)
    if hidden:
        console.print(f"({hidden} column{'s' if hidden > 1 else ''} left out at this width "
                      f"of {console.width}; --wide shows every column)")


def output_console(pipe_width: int) -> Console:
    """The console of a command's tables: the terminal's width on a terminal, else the
    ``COLUMNS`` environment variable, else ``pipe_width``."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=pipe_width)
    return console
