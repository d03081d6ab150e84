"""Tables for the terminal: rich tables rendered to plain text, so that columns stay aligned
whatever a cell holds (a long run id, a long reason), on a terminal and in a log file alike.

Text columns are left-aligned, numbers right-aligned; cells are never parsed as rich markup, so
a variant or an error that contains brackets prints as it is.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

WIDTH = 200         # wide enough for every table here: a log file has no terminal width


def table(head: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[bool] | None = None,
          title: str | None = None) -> str:
    """The rows under `head` as aligned text, under `title`; `numeric[i]` right-aligns column i
    (default: left)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    numeric = list(numeric or [False] * len(head))
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for h, right in zip(head, numeric):
        t.add_column(Text(str(h)), justify="right" if right else "left", overflow="fold")
    for r in rows:
        t.add_row(*(Text("" if c is None else str(c)) for c in r))
    out = io.StringIO()
    Console(file=out, width=WIDTH, color_system=None, highlight=False, emoji=False).print(t)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    return "\n".join(([title] if title else []) + lines) + "\n"     # a title as wide as it needs
