"""Tip rankings: what each tip and level changes against the base, best first.

For every measured variant and target: the change against the base on the same target in flash,
RAM, accelerator cycles, CPU cycles and latency (percent), the layers moved onto or off the MVP,
and whether the variant is on the Pareto front (latency, RAM, flash; lower is better). The
objective is one of those changes, or a weighted mean of several. Variants that failed are not
ranked; the notes say why, in particular when a tip pushes a layer off the MVP or the model past
the board's memory.

Sweeps with `[data]` add the accuracy side: each entry's `accuracy` (the emulated int8 model on the
target), `accuracy_change_pts` (100 x its change against the base: percentage points for top-1),
`feasible` and `violations` (the `constraints.Constraints` bounds it breaks, named), and the
Pareto front is over accuracy, latency, RAM and flash. With no objective given, such a run is
ordered by the decision rule: the feasible variants (within every bound, losing at most
`max_accuracy_drop_pts`) by latency saved, most first, then the infeasible ones the same way.
With several seeds, a change within the seeds' spread (100 x the larger standard deviation of the
variant's and the base's) is marked "within noise".
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from orchestrator import units
from simulator.errors import UserError

OBJECTIVES = ("accuracy", "latency", "ram", "flash", "weighted")
DECISION = "decision"           # the default order of a run with accuracy (see the module doc)
_METRICS = {"latency": "latency_s", "ram": "ram_bytes", "flash": "flash_bytes",
            "accelerator_cycles": "accelerator_cycles", "cpu_cycles": "cpu_cycles"}
DEFAULT_WEIGHTS = {"latency": 1.0, "ram": 1.0, "flash": 1.0}


class RankingError(UserError, ValueError):
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
    has_accuracy: bool = False
    constraints: object = None          # constraints.Constraints applied, for a run with accuracy
    rule: str = ""                      # how the entries are ordered, in words

    def to_json_list(self) -> list[dict]:
        """The interface-contract form: one object per ranked tip level, ordered by rank."""
        keys = ("tip", "level", "objective_change_pct", "flash_change_pct", "ram_change_pct",
                "latency_change_pct", "accelerator_cycles_change_pct", "cpu_cycles_change_pct",
                "mvp_layers_change", "mvp_refused_layers", "pareto", "rank", "variant", "target", "accuracy",
                "accuracy_change_pts", "feasible", "violations")
        extra = ("accuracy_float", "accuracy_tflite", "agreement_tflite", "accuracy_std", "within_noise")
        return [{k: e.get(k) for k in keys + (extra if self.has_accuracy else ())} for e in self.entries]

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
        what = (f"ranked by {self.objective_label}, lower is better" if self.objective not in ("accuracy", DECISION)
                else "ranked by accuracy, best first" if self.objective == "accuracy"
                else "ranked by latency saved, feasible variants first")
        if self.has_accuracy:       # the accuracy beside the resources, and the bounds each one breaks
            head[2:2] = ["accuracy", "change"]
            numeric[2:2] = [True, True]
            head.append("feasible")
            numeric.append(False)
        lines = [f"Order: {self.rule}", ""] if self.rule else []
        for target in dict.fromkeys([*self.bases, *(e["target"] for e in self.entries)]):
            b = self.bases.get(target, {})
            rows = [["base", "(the base model)"] + ([""] if weighted else [])
                    + [units.ms(b.get("latency_s")), "", units.kb(b.get("ram_bytes")), "",
                       units.kb(b.get("flash_bytes")), "", _count(b.get("n_layers_on_mvp")), ""]]
            if self.has_accuracy:
                rows[0][2:2] = [accuracy_text(b), ""]
                rows[0].append("yes" if not b.get("violations") else "no: " + "; ".join(b["violations"]))
            for e in (e for e in self.entries if e["target"] == target):
                rows.append([str(e["rank"]), e["variant"]]
                            + ([units.pct(e["objective_change_pct"])] if weighted else [])
                            + [units.ms(e["latency_s"]), units.pct(e["latency_change_pct"]),
                               units.kb(e["ram_bytes"]), units.pct(e["ram_change_pct"]),
                               units.kb(e["flash_bytes"]), units.pct(e["flash_change_pct"]),
                               f"{_count(e.get('n_layers_on_mvp'))} ({e['mvp_layers_change']:+d})",
                               "*" if e["pareto"] else ""])
                if self.has_accuracy:
                    rows[-1][2:2] = [accuracy_text(e), pts_text(e)]
                    rows[-1].append("yes" if e["feasible"] else "no: " + "; ".join(e["violations"]))
            lines.append(terminal.table(head, rows, numeric,
                                        title=f"Tip ranking for {self.run_id} on {target_name(target)} ({what})"))
        if self.notes:
            lines += ["Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    @property
    def objective_label(self) -> str:
        if self.objective == DECISION:
            return "latency saved, feasible variants first"
        if self.objective != "weighted":
            return self.objective
        return "weighted change (" + ", ".join(f"{k} {v:g}" for k, v in self.weights.items()) + ")"


def _count(x) -> str:
    return "" if units.missing(x) else str(int(x))


def accuracy_text(e: dict) -> str:
    if e.get("accuracy") is None:
        return "n/a"
    return f"{e['accuracy']:.4f}" + (f" ±{e['accuracy_std']:.4f}" if e.get("accuracy_std") is not None else "")


def pts_text(e: dict) -> str:
    if e.get("accuracy_change_pts") is None:
        return "n/a"
    return f"{e['accuracy_change_pts']:+.2f} pts" + (" (within noise)" if e.get("within_noise") else "")


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


def rank(measurements, objective: str | None = "latency", weights: dict | None = None, run_id: str = "",
         constraints=None, refused: dict | None = None) -> Ranking:
    """Ranks a run's measurements (a DataFrame or list of row dicts with the export columns).
    `objective=None`: the decision rule for a run with accuracy, else latency. `constraints`
    (`constraints.Constraints`) decide feasibility; a run with accuracy gets the defaults.
    `refused` ((variant, target) -> `refused_layers` of its record) lets the notes and entries
    name the layers a tip pushes off the MVP and the check that refused each."""
    rows = measurements.to_dict(orient="records") if hasattr(measurements, "to_dict") else list(measurements)
    has_accuracy = any(r.get("metric") not in (None, "") and not _nan(r.get("metric")) for r in rows)
    if objective is None:
        objective = DECISION if has_accuracy else "latency"
    if objective == "accuracy" and not has_accuracy:
        raise RankingError(f"run {run_id} has no accuracy (its sweep file has no [data]): rank it by "
                           "latency, ram, flash or weighted")
    if objective not in OBJECTIVES + (DECISION,):
        raise RankingError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    weights = dict(weights or DEFAULT_WEIGHTS) if objective == "weighted" else {
        "latency" if objective == DECISION else objective: 1.0}
    for k, w in weights.items():
        if k == "accuracy" and objective == "accuracy":
            continue
        if k not in _METRICS or w < 0:
            raise RankingError(f"weight {k}={w}: known metrics are {', '.join(_METRICS)}, weights >= 0")
    if not rows:
        raise RankingError(f"run {run_id} has no measurements")
    rows = [{k: (None if _nan(v) else v) for k, v in r.items()} for r in rows]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    ranking = Ranking(run_id, objective, weights, [], has_accuracy=has_accuracy)
    if has_accuracy:
        from orchestrator.constraints import Constraints
        ranking.constraints = constraints or Constraints()
        ranking.rule = _rule(objective, ranking.constraints)
    elif constraints is not None:
        ranking.constraints = constraints
    for target in targets:
        _rank_target([r for r in rows if r["target"] == target], target, weights, ranking,
                     multi=len(targets) > 1, refused=refused or {})
    return ranking


def _rule(objective: str, bounds) -> str:
    within = bounds.describe()
    if objective == DECISION:
        return (f"most latency saved among the feasible variants ({within}), then the infeasible ones; "
                "accuracy is the emulated int8 model's on the target")
    if objective == "accuracy":
        return f"accuracy, best first; feasible = within {within}"
    return f"{objective} change, lowest first; feasible = within {within}"


def _rank_target(rows: list[dict], target: str, weights: dict, out: Ranking, multi: bool,
                 refused: dict) -> None:
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
        e["mvp_refused_layers"] = _newly_refused(refused.get((r["variant"], target)),
                                                 refused.get(("base", target)))
        _accuracy_fields(e, r, base, out)
        parts = [(w, e[f"{k}_change_pct"]) for k, w in weights.items()
                 if k in _METRICS and e[f"{k}_change_pct"] is not None]
        total_w = sum(w for w, _ in parts)
        e["objective_change_pct"] = sum(w * c for w, c in parts) / total_w if total_w else None
        if r["status"] != "failed":
            note = _mvp_note(r, base, e["mvp_layers_change"], e["mvp_refused_layers"])
            if note:
                out.notes.append(f"{r['variant']}{where} {note}")
        if r["status"] == "failed":
            out.notes.append(f"{r['variant']}{where}: {r['error']}; not ranked")
            out.failed.append(r)
            continue
        entries.append(e)
    measured = [base] if base["status"] == "measured" else []
    if out.has_accuracy:
        base_e = {"accuracy": _num(base.get("accuracy")), "metric_higher_is_better": base.get("metric_higher_is_better")}
        points = [(x["latency_s"], x["ram_bytes"], x["flash_bytes"], _worse_is_larger(y))
                  for x, y in zip(measured + entries, ([base_e] if measured else []) + entries)]
        base_e.update(latency_s=base["latency_s"], ram_bytes=base["ram_bytes"], flash_bytes=base["flash_bytes"])
        base_violations = out.constraints.violations(base_e, _higher(base))
        out.bases[target] = dict(base, violations=base_violations)     # the table's base row shows them
    else:
        points = [(x["latency_s"], x["ram_bytes"], x["flash_bytes"]) for x in measured + entries]
    front = pareto_front(points)[len(measured):]
    for e, on_front in zip(entries, front):
        e["pareto"] = on_front
    objective = out.objective
    if objective == "accuracy":
        def order(e):
            a = e.get("accuracy")
            return (a is None, -(a or 0.0) if e.get("higher") else (a or 0.0), e["variant"])
    elif objective == DECISION:
        def order(e):
            return (not e["feasible"], e["objective_change_pct"] is None, e["objective_change_pct"] or 0.0,
                    e["variant"])
    else:
        def order(e):
            return (e["objective_change_pct"] is None, e["objective_change_pct"] or 0.0, e["variant"])
    entries.sort(key=order)
    prev, prev_rank = object(), 0
    for i, e in enumerate(entries, 1):
        key = order(e)[:-1]
        e["rank"] = prev_rank if key == prev else i
        prev, prev_rank = key, e["rank"]
    out.entries.extend(entries)


# the op a converter names the tensor of each operator's own Keras layer after ("model/layer/op")
_OWN_OP = {"conv_2d": ("convolution", "conv2d"), "depthwise_conv_2d": ("depthwise",),
           "fully_connected": ("matmul", "tensordot", "dense"), "transpose_conv": ("conv2d_transpose", "transpose")}


def _keras_layer(tensor_name: str, opcode: str) -> str | None:
    """The Keras layer an operator comes from, read off its output tensor's name: the converter
    joins the names of the ops it fused with ";" (activation, batch norm, padding, the layer's own
    op), so the piece whose op is the operator's own names its layer; else the first piece's."""
    pieces = [p.split("/") for p in tensor_name.split(";") if p.count("/") >= 1]
    if not pieces:
        return None
    own = [p for p in pieces if any(k in p[-1].lower() for k in _OWN_OP.get(opcode, ()))]
    return (own or pieces)[0][-2]


def refused_layers(record) -> list[dict]:
    """The layers a profile record's MVP refused, each {"layer": its Keras layer (or "#index opcode"
    when the tensor names do not say), "index", "opcode", "input" (shape, as `mvpfarm profile`
    shows it), "check": the reason the MVP's check gave}."""
    out = []
    for L in record.layers:
        if L.reason is None:
            continue
        name = _keras_layer(L.outputs[0].name, L.opcode) if L.outputs and L.outputs[0].name else None
        out.append({"layer": name or f"#{L.index} {L.opcode}", "index": L.index, "opcode": L.opcode,
                    "input": L.inputs[0].shape_str() if L.inputs else "", "check": L.reason})
    return out


def refused_in_run(db, run_id: str) -> dict:
    """(variant, target) -> `refused_layers` of each stored record of the run (`rank`'s `refused`)."""
    from simulator.record import ProfileRecord
    return {(row["variant"], row["target"]): refused_layers(ProfileRecord.from_json(row["record_json"]))
            for row in db.measurement_rows(run_id) if row["record_json"]}


def _newly_refused(variant: list[dict] | None, base: list[dict] | None) -> list[dict] | None:
    """The variant's refused layers that the base's MVP does not refuse too, matched by Keras layer
    and opcode (a tip changes shapes: a layer refused in both may be refused with other numbers)."""
    if variant is None or base is None:
        return None
    known = {(x["layer"], x["opcode"]) for x in base}
    return [x for x in variant if (x["layer"], x["opcode"]) not in known]


def _refused_text(x: dict) -> str:
    where = f"#{x['index']} {x['opcode']}"
    if x["layer"] == where:
        return f"{where} on {x['input']} ({x['check']})"
    return f"{x['layer']} ({where} on {x['input']}: {x['check']})"


def _mvp_note(r: dict, base: dict, mvp_change: int, newly_refused: list[dict] | None = None) -> str | None:
    """What a change in the MVP layer count means. A layer falls back to the CPU when the MVP's
    limits refuse it (`n_unsupported`, the layers with a reason), and the note names those layers
    and the checks that refused them when the records are at hand; fewer MVP layers without that
    is a smaller graph (an unrolled GRU over fewer time steps), which the table's count alone would
    make look like a loss of acceleration."""
    if r.get("n_unsupported") is None or base.get("n_unsupported") is None:
        return (f"has {-mvp_change} fewer layer(s) on the MVP" if mvp_change < 0 else None)
    fallback = int(r["n_unsupported"]) - int(base["n_unsupported"])
    if fallback > 0:
        if newly_refused:
            named = "; ".join(_refused_text(x) for x in newly_refused)
            return (f"pushes {fallback} more layer(s) off the MVP: the MVP's limits refuse {named}; "
                    "they fall back to the CPU")
        return (f"pushes {fallback} more layer(s) off the MVP: the MVP's limits refuse them and they "
                "fall back to the CPU")
    if fallback < 0:
        return f"brings {-fallback} layer(s) onto the MVP that the base runs on the CPU (its limits refused them)"
    if mvp_change < 0:
        fewer = (f": the model has {int(base['n_layers']) - int(r['n_layers'])} fewer layers"
                 if r.get("n_layers") is not None and base.get("n_layers") is not None
                 and int(r["n_layers"]) < int(base["n_layers"]) else "")
        return f"has {-mvp_change} fewer layer(s) on the MVP{fewer}; none falls back to the CPU"
    return None


def _num(x):
    return None if x is None or _nan(x) else float(x)


def _higher(r: dict) -> bool:
    h = r.get("metric_higher_is_better")
    return True if h is None or _nan(h) else bool(h)


def _worse_is_larger(e: dict) -> float:
    """A point's accuracy as a Pareto coordinate (lower is better); none is the worst."""
    a = e.get("accuracy")
    if a is None:
        return math.inf
    return -a if _higher(e) else a


def _accuracy_fields(e: dict, r: dict, base: dict, out: Ranking) -> None:
    """Accuracy, its change against the base, noise, feasibility and violations of one entry."""
    higher = _higher(r)
    e["higher"] = higher
    e["metric_higher_is_better"] = higher
    for k in ("accuracy", "accuracy_float", "accuracy_tflite", "agreement_tflite", "accuracy_std"):
        e[k] = _num(r.get(k))
    e["accuracy_change_pts"] = e["within_noise"] = None
    drop = None
    b = _num(base.get("accuracy"))
    if e["accuracy"] is not None and b is not None:
        e["accuracy_change_pts"] = 100.0 * (e["accuracy"] - b)
        drop = -e["accuracy_change_pts"] if higher else e["accuracy_change_pts"]
        stds = [s for s in (e["accuracy_std"], _num(base.get("accuracy_std"))) if s is not None]
        if stds:
            e["within_noise"] = abs(e["accuracy_change_pts"]) <= 100.0 * max(stds)
    if r.get("accuracy_error") and not _nan(r.get("accuracy_error")):
        out.notes.append(f"{r['variant']} on {r['target']}: no accuracy ({r['accuracy_error']})")
    if not out.has_accuracy:
        e["feasible"], e["violations"] = True, []
        if out.constraints is not None:
            e["violations"] = out.constraints.violations(e, higher)
            e["feasible"] = not e["violations"]
        return
    e["violations"] = out.constraints.violations(e, higher, drop)
    e["feasible"] = not e["violations"]
