"""Markdown and HTML building blocks of every report the orchestrator writes (the sweep report,
`compare`, `nightly`): tables, titled sections, embedded images, the HTML page and its style,
and the percentage cell. Each report owns its content; how a table or a page looks is owned here.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence

# row classes html_table's row_class may give: a failure in red, a pass in green
# text left, numbers (with their units) right: html_table marks a numeric cell with class "num"
_STYLE = ("body{{font-family:sans-serif;max-width:{width}px;margin:2em auto}}table{{border-collapse:collapse}}"
          "td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}td.num,th.num{{text-align:right;"
          "font-variant-numeric:tabular-nums;white-space:nowrap}}img{{max-width:100%}}"
          "tr.bad td{{background:#fdd}}tr.ok td{{background:#efe}}tr.base td{{font-weight:bold}}")
# a number, signed or not, with thousands separators and an optional unit, or a count like 3/4
_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*(\.\d+)?|\.\d+)(e[-+]?\d+)?\s*(%|ms|us|s|kB|KB|B|MB|x|MHz)?"
                      r"(\s*\([-+]?\d+\))?$|^\d+/\d+$")


def is_numeric(cell) -> bool:
    """A cell that holds a number (with its unit): right-aligned in every table."""
    return isinstance(cell, (int, float)) and not isinstance(cell, bool) or bool(_NUMERIC.match(str(cell).strip()))
NONE = "(none)"                          # what a section without rows says


def pct(value: float | None, signed: bool = True) -> str:
    """A percentage cell: +1.2% (or 1.2% unsigned); n/a when there is no value."""
    if value is None:
        return "n/a"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def _numeric_columns(head: Sequence, rows: list[Sequence]) -> list[bool]:
    """A column is numeric when every non-blank cell of it is."""
    return [bool(col) and all(is_numeric(c) for c in col)
            for col in ([c for c in (r[i] for r in rows) if str(c).strip() != ""] for i in range(len(head)))]


def md_table(head: Sequence, rows: Iterable[Sequence]) -> str:
    rows = list(rows)
    align = ["---:" if n else "---" for n in _numeric_columns(head, rows)]
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(head: Sequence, rows: Iterable[Sequence], row_class: Callable[[Sequence], str] | None = None) -> str:
    rows = list(rows)
    numeric = _numeric_columns(head, rows)
    out = ["<table>", "<tr>" + "".join(f'<th class="num">{html.escape(str(h))}</th>' if n else
                                       f"<th>{html.escape(str(h))}</th>" for h, n in zip(head, numeric)) + "</tr>"]
    for r in rows:
        cls = row_class(r) if row_class else ""
        out.append((f'<tr class="{cls}">' if cls else "<tr>")
                   + "".join(f'<td class="num">{html.escape(str(c))}</td>' if n else f"<td>{html.escape(str(c))}</td>"
                             for c, n in zip(r, numeric)) + "</tr>")
    return "\n".join(out + ["</table>"])


def md_section(title: str, head: Sequence, rows: list) -> list[str]:
    """A titled table as Markdown lines; a section without rows says so."""
    return [f"## {title}", "", md_table(head, rows) if rows else NONE, ""]


def html_section(title: str, head: Sequence, rows: list, row_class=None) -> list[str]:
    return [f"<h2>{html.escape(title)}</h2>", html_table(head, rows, row_class) if rows else f"<p>{NONE}</p>"]


def md_images(images: Iterable[tuple[str, str]]) -> list[str]:
    """[(alt text, file name)] as Markdown image lines."""
    return [f"![{alt}]({name})" for alt, name in images]


def html_images(images: Iterable[tuple[str, str]]) -> list[str]:
    return [f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>' for alt, name in images]


def html_page(title: str, body: list[str], max_width_px: int = 1200) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE.format(width=max_width_px)}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")
