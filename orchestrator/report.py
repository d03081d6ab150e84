"""The run report: Markdown and HTML under results/<run>/, with PNG plots, laid out for the decision
it serves: which tip to apply, on which target, at what cost.

- the outcome in one line (measured, not applicable, failed), then the best tip per target;
- (a sweep with accuracy: the accuracy decision section goes first, see `accuracy_section`);
- one section per target (named by `target_names.target_name`, simulator targets first), each with
  its ranking table (the base's numbers, each variant's numbers beside its change, in rank order),
  `ranking-<target>.png` (the change in latency, RAM and flash per variant, one panel each, the
  value written on every bar), `pareto-<target>.png` (latency against RAM and against flash, the
  Pareto front marked and labelled) and `layers-<target>.png` (cycles per layer of the base, every
  Pareto variant and the best ones, on one shared y axis);
- the notes, every measurement (rank order, blanks where a row has no number), the boards, the run.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

from orchestrator import build, units
from orchestrator import ranking as ranking_mod
from orchestrator.render import html_images, html_page, html_table, md_images, md_table
from orchestrator.results_db import ResultsDB, outcome
from orchestrator.target_names import target_name

N_BEST = 3               # variants of the layers plot besides the base and the Pareto front
DPI = 110


def _missing(x) -> bool:
    return units.missing(x)


def _int(x) -> str:
    return "" if _missing(x) else f"{int(x):,}"


def _slug(target: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", target).strip("-")


def _target_order(targets) -> list[str]:
    """Simulator targets first, then boards: the order of every table, section and plot."""
    return sorted(dict.fromkeys(targets), key=lambda t: (not str(t).startswith("simulator"), str(t)))


def outcome_line(df) -> str:
    """`16 measured, 2 not applicable, 0 failed`: the run's rows counted apart."""
    n = {k: 0 for k in ("measured", "not applicable", "failed")}
    for r in df.itertuples():
        n[outcome(r.status, None if _missing(r.error) else r.error)] += 1
    return f"{n['measured']} measured, {n['not applicable']} not applicable, {n['failed']} failed"


def write(db: ResultsDB, run_id: str, out_dir: str | Path, objective: str = "latency") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = db.run_info(run_id)
    df = db.measurements(run_id)
    try:
        from orchestrator.constraints import of_run
        rk = ranking_mod.rank(df, objective=objective, run_id=run_id, constraints=of_run(info),
                              refused=ranking_mod.refused_in_run(db, run_id))
        rank_error = None
    except ranking_mod.RankingError as e:
        rk, rank_error = None, str(e)
    targets = _target_order(df["target"]) if len(df) else []

    # (title, markdown, html, [(alt, png path)]) in page order
    sections: list[tuple[str, str, str, list]] = []
    lead = f"{outcome_line(df)} on {len(targets)} target(s): " + ", ".join(target_name(t) for t in targets) + "."
    best = _best_lines(rk, rk.objective_label) if rk is not None else [f"No ranking: {rank_error}"]
    sections.append(("Outcome", "\n".join([lead, ""] + [f"- {b}" for b in best]),
                     f"<p>{html.escape(lead)}</p><ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in best)
                     + "</ul>", []))
    # accuracy_section: a sweep with [data] leads with its accuracy decision (decision_plots owns
    # it); it goes here, right after the outcome and before the per-target sections
    if rk is not None and rk.has_accuracy:
        from orchestrator import decision_plots
        md_text, html_text = decision_plots.summary(rk)
        sections.append(("Decision: accuracy against latency, RAM and flash", md_text, html_text,
                         decision_plots.plot(rk, df, out_dir)))
    if rk is not None:
        layers = db.layers(run_id)
        for target in targets:
            if target not in rk.bases:
                continue
            head, rows = ranking_rows(rk, target)
            images = (_plot_ranking(rk, target, out_dir) + _plot_pareto(rk, target, out_dir)
                      + _plot_layers(layers, rk, target, out_dir))
            order = "lower is better" if rk.objective not in ("accuracy", ranking_mod.DECISION) else "best first"
            sections.append((f"Ranking on {target_name(target)} (ranked by {rk.objective_label}, {order})",
                             md_table(head, rows), html_table(head, rows, _base_row), images))
        if rk.notes:
            sections.append(("Notes", "\n".join(f"- {n}" for n in rk.notes),
                             "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in rk.notes) + "</ul>", []))

    head, rows = measurement_rows(df, rk)
    sections.append(("Measurements", md_table(head, rows), html_table(head, rows), []))
    boards = db.board_states(run_id)
    if boards:
        head, rows = board_rows(boards)
        sections.append(("Boards (state at the end of the run)", md_table(head, rows), html_table(head, rows), []))
    meta = [["run", run_id], ["sweep file", info["sweep_path"]],
            ["base", build.describe_base(json.loads(info["base_json"]))], ["mode", info["mode"]],
            ["status", info["status"]], ["measurements", outcome_line(df)],
            ["tools", ", ".join(f"{k} {v}" for k, v in json.loads(info["tool_versions_json"]).items())],
            ["started", info["created_at"]], ["updated", info["updated_at"]]]
    sections.append(("Run", md_table(["", ""], meta), html_table(["", ""], meta), []))

    md = [f"# mvpfarm sweep report: {info['name']}", ""]
    body = [f"<h1>mvpfarm sweep report: {html.escape(info['name'])}</h1>"]
    for title, m, h, images in sections:
        shown = [(alt, p.name) for alt, p in images]
        md += [f"## {title}", "", m, ""] + md_images(shown) + ([""] if shown else [])
        body += [f"<h2>{html.escape(title)}</h2>", h] + html_images(shown)
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))
    (out_dir / "report.html").write_text(html_page(run_id, body, max_width_px=1200))
    return md_path


def _base_row(row) -> str:
    return "base" if len(row) > 1 and row[0] == "" and row[1] == "base" else ""


def _best_lines(rk, objective: str) -> list[str]:
    """Per target: the best tip by the objective, and the Pareto front."""
    out = []
    for target in _target_order(rk.bases):
        entries = [e for e in rk.entries if e["target"] == target]
        if not entries:
            out.append(f"{target_name(target)}: no variant was measured")
            continue
        b = entries[0]
        front = [e["variant"] for e in entries if e["pareto"]]
        out.append(f"{target_name(target)}: {b['variant']} is best by {objective} "
                   f"({units.ms(b['latency_s'])}, {units.pct(b['latency_change_pct'])} latency; "
                   f"{units.kb(b['ram_bytes'])} RAM, {units.pct(b['ram_change_pct'])}; "
                   f"{units.kb(b['flash_bytes'])} flash, {units.pct(b['flash_change_pct'])}). "
                   f"Pareto front: {', '.join(front) or 'none'}")
    return out


def ranking_rows(rk, target: str) -> tuple[list[str], list[list]]:
    """The target's ranking as a table: the base first, then each variant in rank order."""
    head = ["rank", "variant", "latency", "change", "RAM", "change", "flash", "change", "CPU cycles, change",
            "MVP cycles, change", "MVP layers", "Pareto"]
    weighted = rk.objective == "weighted"
    if weighted:
        head.insert(2, "weighted change")
    b = rk.bases[target]
    base = ["", "base", units.ms(b["latency_s"]), "", units.kb(b["ram_bytes"]), "",
            units.kb(b["flash_bytes"]), "", _int(b.get("cpu_cycles")), _int(b.get("accelerator_cycles")),
            _int(b.get("n_layers_on_mvp")), ""]
    rows = [base[:2] + ([""] if weighted else []) + base[2:]]
    for e in (e for e in rk.entries if e["target"] == target):
        r = [str(e["rank"]), e["variant"], units.ms(e["latency_s"]), units.pct(e["latency_change_pct"]),
             units.kb(e["ram_bytes"]), units.pct(e["ram_change_pct"]), units.kb(e["flash_bytes"]),
             units.pct(e["flash_change_pct"]), units.pct(e["cpu_cycles_change_pct"]),
             units.pct(e["accelerator_cycles_change_pct"]),
             f"{_int(e.get('n_layers_on_mvp'))} ({e['mvp_layers_change']:+d})", "yes" if e["pareto"] else ""]
        rows.append(r[:2] + ([units.pct(e["objective_change_pct"])] if weighted else []) + r[2:])
    if rk.has_accuracy:         # the accuracy beside the resources, and the bounds each one breaks
        at = head.index("latency")
        head[at:at] = ["accuracy", "change"]
        head.append("feasible")
        rows[0][at:at] = [ranking_mod.accuracy_text(b), ""]
        rows[0].append("yes" if not b.get("violations") else "no: " + "; ".join(b["violations"]))
        for r, e in zip(rows[1:], (e for e in rk.entries if e["target"] == target)):
            r[at:at] = [ranking_mod.accuracy_text(e), ranking_mod.pts_text(e)]
            r.append("yes" if e["feasible"] else "no: " + "; ".join(e["violations"]))
    return head, rows


def measurement_rows(df, rk) -> tuple[list[str], list[list]]:
    """Every row of the run: per target (simulator first), the base, the ranked variants in rank
    order, then the rows that were not ranked; a number a row does not have is blank."""
    rank = {(e["variant"], e["target"]): e["rank"] for e in rk.entries} if rk is not None else {}
    order = {t: i for i, t in enumerate(_target_order(df["target"]))} if len(df) else {}

    def key(r):
        ranked = rank.get((r.variant, r.target))
        return (order[r.target], r.variant != "base", ranked is None, ranked or 0, r.variant)
    head = ["variant", "target", "outcome", "rank", "latency", "RAM", "flash", "MVP cycles", "CPU cycles",
            "unsupported layers", "error"]
    rows = [[r.variant, target_name(r.target), outcome(r.status, None if _missing(r.error) else r.error),
             rank.get((r.variant, r.target), ""),
             units.ms(r.latency_s), units.kb(r.ram_bytes), units.kb(r.flash_bytes), _int(r.accelerator_cycles),
             _int(r.cpu_cycles), _int(r.n_unsupported), "" if _missing(r.error) else r.error]
            for r in sorted(df.itertuples(), key=key)]
    return head, rows


def board_rows(boards: list[dict]) -> tuple[list[str], list[list]]:
    """The boards' states as a table: also what `mvpfarm sweep run` prints at the end."""
    head = ["board", "target", "state", "jobs measured", "faults", "garbage B", "timeouts", "reason"]
    rows = [[b["board_id"], target_name(b.get("target", b.get("kind", ""))), b["state"], b.get("jobs_measured", 0),
             len(b.get("faults", [])), b.get("garbage_bytes", 0), b.get("timeouts", 0), b.get("reason") or ""]
            for b in boards]
    return head, rows


# --- plots ---------------------------------------------------------------------------------------
_METRICS = (("latency", "latency_change_pct"), ("RAM", "ram_change_pct"), ("flash", "flash_change_pct"))
GOOD, BAD, FRONT, OTHER = "#2a9d8f", "#e76f51", "#1d4ed8", "#9ca3af"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def _plot_ranking(rk, target: str, out_dir: Path):
    """The change of every ranked variant in latency, RAM and flash: one panel each, variants in
    rank order, the value written beside every bar (a +0.6% bar is a sliver, its label is not)."""
    import matplotlib.pyplot as plt
    entries = [e for e in rk.entries if e["target"] == target]
    if not entries:
        return []
    labels = [f"{e['rank']}. {e['variant']}" for e in entries][::-1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.42 * len(entries) + 1.6), sharey=True)
    for ax, (name, key) in zip(axes, _METRICS):
        values = [e[key] or 0.0 for e in entries][::-1]
        ax.barh(labels, values, color=[GOOD if v < 0 else BAD for v in values])
        ax.axvline(0, color="black", linewidth=0.8)
        lo, hi = min(values + [0.0]), max(values + [0.0])
        pad = (hi - lo) * 0.35 or 5.0
        ax.set_xlim(lo - (pad if lo < 0 else pad * 0.2), hi + (pad if hi > 0 else pad * 0.2))
        for y, v in enumerate(values):
            ax.annotate(f"{v:+.1f}%", (v, y), xytext=(4 if v >= 0 else -4, 0), textcoords="offset points",
                        ha="left" if v >= 0 else "right", va="center", fontsize=8)
        ax.set_title(f"{name} change (%)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=9)
    fig.suptitle(f"Tips on {target_name(target)}: change against the base (lower is better; "
                 f"ranked by {rk.objective_label})", fontsize=11)
    fig.tight_layout()
    path = _save(fig, out_dir / f"ranking-{_slug(target)}.png")
    return [(f"change per tip on {target_name(target)}", path)]


def _place_labels(ax, points: list[tuple[float, float, str]], fontsize: int = 8) -> None:
    """Labels beside their points without overlapping each other: each takes the first of a few
    offsets whose box is clear of the labels already placed."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    offsets = [(6, 4), (6, -12), (-6, 4), (-6, -12), (6, 14), (6, -22), (-6, 14), (-6, -22), (14, -4), (-14, -4)]
    for x, y, text in points:
        for dx, dy in offsets + [(6, 4)]:
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha="left" if dx >= 0 else "right", va="bottom",
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            box = t.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            t.remove()
        else:       # every offset overlaps: keep the first one
            placed.append(t.get_window_extent(renderer))


def _plot_pareto(rk, target: str, out_dir: Path):
    """Latency against RAM and latency against flash, side by side: every objective on an axis of
    its own. The Pareto front (latency, RAM, flash together) is blue and labelled; the other
    variants are grey, labelled with their rank."""
    import matplotlib.pyplot as plt
    entries = [e for e in rk.entries if e["target"] == target]
    b = rk.bases[target]
    if _missing(b.get("latency_s")):
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True)
    for ax, (name, col) in zip(axes, (("RAM", "ram_bytes"), ("flash", "flash_bytes"))):
        pts = []
        for e in entries:
            on = e["pareto"]
            x, y = e["latency_s"] * 1e3, e[col] / 1000
            ax.scatter(x, y, s=60 if on else 36, color=FRONT if on else OTHER, zorder=3 if on else 2,
                       edgecolor="white", linewidth=0.5)
            pts.append((x, y, e["variant"] if on else str(e["rank"])))
        bx, by = b["latency_s"] * 1e3, b[col] / 1000
        ax.scatter(bx, by, s=200, marker="*", color="black", zorder=4)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel(f"{name} (kB)")
        ax.set_title(f"latency against {name}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        _place_labels(ax, [(bx, by, "base")] + pts)
    axes[0].scatter([], [], color=FRONT, label="Pareto front (latency, RAM, flash)")
    axes[0].scatter([], [], color=OTHER, label="other variants (by rank)")
    axes[0].scatter([], [], marker="*", color="black", s=120, label="base")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"Variants on {target_name(target)} (lower left is better)", fontsize=11)
    fig.tight_layout()
    path = _save(fig, out_dir / f"pareto-{_slug(target)}.png")
    return [(f"latency against RAM and flash on {target_name(target)}", path)]


def _plot_layers(layers, rk, target: str, out_dir: Path):
    """Cycles per layer (MVP and CPU, stacked) of the base, every Pareto variant and the best
    ones, one panel each on a shared y axis, so that a variant 4x cheaper looks it."""
    import matplotlib.pyplot as plt
    entries = [e for e in rk.entries if e["target"] == target]
    picked = {e["variant"] for e in entries if e["pareto"]} | {e["variant"] for e in entries[:N_BEST]}
    chosen = ["base"] + [e["variant"] for e in entries if e["variant"] in picked]      # rank order
    L_all = layers[layers["target"] == target]
    chosen = [v for v in chosen if (L_all["variant"] == v).any()]
    if not chosen:
        return []
    rank = {e["variant"]: e["rank"] for e in entries}
    pareto = {e["variant"] for e in entries if e["pareto"]}
    n_max = max(int((L_all["variant"] == v).sum()) for v in chosen)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(max(9.0, 0.32 * n_max + 2), 2.6 * len(chosen) + 0.6),
                             sharey=True, squeeze=False)
    for ax, variant in zip(axes[:, 0], chosen):
        L = L_all[L_all["variant"] == variant].sort_values("layer_index")
        x = list(range(len(L)))
        acc, cpu = L["accelerator_cycles"] / 1e3, L["cpu_cycles"] / 1e3
        ax.bar(x, acc, label="MVP cycles", color=FRONT)
        ax.bar(x, cpu, bottom=acc, label="CPU cycles", color="#f4a261")
        ax.set_xticks(x, [f"{i} {op}" for i, op in zip(L["layer_index"], L["opcode"])], rotation=50,
                      fontsize=8, ha="right", rotation_mode="anchor")
        what = "base" if variant == "base" else (f"rank {rank[variant]}: {variant}"
                                                 + (" (Pareto)" if variant in pareto else ""))
        total = (L["accelerator_cycles"] + L["cpu_cycles"]).sum() / 1e3
        ax.set_title(f"{what}: {total:,.0f}k cycles in {len(L)} layers", fontsize=10, loc="left")
        ax.set_ylabel("k cycles")
        ax.set_xlim(-0.6, n_max - 0.4)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Cycles per layer on {target_name(target)} (shared y axis)", fontsize=11)
    fig.tight_layout()
    path = _save(fig, out_dir / f"layers-{_slug(target)}.png")
    return [(f"cycles per layer on {target_name(target)}", path)]
