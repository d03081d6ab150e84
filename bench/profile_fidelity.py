"""Profile fidelity: mvpfarm's numbers against the vendor simulator's (the oracle), model by model.

For every model with oracle numbers (tests/data/*/mltk_sim.jsonl), MVP build, `--timing vendor-sim`:
RAM error (against the worst case where the vendor's number depends on its heap leftovers, tests/oracle_ram.py),
per-layer MVP support agreement, accelerator-cycle error of the model and mean absolute
percentage error over its layers. Ops, MACs, flash and layer counts are exact (the tests check).

    .venv/bin/python bench/profile_fidelity.py            # Markdown table on stdout
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from simulator.mvp_plan import plan_layer  # noqa: E402
from simulator.profiler import profile_file  # noqa: E402
from simulator.tflite_reader import read_model_file  # noqa: E402
from oracle_ram import oracle_ram_bytes  # noqa: E402  (the worst case where the vendor's number is heap-dependent)


def pct(got: float, want: float) -> float:
    return 100.0 * (got - want) / want if want else 0.0


def main() -> int:
    rows, skipped = [], []
    for jsonl in sorted((ROOT / "tests" / "data").glob("*/mltk_sim.jsonl")):
        for line in jsonl.read_text().splitlines():
            rec = json.loads(line)
            res = rec.get("result", {})
            if "summary" not in res:
                continue
            if any("Failed to prepare" in (L.get("error_msg") or "") for L in res["layers"]):
                skipped.append(f"{jsonl.parent.name}/{rec['model']}-{rec['accelerator']}")
                continue        # the oracle did not load it: its numbers are not a load size
            path = jsonl.parent / f"{rec['model']}.tflite"
            acc = rec["accelerator"]
            prof = profile_file(path, accelerator=acc, timing="vendor-sim")
            s = res["summary"]
            ram_err = pct(prof.summary.ram_bytes, oracle_ram_bytes(path, acc, s))
            if acc == "none":
                rows.append((f"{jsonl.parent.name}/{rec['model']}", acc, ram_err, None, None, None))
                continue
            # the vendor's verdict, which the profile record keeps only in a note where the layer
            # runs on the MVP anyway; the oracle calls a layer without an MVP kernel "supported"
            graph = read_model_file(path)
            verdicts = [p.supported or not p.has_mvp_kernel for p in (plan_layer(graph, op) for op in graph.operators)]
            agree = sum(1 for v, o in zip(verdicts, res["layers"]) if v == o.get("supported", True))
            layer_errs = [abs(pct(L.accelerator_cycles, o["accelerator_cycles"]))
                          for L, o in zip(prof.layers, res["layers"]) if o.get("accelerator_cycles")]
            rows.append((f"{jsonl.parent.name}/{rec['model']}", acc, ram_err,
                         pct(prof.summary.accelerator_cycles, s.get("accelerator_cycles") or 0),
                         sum(layer_errs) / len(layer_errs) if layer_errs else 0.0,
                         f"{agree}/{len(res['layers'])}"))

    print("| model | build | RAM error | MVP support agrees | accel. cycles error (model) | layer MAPE |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, acc, ram, cyc, mape, agree in rows:
        print(f"| {name} | {acc} | {ram:+.2f}% | {agree or '-'} | "
              f"{'-' if cyc is None else f'{cyc:+.2f}%'} | {'-' if mape is None else f'{mape:.2f}%'} |")
    for data_set in sorted({r[0].split("/")[0] for r in rows}):
        sub = [r for r in rows if r[0].startswith(data_set + "/")]
        ram = [r[2] for r in sub]
        cyc = [abs(r[3]) for r in sub if r[3] is not None]
        print(f"\n{data_set}: {len(sub)} profiles: RAM error min {min(ram):+.2f}% max {max(ram):+.2f}%; "
              f"accelerator cycles |error| per model max {max(cyc):.3f}%", end="")
    print(f"\nnot compared (the oracle failed to prepare them): {', '.join(skipped) or 'none'}")
    rams = [abs(r[2]) for r in rows]
    cycs = [abs(r[3]) for r in rows if r[3] is not None]
    mapes = [r[4] for r in rows if r[4] is not None]
    print(f"\n{len(rows)} profiles: RAM |error| max {max(rams):.2f}% (mean {sum(rams) / len(rams):.3f}%); "
          f"accelerator cycles |error| per model max {max(cycs):.3f}%, mean per-layer MAPE "
          f"{sum(mapes) / len(mapes):.3f}% (worst model {max(mapes):.3f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
