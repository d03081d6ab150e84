"""How a comparison reads: its tables (Markdown, HTML), its JSON file and its scatter plot, as
`mvpfarm compare` writes them under RESULTS/compare/NAME/. The numbers come from
`orchestrator.compare`; this module only lays them out.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from orchestrator.compare import LAYER_METRICS, MIN_LAYER_SHARE, MODEL_METRICS, N_WORST, Comparison
from orchestrator.render import html_images, html_page, html_section, md_images, md_section, pct

TITLE = "Simulated against measured"
_ALT = "simulated against measured"
_LABEL = {"ram_bytes": "RAM B", "accelerator_cycles": "MVP cycles", "cpu_cycles": "CPU cycles",
          "latency_s": "latency ms", "flash_bytes": "flash B"}


def _fmt(metric: str, v: float, signed: bool = False) -> str:
    if metric == "latency_s":
        return f"{v * 1e3:+.3f}" if signed else f"{v * 1e3:.3f}"
    return f"{v:+,.0f}" if signed else f"{v:,.0f}"



def sections(comparison: Comparison) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table of the report, in order."""
    out = []
    head = ["model", "simulated", "measured", "metric", "sim", "meas", "error", "error %"]
    rows = []
    for c in comparison.models:
        for m in MODEL_METRICS:
            d = c.deltas[m]
            rows.append([c.model, c.simulated_target, c.measured_target, _LABEL[m], _fmt(m, d.simulated),
                         _fmt(m, d.measured), _fmt(m, d.error, signed=True), pct(d.error_pct)])
    out.append(("Per model", head, rows))
    mape = comparison.mape()
    rows = [["models"] + [pct(mape["models"][m], signed=False) for m in MODEL_METRICS],
            ["layers"] + [pct(mape["layers"].get(m), signed=False) if m in LAYER_METRICS else "-"
                          for m in MODEL_METRICS]]
    out.append(("Mean absolute percentage error (layers: those of at least "
                f"{MIN_LAYER_SHARE:.0%} of their model's time)", ["over"] + [_LABEL[m] for m in MODEL_METRICS],
                rows))
    rows = [[op, b["layers"]] + [pct(b[m]) for m in LAYER_METRICS]
            for op, b in comparison.bias_per_opcode().items()]
    out.append(("Bias per opcode (sum simulated / sum measured - 1)", ["opcode", "layers"]
                + [_LABEL[m] for m in LAYER_METRICS], rows))
    rows = [[m, L.index, L.opcode, f"{L.share:.1%}", _fmt("latency_s", L.deltas["latency_s"].simulated),
             _fmt("latency_s", L.deltas["latency_s"].measured),
             _fmt("latency_s", L.deltas["latency_s"].error, signed=True), pct(L.deltas["latency_s"].error_pct),
             pct(L.deltas["accelerator_cycles"].error_pct), pct(L.deltas["cpu_cycles"].error_pct)]
            for m, L in comparison.worst_layers()]
    out.append((f"Worst layers (largest latency error; at most {N_WORST})",
                ["model", "layer", "opcode", "share", "latency sim", "latency meas", "latency err",
                 "latency err %", "MVP cycles err %", "CPU cycles err %"], rows))
    rows = [[m, L.index, L.opcode, f"{L.share:.1%}", k,
             (f"sim {'MVP' if L.simulated_on_mvp else 'CPU'}, board {'MVP' if L.measured_on_mvp else 'CPU'}"
              if k == "mvp_support" else pct(L.deltas[k].error_pct))]
            for m, L, k in comparison.over_threshold()]
    out.append((f"Layers over the threshold (|error| > {comparison.threshold_pct:g}%, "
                f"or on a different unit; {left_out_text(comparison)})",
                ["model", "layer", "opcode", "share", "metric", "error"], rows))
    for c in comparison.models:
        if c.note:
            out.append((f"{c.model}: per layer", ["note"], [[c.note]]))
            continue
        head = ["layer", "opcode", "unit sim/meas", "share"]
        for m in LAYER_METRICS:
            head += [f"{_LABEL[m]} sim", f"{_LABEL[m]} meas", f"{_LABEL[m]} err %"]
        rows = []
        for L in c.layers:
            row = [L.index, L.opcode, f"{'MVP' if L.simulated_on_mvp else 'CPU'}/"
                                      f"{'MVP' if L.measured_on_mvp else 'CPU'}", f"{L.share:.1%}"]
            for m in LAYER_METRICS:
                d = L.deltas[m]
                row += [_fmt(m, d.simulated), _fmt(m, d.measured), pct(d.error_pct)]
            rows.append(row)
        out.append((f"{c.model}: per layer", head, rows))
    unmatched = [[n, "simulated only"] for n in comparison.unmatched_simulated] + \
                [[n, "measured only"] for n in comparison.unmatched_measured]
    if unmatched:
        out.append(("Not compared (no counterpart)", ["model", "side"], unmatched))
    return out


def left_out_text(comparison: Comparison) -> str:
    """What the threshold list does not look at: layers under MIN_LAYER_SHARE of their model's time."""
    small = sum(1 for _, L in comparison.all_layers() if L.share < MIN_LAYER_SHARE)
    return (f"left out: the {small} layer(s) under {MIN_LAYER_SHARE:.0%} of their model's time, "
            "unless on a different unit")


_WORD = {"ram_bytes": "RAM", "accelerator_cycles": "MVP cycles", "cpu_cycles": "CPU cycles",
         "latency_s": "latency", "flash_bytes": "flash"}


def terminal_summary(comparison: Comparison, paths: dict[str, Path], n_worst: int = 5) -> str:
    """What `mvpfarm compare` prints: the error per model, the mean errors, the worst layers, how
    many layers are over the threshold (and what that count leaves out), and where the files are."""
    from orchestrator import terminal
    metrics = [m for m in MODEL_METRICS if m != "flash_bytes"]
    rows = [[c.model, c.simulated_target, c.measured_target] + [pct(c.deltas[m].error_pct) for m in metrics]
            for c in comparison.models]
    out = [terminal.table(["model", "simulated", "measured"] + [f"{_WORD[m]} err" for m in metrics], rows,
                          [False, False, False] + [True] * len(metrics),
                          title=f"Simulated against measured: {len(comparison.models)} model(s), "
                                "error = simulated / measured - 1")]
    mape = comparison.mape()
    out.append("mean absolute error: models " + ", ".join(f"{_WORD[m]} {pct(mape['models'][m], signed=False)}"
                                                          for m in metrics)
               + f"; layers of at least {MIN_LAYER_SHARE:.0%} of their model's time "
               + ", ".join(f"{_WORD[m]} {pct(mape['layers'].get(m), signed=False)}" for m in LAYER_METRICS) + "\n")
    worst = comparison.worst_layers(n_worst)
    if worst:
        out.append(terminal.table(
            ["model", "layer", "opcode", "share of time", "latency err", "latency err %"],
            [[m, L.index, L.opcode, f"{L.share:.1%}", _fmt("latency_s", L.deltas["latency_s"].error, signed=True)
              + " ms", pct(L.deltas["latency_s"].error_pct)] for m, L in worst],
            [False, True, False, True, True, True],
            title=f"Worst layers by latency error (the {len(worst)} of {len(comparison.all_layers())}; "
                  f"the report lists {N_WORST})"))
    over = comparison.over_threshold()
    out.append(f"{len(over)} layer metric(s) over the threshold (|error| > {comparison.threshold_pct:g}%) or on "
               f"a different unit; {left_out_text(comparison)}")
    unmatched = len(comparison.unmatched_simulated) + len(comparison.unmatched_measured)
    if unmatched:
        out.append(f"{unmatched} model(s) without a counterpart, not compared (listed in the report)")
    out.append("full report: " + ", ".join(str(p) for p in paths.values()))
    return "\n".join(out) + "\n"


def to_markdown(comparison: Comparison, title: str = TITLE, images: list[str] = ()) -> str:
    md = [f"# {title}", ""]
    for t, head, rows in sections(comparison):
        md += md_section(t, head, rows)
    md += md_images((_ALT, p) for p in images)
    return "\n".join(md) + "\n"


def to_html(comparison: Comparison, title: str = TITLE, images: list[str] = ()) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for t, head, rows in sections(comparison):
        body += html_section(t, head, rows)
    body += html_images((_ALT, p) for p in images)
    return html_page(title, body)


def scatter_png(comparison: Comparison, path: str | Path) -> Path | None:
    """Simulated against measured latency and cycles per layer, log-log, one colour per opcode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = comparison.all_layers()
    if not layers:
        return None
    metrics = [("latency_s", 1e3, "latency (ms)"), ("accelerator_cycles", 1.0, "MVP cycles"),
               ("cpu_cycles", 1.0, "CPU cycles")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    opcodes = sorted({L.opcode for _, L in layers})
    colours = {op: plt.cm.tab20(i % 20) for i, op in enumerate(opcodes)}
    for ax, (m, scale, label) in zip(axes, metrics):
        pts = [(L.deltas[m].measured * scale, L.deltas[m].simulated * scale, L.opcode) for _, L in layers
               if L.deltas[m].measured > 0 and L.deltas[m].simulated > 0]
        for op in opcodes:
            xs = [p[0] for p in pts if p[2] == op]
            ys = [p[1] for p in pts if p[2] == op]
            if xs:
                ax.scatter(xs, ys, s=14, color=colours[op], label=op, alpha=0.8)
        if pts:
            lo = min(min(p[0], p[1]) for p in pts)
            hi = max(max(p[0], p[1]) for p in pts)
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
            f = 1 + comparison.threshold_pct / 100
            ax.plot([lo, hi], [lo * f, hi * f], color="gray", linewidth=0.6, linestyle="--")
            ax.plot([lo, hi], [lo / f, hi / f], color="gray", linewidth=0.6, linestyle="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"simulated {label}")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Per layer, simulated against measured (dashed: \u00b1{comparison.threshold_pct:g}%)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(comparison: Comparison, out_dir: str | Path, title: str = TITLE) -> dict[str, Path]:
    """comparison.md, .html, .json and scatter.png in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = scatter_png(comparison, out_dir / "scatter.png")
    images = [png.name] if png else []
    paths = {"markdown": out_dir / "comparison.md", "html": out_dir / "comparison.html",
             "json": out_dir / "comparison.json"}
    paths["markdown"].write_text(to_markdown(comparison, title, images))
    paths["html"].write_text(to_html(comparison, title, images))
    paths["json"].write_text(json.dumps(comparison.to_dict(), indent=1) + "\n")
    if png:
        paths["png"] = png
    return paths
