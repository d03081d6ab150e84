"""The decision a sweep with `[data]` asks for, at the head of its report: accuracy against latency
and against RAM, one row of panels per target.

- the Pareto front (over accuracy, latency, RAM and flash) drawn as a line through its variants;
- the constraint lines: max_latency_ms and max_ram_bytes (vertical), min_accuracy and the base's
  accuracy less max_accuracy_drop_pts (horizontal, dashed);
- feasible variants in colour, infeasible ones grey, the base as a black star;

and `summary`: the decision in words (the first feasible variant of the ranking and why the others
are not), the ranking with accuracy beside the resources and the violated bound of each variant.
"""
from __future__ import annotations

import html
from pathlib import Path


def _points(rk, df, target: str) -> tuple[dict | None, list[dict]]:
    base = None
    rows = df[(df["target"] == target) & (df["variant"] == "base")]
    if len(rows):
        r = rows.iloc[0]
        acc = r["accuracy"]
        base = {"variant": "base", "latency_s": r["latency_s"], "ram_bytes": r["ram_bytes"],
                "accuracy": None if acc is None or acc != acc else float(acc)}
    return base, [e for e in rk.entries if e["target"] == target]


def plot(rk, df, out_dir: Path) -> list[tuple[str, Path]]:
    """decision.png; [] when no variant has an accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    targets = list(dict.fromkeys(e["target"] for e in rk.entries if e.get("accuracy") is not None))
    if not targets:
        return []
    bounds = rk.constraints
    fig, axes = plt.subplots(len(targets), 2, figsize=(12, 4.6 * len(targets)), squeeze=False)
    for row, target in zip(axes, targets):
        base, entries = _points(rk, df, target)
        for ax, (key, scale, label, bound) in zip(row, (
                ("latency_s", 1e3, "latency (ms)", bounds.max_latency_ms),
                ("ram_bytes", 1 / 1024, "RAM (KB)", None if bounds.max_ram_bytes is None
                 else bounds.max_ram_bytes / 1024))):
            scored = [e for e in entries if e.get("accuracy") is not None and e.get(key) is not None]
            for e in scored:
                x, y = float(e[key]) * scale, e["accuracy"]
                colour = ("tab:blue" if e["pareto"] else "tab:green") if e["feasible"] else "lightgrey"
                ax.scatter(x, y, s=40, color=colour, edgecolor="black" if e["pareto"] else "none", zorder=3)
                ax.annotate(e["variant"], (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4),
                            color="black" if e["feasible"] else "grey")
            front = sorted((float(e[key]) * scale, e["accuracy"]) for e in scored if e["pareto"])
            if base is not None and base["accuracy"] is not None:
                bx, by = float(base[key]) * scale, base["accuracy"]
                ax.scatter(bx, by, s=220, marker="*", color="black", zorder=4)
                ax.annotate("base", (bx, by), fontsize=8, textcoords="offset points", xytext=(4, -12))
                drop = bounds.max_accuracy_drop_pts / 100.0
                floor = by - drop if scored and scored[0].get("higher", True) else by + drop
                ax.axhline(floor, color="tab:orange", linestyle="--", linewidth=1,
                           label=f"base - {bounds.max_accuracy_drop_pts:g} pts")
            if len(front) > 1:
                ax.plot(*zip(*front), color="tab:blue", linewidth=1, alpha=0.6, label="Pareto front")
            if bound is not None:
                ax.axvline(bound, color="tab:red", linewidth=1, label=f"max {label}")
            if bounds.min_accuracy is not None:
                ax.axhline(bounds.min_accuracy, color="tab:red", linestyle="--", linewidth=1,
                           label="min_accuracy")
            ax.set_xlabel(label)
            ax.set_ylabel("accuracy (emulated int8)")
            ax.set_title(target, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy against latency and RAM: blue = Pareto front, green = feasible, grey = infeasible, "
                 "black star = base", fontsize=10)
    fig.tight_layout()
    path = Path(out_dir) / "decision.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [("accuracy against latency and RAM", path)]


def summary(rk) -> tuple[str, str]:
    """(markdown, html): the decision in words and the ranking with accuracy and violations."""
    from orchestrator.ranking import accuracy_text, pts_text
    lines = []
    for target in dict.fromkeys(e["target"] for e in rk.entries):
        entries = [e for e in rk.entries if e["target"] == target]
        best = next((e for e in entries if e["feasible"]), None)
        if best is None:
            lines.append(f"- **{target}**: no variant meets every bound.")
        else:
            lines.append(f"- **{target}**: **{best['variant']}**: latency {best['latency_change_pct']:+.1f}%, "
                         f"RAM {best['ram_change_pct']:+.1f}%, flash {best['flash_change_pct']:+.1f}%, "
                         f"accuracy {accuracy_text(best)} ({pts_text(best)}).")
    head = ["rank", "variant", "target", "accuracy", "change", "float", "TFLite", "agreement", "latency",
            "RAM", "flash", "Pareto", "feasible"]

    def pct(x):
        return "n/a" if x is None else f"{x:+.1f}%"

    def num(x):
        return "n/a" if x is None else f"{x:.4f}"
    rows = [[e["rank"], e["variant"], e["target"], accuracy_text(e), pts_text(e), num(e.get("accuracy_float")),
             num(e.get("accuracy_tflite")), num(e.get("agreement_tflite")), pct(e["latency_change_pct"]),
             pct(e["ram_change_pct"]), pct(e["flash_change_pct"]), "yes" if e["pareto"] else "",
             "yes" if e["feasible"] else "no: " + "; ".join(e["violations"])] for e in rk.entries]
    md = [f"Order: {rk.rule}.", "", *lines, "",
          "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    body = [f"<p>Order: {html.escape(rk.rule)}.</p>", "<ul>"]
    body += [f"<li>{html.escape(ln[2:]).replace('**', '')}</li>" for ln in lines]
    body += ["</ul>", "<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    body += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
    body.append("</table>")
    return "\n".join(md), "\n".join(body)
