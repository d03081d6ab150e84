"""The nightly's reports under RESULTS/nightly/NIGHT/: report.md and report.html (the verdict,
the regressed metrics, the measured ones closest to their threshold, what is new or was not run),
junit.xml (one test case per series) and the trend plots (trend_FAMILY.png: memory, time, counts).
"""
from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import baseline as bl
from orchestrator.nightly_suite import Suite
from orchestrator.render import html_images, html_page, html_section, md_images, md_section

if TYPE_CHECKING:
    from orchestrator.nightly import NightlyResult

def _finding_row(f: bl.Finding) -> list:
    return [f.key, f.status, bl.fmt_value(f.baseline) if f.baseline is not None else "",
            bl.fmt_value(f.current) if f.current is not None else "",
            "" if f.change is None else f"{f.change:+.6g}", "" if f.change_pct is None else f"{f.change_pct:+.2f}%",
            "" if f.threshold is None else f"{f.threshold:.4g}", "" if not f.noise else f"{f.noise:.4g}", f.why]


FINDING_HEAD = ["metric", "status", "baseline", "tonight", "change", "change %", "allowed", "noise", "why"]


def write_reports(result: NightlyResult, suite: Suite, nights: list[bl.Night]) -> None:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    images = plot_trends(nights, out)
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    meta = [["suite", f"{suite.name} ({suite.path})"], ["night", result.nightly_id],
            ["verdict", result.status], ["baseline", result.baseline_id or "none (numbers accepted)"],
            ["runs", ", ".join(f"{k}: {v}" for k, v in result.run_ids.items())],
            ["metrics", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]] + \
        [["note", n] for n in result.notes]
    bad = [f for f in result.findings if f.status in ("regressed", "missing")]
    watch = [f for f in result.findings if f.status == "ok" and f.noise]   # measured: how close they came
    watch = sorted(watch, key=lambda f: -abs(f.change or 0) / (f.threshold or 1))[:20]
    other = [f for f in result.findings if f.status in ("new", "not run")][:200]
    sections = [("Night", ["", ""], [list(r) for r in meta]),
                ("Regressed", FINDING_HEAD, [_finding_row(f) for f in bad]),
                ("Measured metrics closest to their threshold", FINDING_HEAD, [_finding_row(f) for f in watch]),
                ("New or not run tonight (at most 200)", FINDING_HEAD, [_finding_row(f) for f in other])]
    md = [f"# mvpfarm nightly {result.nightly_id}: {result.status}", ""]
    body = [f"<h1>mvpfarm nightly {html.escape(result.nightly_id)}: {html.escape(result.status)}</h1>"]
    for title, head, rows in sections:
        md += md_section(title, head, rows)
        body += html_section(title, head, rows, row_class=lambda r: "bad" if r[1] in ("regressed", "missing") else "")
    if images:
        shown = [(p.stem, p.name) for p in images]
        md += ["## Trends (per metric family, a small panel per model and target: change against its first "
               "night, %)", ""] + md_images(shown) + [""]
        body += ["<h2>Trends</h2>"] + html_images(shown)
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text(html_page(f"nightly {result.nightly_id}", body))
    write_junit(result, suite, out / "junit.xml")


def write_junit(result: NightlyResult, suite: Suite, path: Path) -> Path:
    """One test case per series (entry, variant, target); a failure names its regressed metrics."""
    by_series: dict[str, list[bl.Finding]] = {}
    for f in result.findings:
        by_series.setdefault(f.series, []).append(f)
    root = ET.Element("testsuites", name=f"mvpfarm nightly {suite.name}")
    cases = []
    for series, fs in sorted(by_series.items()):
        entry, _, rest = series.partition("/")
        case = ET.Element("testcase", classname=f"{suite.name}.{entry}", name=rest)
        bad = [f for f in fs if f.status in ("regressed", "missing")]
        if bad:
            fail = ET.SubElement(case, "failure", message=f"{len(bad)} metric(s) regressed: "
                                 + ", ".join(f.path for f in bad), type="regression")
            fail.text = "\n".join(f.describe() for f in bad)
        elif all(f.status == "not run" for f in fs):
            ET.SubElement(case, "skipped", message=fs[0].why or "not run tonight")
        cases.append((case, bool(bad)))
    ts = ET.SubElement(root, "testsuite", name=f"{suite.name} {result.nightly_id}", tests=str(len(cases)),
                       failures=str(sum(b for _, b in cases)), errors="0",
                       skipped=str(sum(1 for c, _ in cases if c.find("skipped") is not None)))
    for case, _ in cases:
        ts.append(case)
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return path


# the report shows the trends by family, in this order: memory, then time, then counts
FAMILIES = (("memory", ("ram_bytes", "flash_bytes")),
            ("time", ("latency_s", "accelerator_cycles", "cpu_cycles")),
            ("counts", ("ops", "macs", "n_layers", "n_unsupported", "mvp_layers")))
OTHER = "other"           # a metric of no family above gets a plot of its own family
# one colour per metric of a family (colour-blind-safe Okabe-Ito), so a family's legend never repeats one
METRIC_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")
MOVED_COLOUR = "#c0392b"
N_COLS = 6


def family_of(metric: str) -> str:
    for name, metrics in FAMILIES:
        if metric in metrics:
            return name
    return OTHER


def _metric_order(metric: str) -> tuple[int, int, str]:
    for i, (_, metrics) in enumerate(FAMILIES):
        if metric in metrics:
            return i, metrics.index(metric), metric
    return len(FAMILIES), 0, metric


def _series_title(series: str) -> str:
    """`zoo/anomaly_detection/simulator/mvp/board` -> `zoo/anomaly_detection` over the target's name."""
    from orchestrator.target_names import target_name
    parts = series.split("/")
    for n in (3, 2):          # a target key is simulator/ACC/TIMING or board/KIND[/ACC]
        head, tail = "/".join(parts[:-n]), "/".join(parts[-n:])
        if head and tail.split("/")[0] in ("simulator", "board"):
            return f"{head}\n{target_name(tail)}"
    return series


def _night_label(nightly_id: str) -> str:
    """`suite-20250104T030000Z` -> `01-04 03:00`: short enough for an axis."""
    import re
    stamp = nightly_id.rsplit("-", 1)[-1]
    m = re.fullmatch(r"\d{4}(\d\d)(\d\d)T(\d\d)(\d\d)\d\dZ", stamp)
    return f"{m[1]}-{m[2]} {m[3]}:{m[4]}" if m else stamp


def trend_changes(nights: list[bl.Night]) -> dict[str, dict[str, dict[str, list[tuple[int, float]]]]]:
    """family -> series -> metric -> [(night index, change against the series' first night in the
    window, %; against 1 for a number that starts at 0)] for every model-level number (per-layer
    ones are too many to plot), families and their metrics in report order, series sorted."""
    points: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for i, night in enumerate(nights):
        for key, m in (night.metrics or {}).items():
            s, _, path = key.rpartition(":")
            if "layers[" in path or isinstance(m.value, str):
                continue
            points.setdefault(path, {}).setdefault(s, []).append((i, float(m.value)))
    out: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for metric in sorted(points, key=_metric_order):
        for s, pts in points[metric].items():
            first = pts[0][1]
            # a count that starts at 0 (unsupported layers) moves by 100% per unit, not by infinity
            change = [(i, 100.0 * (v - first) / max(abs(first), 1.0) if first == 0 else 100.0 * (v / first - 1))
                      for i, v in pts]
            out.setdefault(family_of(metric), {}).setdefault(s, {})[metric] = change
    return {f: dict(sorted(by_series.items())) for f, by_series in out.items()}


def trend_figure(family: str, by_series: dict[str, dict[str, list[tuple[int, float]]]], labels: list[str]):
    """One family's small multiples: a panel per series (a model on a target), every panel on the
    same axes, a line per metric of the family in the colour its one legend entry gives it; a
    panel whose numbers moved has a red title, so the one series that changed stands out."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    metrics = sorted({m for per in by_series.values() for m in per}, key=_metric_order)
    colour = {m: METRIC_COLOURS[i % len(METRIC_COLOURS)] for i, m in enumerate(metrics)}
    names = list(by_series)
    n_cols = min(N_COLS, len(names))
    n_rows = -(-len(names) // n_cols)
    y_top = max([1.0] + [abs(c) for per in by_series.values() for pts in per.values() for _, c in pts]) * 1.15
    # fixed margins in inches (tight_layout would draw the figure once more to measure them)
    panel_w, panel_h, gap_w, gap_h, left, right, top_in, bottom = 2.3, 1.25, 0.3, 0.55, 0.6, 0.15, 1.05, 0.75
    width = left + right + n_cols * panel_w + (n_cols - 1) * gap_w
    height = top_in + bottom + n_rows * panel_h + (n_rows - 1) * gap_h
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), sharex=True, sharey=True, squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top_in / height,
                        wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    for ax, s in zip(axes.flat, names):
        moved = any(abs(c) > 1e-9 for pts in by_series[s].values() for _, c in pts)
        ax.axhline(0, color="#888", linewidth=0.6)
        for m in metrics:
            pts = by_series[s].get(m)
            if pts:
                ax.plot([i for i, _ in pts], [c for _, c in pts], marker="o", markersize=3, linewidth=1.4,
                        color=colour[m], label=m)
        ax.set_title(_series_title(s), fontsize=7.5, color=MOVED_COLOUR if moved else "black",
                     fontweight="bold" if moved else "normal")
        ax.set_ylim(-y_top, y_top)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    last_row = {len(names) - 1 - k for k in range(n_cols)}       # the lowest visible panel of each column
    for k, ax in enumerate(list(axes.flat)[:len(names)]):
        if k in last_row:
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("change (%)", fontsize=8)
    fig.legend(handles=[Line2D([], [], color=colour[m], marker="o", markersize=4, label=m) for m in metrics],
               loc="upper left", bbox_to_anchor=(0.0, 1 - 0.38 / height), ncol=len(metrics),
               fontsize=8, frameon=False)
    fig.suptitle(f"{family} over the last {len(labels)} night(s): change against each series' first night "
                 "(red title: it moved)", fontsize=10, x=0.01, y=1 - 0.15 / height, ha="left", va="top")
    return fig


def plot_trends(nights: list[bl.Night], out_dir: Path) -> list[Path]:
    """trend_FAMILY.png for each metric family (memory, time, counts, then any other), the small
    multiples of `trend_figure`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [_night_label(n.nightly_id) for n in nights]
    paths = []
    for family, by_series in trend_changes(nights).items():
        fig = trend_figure(family, by_series, labels)
        p = out_dir / f"trend_{family}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
