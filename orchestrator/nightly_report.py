"""The nightly's reports under RESULTS/nightly/NIGHT/: report.md and report.html (the verdict,
the regressed metrics, the measured ones closest to their threshold, what is new or was not run),
junit.xml (one test case per series) and the trend plots (trend_METRIC.png).
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
        md += ["## Trends (one small panel per model and target: change against its first night shown, %)", ""] + md_images(shown) + [""]
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


# the report shows the trends by family: memory, then time, then counts
FAMILIES = (("memory", ("flash_bytes", "ram_bytes")),
            ("time", ("latency_s", "accelerator_cycles", "cpu_cycles")),
            ("counts", ("ops", "macs", "n_layers", "n_unsupported", "mvp_layers")))


def _family_order(metric: str) -> tuple[int, int, str]:
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


def plot_trends(nights: list[bl.Night], out_dir: Path) -> list[Path]:
    """trend_METRIC.png for each model-level metric, as small multiples: one small panel per series
    (a model on a target), all on the same axes, each the change against the series' first night in
    the window (%), so that the one series that moved stands out and no legend is needed. Returned
    in family order (memory, time, counts)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for i, night in enumerate(nights):
        for key, m in (night.metrics or {}).items():
            s, _, path = key.rpartition(":")
            if "layers[" in path or isinstance(m.value, str):
                continue
            series.setdefault(path, {}).setdefault(s, []).append((i, float(m.value)))
    labels = [_night_label(n.nightly_id) for n in nights]
    paths = []
    for metric, by_series in sorted(series.items(), key=lambda kv: _family_order(kv[0])):
        names = sorted(by_series)
        n_cols = min(4, len(names))
        n_rows = -(-len(names) // n_cols)
        changes = {s: [100.0 * (v / pts[0][1] - 1) if pts[0][1] else 0.0 for _, v in pts]
                   for s, pts in by_series.items()}
        top = max([1.0] + [abs(c) for cs in changes.values() for c in cs]) * 1.15
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 2.1 * n_rows + 0.8), sharex=True,
                                 sharey=True, squeeze=False)
        for ax, s in zip(axes.flat, names):
            xs = [i for i, _ in by_series[s]]
            moved = any(abs(c) > 1e-9 for c in changes[s])
            ax.axhline(0, color="#888", linewidth=0.6)
            ax.plot(xs, changes[s], marker="o", markersize=3, color="#e76f51" if moved else "#1d4ed8")
            ax.set_title(_series_title(s), fontsize=8)
            ax.set_ylim(-top, top)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        for ax in axes[:, 0]:
            ax.set_ylabel("change (%)", fontsize=8)
        family = FAMILIES[_family_order(metric)[0]][0] if _family_order(metric)[0] < len(FAMILIES) else "other"
        fig.suptitle(f"{metric} ({family}) over the last {len(nights)} night(s): change against each "
                     "series' first night (red: it moved)", fontsize=10)
        fig.tight_layout()
        p = out_dir / f"trend_{metric}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
