"""Tip rankings: what each tip and level changes against the base, best first.

For every measured variant and target: the change against the base on the same target in flash,
RAM, accelerator cycles, CPU cycles and latency (percent), the layers moved onto or off the MVP,
and whether the variant is on the Pareto front (latency, RAM, flash; lower is better). The
objective is one of those changes, or a weighted mean of several. Variants that failed are not
ranked; the notes say why, in particular when a tip pushes a layer off the MVP or the model past
the board's memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from orchestrator import units

OBJECTIVES = ("latency", "ram", "flash", "weighted")
_METRICS = {"latency": "latency_s", "ram": "ram_bytes", "flash": "flash_bytes",
            "accelerator_cycles": "accelerator_cycles", "cpu_cycles": "cpu_cycles"}
DEFAULT_WEIGHTS = {"latency": 1.0, "ram": 1.0, "flash": 1.0}


class RankingError(ValueError):
    """A run that cannot be ranked; one line for the user."""


@dataclass
class Ranking:
    run_id: str
    objective: str
    weights: dict
    entries: list[dict]                      # ranked, best first (per target)
    notes: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    bases: dict = field(default_factory=dict)   # target -> the base's row (its absolute numbers)

    def to_json_list(self) -> list[dict]:
        """The interface-contract form: one object per ranked tip level, ordered by rank."""
        keys = ("tip", "level", "objective_change_pct", "flash_change_pct", "ram_change_pct",
                "latency_change_pct", "accelerator_cycles_change_pct", "cpu_cycles_change_pct",
                "mvp_layers_change", "pareto", "rank", "variant", "target")
        return [{k: e[k] for k in keys} for e in self.entries]

    def to_json(self) -> str:
        return json.dumps(self.to_json_list(), indent=1)

    def to_table(self) -> str:
        """One table per target (each is ranked on its own): the base's numbers first, then each
        variant's numbers beside its change against the base, best first."""
        from orchestrator import terminal
        from orchestrator.target_names import target_name
        weighted = self.objective == "weighted"
        head = ["rank", "variant"] + (["weighted change"] if weighted else []) + \
            ["latency", "change", "RAM", "change", "flash", "change", "MVP layers", "Pareto"]
        numeric = [True, False] + ([True] if weighted else []) + [True] * 7 + [False]
        what = f"ranked by {self.objective_label}, lower is better"
        lines = []
        for target in dict.fromkeys([*self.bases, *(e["target"] for e in self.entries)]):
            b = self.bases.get(target, {})
            rows = [["base", "(the base model)"] + ([""] if weighted else [])
                    + [units.ms(b.get("latency_s")), "", units.kb(b.get("ram_bytes")), "",
                       units.kb(b.get("flash_bytes")), "", _count(b.get("n_layers_on_mvp")), ""]]
            for e in (e for e in self.entries if e["target"] == target):
                rows.append([str(e["rank"]), e["variant"]]
                            + ([units.pct(e["objective_change_pct"])] if weighted else [])
                            + [units.ms(e["latency_s"]), units.pct(e["latency_change_pct"]),
                               units.kb(e["ram_bytes"]), units.pct(e["ram_change_pct"]),
                               units.kb(e["flash_bytes"]), units.pct(e["flash_change_pct"]),
                               f"{_count(e.get('n_layers_on_mvp'))} ({e['mvp_layers_change']:+d})",
                               "*" if e["pareto"] else ""])
            lines.append(terminal.table(head, rows, numeric,
                                        title=f"Tip ranking for {self.run_id} on {target_name(target)} ({what})"))
        if self.notes:
            lines += ["Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    @property
    def objective_label(self) -> str:
        if self.objective != "weighted":
            return self.objective
        return "weighted change (" + ", ".join(f"{k} {v:g}" for k, v in self.weights.items()) + ")"


def _count(x) -> str:
    return "" if units.missing(x) else str(int(x))


def change_pct(value, base) -> float | None:
    if value is None or base is None or _nan(value) or _nan(base) or base == 0:
        return None
    return (float(value) - float(base)) / float(base) * 100.0


_nan = units.missing


def pareto_front(points: list[tuple]) -> list[bool]:
    """True for each point no other point dominates (all coordinates <=, one <)."""
    out = []
    for i, p in enumerate(points):
        dominated = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                        for j, q in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def rank(measurements, objective: str = "latency", weights: dict | None = None, run_id: str = "") -> Ranking:
    """Ranks a run's measurements (a DataFrame or list of row dicts with the export columns)."""
    if objective not in OBJECTIVES:
        raise RankingError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    weights = dict(weights or DEFAULT_WEIGHTS) if objective == "weighted" else {objective: 1.0}
    for k, w in weights.items():
        if k not in _METRICS or w < 0:
            raise RankingError(f"weight {k}={w}: known metrics are {', '.join(_METRICS)}, weights >= 0")
    rows = measurements.to_dict(orient="records") if hasattr(measurements, "to_dict") else list(measurements)
    if not rows:
        raise RankingError(f"run {run_id} has no measurements")
    rows = [{k: (None if _nan(v) else v) for k, v in r.items()} for r in rows]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    ranking = Ranking(run_id, objective, weights, [])
    for target in targets:
        _rank_target([r for r in rows if r["target"] == target], target, weights, ranking,
                     multi=len(targets) > 1)
    return ranking


def _rank_target(rows: list[dict], target: str, weights: dict, out: Ranking, multi: bool) -> None:
    from orchestrator.target_names import target_name
    where = f" on {target_name(target)}" if multi else ""
    base = next((r for r in rows if r["variant"] == "base"), None)
    if base is None or base["latency_s"] is None:
        why = "has no measurement" if base is None else f"failed ({base['error']})"
        raise RankingError(f"the base model {why}{where}: nothing to rank against")
    out.bases[target] = base
    if base["status"] == "failed":
        out.notes.append(f"the base model itself {base['error']}{where}")
    entries = []
    for r in rows:
        if r["variant"] == "base":
            continue
        if r["latency_s"] is None:
            out.failed.append(r)
            out.notes.append(f"{r['variant']}{where}: {r['error']}")
            continue
        e = {"variant": r["variant"], "target": target, "tip": r["tip"], "level": r["level"],
             "status": r["status"], "error": r["error"],
             "latency_s": r["latency_s"], "ram_bytes": r["ram_bytes"], "flash_bytes": r["flash_bytes"],
             "n_layers_on_mvp": r.get("n_layers_on_mvp")}
        for name, col in _METRICS.items():
            e[f"{name}_change_pct"] = change_pct(r[col], base[col])
        e["mvp_layers_change"] = int((r["n_layers_on_mvp"] or 0) - (base["n_layers_on_mvp"] or 0))
        parts = [(w, e[f"{k}_change_pct"]) for k, w in weights.items() if e[f"{k}_change_pct"] is not None]
        total_w = sum(w for w, _ in parts)
        e["objective_change_pct"] = sum(w * c for w, c in parts) / total_w if total_w else None
        if r["status"] != "failed" and e["mvp_layers_change"] < 0:
            out.notes.append(f"{r['variant']}{where} pushes {-e['mvp_layers_change']} layer(s) off the MVP "
                             "(they fall back to the CPU)")
        if r["status"] == "failed":
            out.notes.append(f"{r['variant']}{where}: {r['error']}; not ranked")
            out.failed.append(r)
            continue
        entries.append(e)
    measured = [base] if base["status"] == "measured" else []
    points = [(x["latency_s"], x["ram_bytes"], x["flash_bytes"]) for x in measured + entries]
    front = pareto_front(points)[len(measured):]
    for e, on_front in zip(entries, front):
        e["pareto"] = on_front
    entries.sort(key=lambda e: (e["objective_change_pct"] is None, e["objective_change_pct"] or 0.0, e["variant"]))
    prev, prev_rank = object(), 0
    for i, e in enumerate(entries, 1):
        key = None if e["objective_change_pct"] is None else round(e["objective_change_pct"], 9)
        e["rank"] = prev_rank if key == prev else i
        prev, prev_rank = key, e["rank"]
    out.entries.extend(entries)
