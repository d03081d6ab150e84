"""Latency fidelity: predicted against published on-device time, per zoo model, in one run.

Silicon Labs' published EFR32xG24 reports (tests/data/zoo/device_reports.json: measured at 78 MHz,
3 significant digits) are the ground truth. Side by side:
- `board`, cross-validated: leave one model out, fit every timing parameter on the other seven
  (simulator/calibration.py), predict the total time of the one left out. This is the honest
  number for a model the fit has not seen.
- `board` as shipped (fitted on all eight): in-sample, for reference only.
- `vendor-sim`: the vendor simulator's accelerator cycles, the hand CPU model and the vendor's
  max(acc, cpu) accounting; it never saw these measurements.
"unseen" is the share of the model's measured time spent in layers whose kernel path no other
model has, i.e. what leave-one-model-out can only guess from priors.

    .venv/bin/python bench/latency_fidelity.py [--markdown] [--write-board simulator/timing_models/board.json]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_agents.published import load_reports  # noqa: E402
from simulator import calibration as cal  # noqa: E402
from simulator.timing import load_timing_model  # noqa: E402

ZOO = ROOT / "tests" / "data" / "zoo"
REPORTS = ZOO / "device_reports.json"
BOARD_COMMAND = ".venv/bin/python bench/latency_fidelity.py --write-board simulator/timing_models/board.json"


def unseen_share(samples: list[cal.ModelSample]) -> dict[str, float]:
    out = {}
    for s in samples:
        others = {L.kernel for o in samples if o is not s for L in o.layers}
        t = sum(L.measured_time_s for L in s.layers if L.kernel not in others)
        out[s.name] = t / max(sum(L.measured_time_s for L in s.layers), 1e-12)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--write-board", metavar="PATH", help="also save the fitted board model here")
    args = ap.parse_args(argv)

    records = load_reports(REPORTS)
    samples = cal.match(records, ZOO)
    params, report = cal.calibrate(records, ZOO, base="vendor-sim", name="board")
    loo = {r["model"]: r for r in report["models"]}
    vsim = {r["model"]: r for r in report["base"]["models"]}
    shipped = {r["model"]: r for r in cal.evaluate(load_timing_model("board"), samples)} \
        if (cal.MODELS_DIR / "board.json").exists() else {}
    unseen = unseen_share(samples)

    cols = ["model", "measured ms", "board LOO ms", "board LOO err", "board in-sample err", "vendor-sim ms",
            "vendor-sim err", "unseen"]
    rows = []
    for name, r in loo.items():
        rows.append([name, f"{r['measured_s'] * 1e3:.2f}", f"{r['predicted_s'] * 1e3:.2f}", f"{r['error']:+.1%}",
                     f"{shipped[name]['error']:+.1%}" if name in shipped else "-",
                     f"{vsim[name]['predicted_s'] * 1e3:.2f}", f"{vsim[name]['error']:+.1%}",
                     f"{unseen[name]:.0%}"])
    in_mean = f"{cal.mean_abs(list(shipped.values())):.1%}" if shipped else "-"
    rows.append(["mean absolute error", "", "", f"{report['mean_abs_error']:.1%}", in_mean, "",
                 f"{report['base']['mean_abs_error']:.1%}", ""])
    seen = [r for r in report["models"] if unseen[r["model"]] < 0.01]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
        for row in rows:
            print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    print(f"\nLOO mean absolute error over the {len(seen)} models with no unseen kernel path: "
          f"{cal.mean_abs(seen):.1%}" if seen else "")
    if args.write_board:
        params["command"] = BOARD_COMMAND
        params["description"] = (
            "The EFR32xG24 as Silicon Labs' published boards measure it (tests/data/zoo/device_reports.json, "
            "78 MHz). Accelerator: vendor-sim's instruction stream (1 cycle per instruction, 1 per X/Y "
            "read-after-write hazard) plus fitted stalls per load/store element type, per switch between "
            "loaded arrays and per launch; every program counted (clamp passes too). CPU: cortex_m33_cpu's "
            "per-kernel linear model refitted per kernel path. Latency: time_scale * (max(acc, cpu) + "
            "overlap[kernel] * min(acc, cpu)) / clock. Fitted by simulator/calibration.py; cv holds the "
            "leave-one-model-out error of that procedure.")
        print(f"saved {cal.save_timing_model(params, 'board', path=args.write_board)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
