"""The run report: Markdown and HTML under results/<run>/, with PNG plots.

- ranking.png: the objective's change per tip level (bars, best first);
- pareto.png: latency against RAM for every measured variant, the Pareto front marked;
- layers.png: per-layer accelerator and CPU cycles of the base and the best variants.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from orchestrator import build
from orchestrator import ranking as ranking_mod
from orchestrator.render import html_images, html_page, html_table, md_images, md_table, pct
from orchestrator.results_db import ResultsDB
from orchestrator.target_names import target_name

N_BEST = 3


def _missing(x) -> bool:
    """None or NaN: a failed row's numbers (pandas reads an all-NULL column as None)."""
    import pandas as pd
    return x is None or bool(pd.isna(x))


def _num(x, fmt="{:,}") -> str:
    import pandas as pd
    return "" if x is None or pd.isna(x) else fmt.format(x)


def write(db: ResultsDB, run_id: str, out_dir: str | Path, objective: str = "latency") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = db.run_info(run_id)
    df = db.measurements(run_id)
    try:
        from orchestrator.constraints import of_run
        rk = ranking_mod.rank(df, objective=objective, run_id=run_id, constraints=of_run(info))
        rank_error = None
    except ranking_mod.RankingError as e:
        rk, rank_error = None, str(e)

    sections: list[tuple[str, str, str]] = []     # (title, markdown, html)
    base = json.loads(info["base_json"])
    base_desc = build.describe_base(base)
    meta = [["run", run_id], ["sweep file", info["sweep_path"]], ["base", base_desc], ["mode", info["mode"]],
            ["status", info["status"]], ["measurements", f"{(df['status'] == 'measured').sum()} measured, "
                                                          f"{(df['status'] == 'failed').sum()} failed"],
            ["tools", ", ".join(f"{k} {v}" for k, v in json.loads(info["tool_versions_json"]).items())],
            ["started", info["created_at"]], ["updated", info["updated_at"]]]
    sections.append(("Run", md_table(["", ""], meta), html_table(["", ""], meta)))

    images = []
    if rk is not None and rk.has_accuracy:      # a sweep with [data] leads with the decision
        from orchestrator import decision_plots
        md_text, html_text = decision_plots.summary(rk)
        for t, p in decision_plots.plot(rk, df, out_dir):
            md_text += f"\n\n![{t}]({p.name})"
            html_text += f'\n<p><img src="{p.name}" alt="{html.escape(t)}"></p>'
        sections.insert(0, ("Decision: accuracy against latency, RAM and flash", md_text, html_text))
    if rk is not None:
        head = ["rank", "tip", "level", "target", f"{objective} (objective)", "latency", "RAM", "flash",
                "CPU cycles", "MVP cycles", "MVP layers", "Pareto"]
        rows = [[e["rank"], e["tip"], e["level"], e["target"], pct(e["objective_change_pct"]),
                 pct(e["latency_change_pct"]), pct(e["ram_change_pct"]), pct(e["flash_change_pct"]),
                 pct(e["cpu_cycles_change_pct"]), pct(e["accelerator_cycles_change_pct"]),
                 f"{e['mvp_layers_change']:+d}", "yes" if e["pareto"] else ""] for e in rk.entries]
        sections.append(("Tip ranking (change against the base; lower is better)",
                         md_table(head, rows), html_table(head, rows)))
        if rk.notes:
            sections.append(("Notes", "\n".join(f"- {n}" for n in rk.notes),
                             "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in rk.notes) + "</ul>"))
        images += _plot_ranking(rk, out_dir) + _plot_pareto(df, rk, out_dir) + _plot_layers(db, run_id, rk, out_dir)
    else:
        sections.append(("Tip ranking", f"Not available: {rank_error}", html.escape(f"Not available: {rank_error}")))

    head = ["variant", "target", "status", "flash B", "RAM B", "MVP cycles", "CPU cycles", "latency ms",
            "unsupported", "error"]
    rows = [[r.variant, r.target, r.status, _num(r.flash_bytes), _num(r.ram_bytes), _num(r.accelerator_cycles),
             _num(r.cpu_cycles), _num(None if _missing(r.latency_s) else r.latency_s * 1e3, "{:.3f}"), _num(r.n_unsupported), r.error or ""]
            for r in df.itertuples()]
    sections.append(("Measurements", md_table(head, rows), html_table(head, rows)))

    boards = db.board_states(run_id)
    if boards:
        head, rows = board_rows(boards)
        sections.append(("Boards (state at the end of the run)", md_table(head, rows), html_table(head, rows)))

    md = [f"# mvpfarm sweep report: {info['name']}", ""]
    body = [f"<h1>mvpfarm sweep report: {html.escape(info['name'])}</h1>"]
    for title, m, h in sections:
        md += [f"## {title}", "", m, ""]
        body += [f"<h2>{html.escape(title)}</h2>", h]
    if images:
        shown = [(t, p.name) for t, p in images]
        md += ["## Plots", ""] + md_images(shown) + [""]
        body += ["<h2>Plots</h2>"] + html_images(shown)
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))
    (out_dir / "report.html").write_text(html_page(run_id, body, max_width_px=1100))
    return md_path


def board_rows(boards: list[dict]) -> tuple[list[str], list[list]]:
    """The boards' states as a table: also what `mvpfarm sweep run` prints at the end."""
    head = ["board", "target", "state", "jobs measured", "faults", "garbage B", "timeouts", "reason"]
    rows = [[b["board_id"], target_name(b.get("target", b.get("kind", ""))), b["state"], b.get("jobs_measured", 0),
             len(b.get("faults", [])), b.get("garbage_bytes", 0), b.get("timeouts", 0), b.get("reason") or ""]
            for b in boards]
    return head, rows


def _plot_ranking(rk, out_dir: Path):
    import matplotlib.pyplot as plt
    entries = [e for e in rk.entries if e["objective_change_pct"] is not None]
    if not entries:
        return []
    labels = [f"{e['variant']}" + (f" ({e['target']})" if len({x['target'] for x in entries}) > 1 else "")
              for e in entries]
    values = [e["objective_change_pct"] for e in entries]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(entries) + 1.5))
    ax.barh(labels[::-1], values[::-1], color=["tab:green" if v < 0 else "tab:red" for v in values[::-1]])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"{rk.objective} change against the base (%)")
    ax.set_title("Tip ranking")
    fig.tight_layout()
    path = out_dir / "ranking.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [("ranking", path)]


def _plot_pareto(df, rk, out_dir: Path):
    """Latency against RAM, one panel per target: the same variant measured on two targets lands
    at nearly the same place, and in one panel their labels would overwrite each other."""
    import matplotlib.pyplot as plt
    front = {(e["variant"], e["target"]) for e in rk.entries if e["pareto"]}
    rows = df[df["latency_s"].notna()]
    if rows.empty:
        return []
    targets = list(dict.fromkeys(rows["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 5), sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets):
        for r in rows[rows["target"] == target].itertuples():
            x, y = r.latency_s * 1e3, r.ram_bytes / 1024
            if r.variant == "base":
                ax.scatter(x, y, s=220, marker="*", color="black", zorder=3)
            else:
                on = (r.variant, r.target) in front
                ax.scatter(x, y, s=30 + r.flash_bytes / 2048, alpha=0.8,
                           color="tab:blue" if on else "tab:gray", marker="o" if r.status == "measured" else "x")
            # the base's label goes below: a variant that changes little sits right on top of it
            ax.annotate(r.variant, (x, y), fontsize=7, textcoords="offset points",
                        xytext=(4, -12) if r.variant == "base" else (4, 4))
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("latency (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("RAM (KB)")
    fig.suptitle("Variants: blue = Pareto front (latency, RAM, flash), size = flash, black star = base")
    fig.tight_layout()
    path = out_dir / "pareto.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [("pareto", path)]


def _plot_layers(db: ResultsDB, run_id: str, rk, out_dir: Path):
    import matplotlib.pyplot as plt
    target = rk.entries[0]["target"] if rk.entries else None
    chosen = ["base"] + [e["variant"] for e in rk.entries if e["target"] == target][:N_BEST]
    layers = db.layers(run_id)
    layers = layers[layers["target"] == target] if target else layers
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.2 * len(chosen)), squeeze=False)
    for ax, variant in zip(axes[:, 0], chosen):
        L = layers[layers["variant"] == variant]
        x = range(len(L))
        ax.bar(x, L["accelerator_cycles"], label="MVP cycles", color="tab:blue")
        ax.bar(x, L["cpu_cycles"], bottom=L["accelerator_cycles"], label="CPU cycles", color="tab:orange")
        ax.set_xticks(list(x), [f"{i}:{op}" for i, op in zip(L["layer_index"], L["opcode"])],
                      rotation=60, fontsize=6, ha="right")
        ax.set_title(variant, fontsize=9)
        ax.set_ylabel("cycles")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "layers.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [("per-layer cycles of the base and the best variants", path)]
