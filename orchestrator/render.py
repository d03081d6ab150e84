"""Markdown and HTML building blocks of every report the orchestrator writes (the sweep report,
`compare`, `nightly`): tables, titled sections, embedded images, the HTML page and its style,
and the percentage cell. Each report owns its content; how a table or a page looks is owned here.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence

# row classes html_table's row_class may give: a failure in red, a pass in green
_STYLE = ("body{{font-family:sans-serif;max-width:{width}px;margin:2em auto}}table{{border-collapse:collapse}}"
          "td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}"
          "tr.bad td{{background:#fdd}}tr.ok td{{background:#efe}}")
NONE = "(none)"                          # what a section without rows says


def pct(value: float | None, signed: bool = True) -> str:
    """A percentage cell: +1.2% (or 1.2% unsigned); n/a when there is no value."""
    if value is None:
        return "n/a"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def md_table(head: Sequence, rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(head: Sequence, rows: Iterable[Sequence], row_class: Callable[[Sequence], str] | None = None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"]
    for r in rows:
        cls = row_class(r) if row_class else ""
        out.append((f'<tr class="{cls}">' if cls else "<tr>")
                   + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
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
