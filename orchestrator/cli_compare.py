"""`mvpfarm compare`, `mvpfarm calibrate`, `mvpfarm nightly`: simulated against measured.

Thin: each calls orchestrator.compare (with record_sources and run_records for its two sides),
simulator.calibration or orchestrator.nightly. User errors (`simulator.errors.UserError`, through
`cli_errors.guarded`) are one line on stderr and exit status 2; `nightly` exits 1 when something regressed, and
`calibrate` exits 1 when it refuses to save a fit that predicts held-out models worse than the
base timing model.

    mvpfarm compare --measured tests/data/zoo/device_reports.json --models tests/data/zoo
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from orchestrator.cli_errors import guarded as _guarded
from simulator.errors import UserError

DEFAULT_RESULTS = "results"


def _device_side(args, measured_spec: str | None):
    from orchestrator import record_sources, run_records
    if args.run:
        return run_records.records_from_run(args.results, args.run, measured=True, target=args.device_target)
    if not measured_spec:
        raise UserError("give the measured side: --measured FILE_OR_RUN, or --run RUN")
    return record_sources.load_side(measured_spec, args.results, measured=True, target=args.device_target,
                                    model_path=args.models[0] if args.models and len(args.models) == 1 else None)


# ------------------------------------------------------------------ compare

def _compare(args) -> int:
    from orchestrator import compare as C
    from orchestrator import record_sources, run_records
    measured = _device_side(args, args.measured)
    if args.run and not args.simulated:
        simulated = run_records.records_from_run(args.results, args.run, measured=False, target=args.sim_target)
    elif args.simulated:
        simulated = record_sources.load_side(args.simulated, args.results, measured=False, target=args.sim_target)
    elif args.models:
        simulated = record_sources.profile_models(args.models, args.timing, args.results)
    else:
        raise UserError("give the simulated side: --simulated FILE_OR_RUN, --models FILES, or --run RUN")
    comparison = C.compare(simulated, measured, threshold_pct=args.threshold)
    label = args.run or (Path(args.measured).stem if args.measured else "comparison")
    out_dir = Path(args.out) if args.out else Path(args.results) / "compare" / Path(label).name
    paths = comparison.write(out_dir)
    if args.format == "json":
        sys.stdout.write(json.dumps(comparison.to_dict(), indent=1) + "\n")
    else:
        from orchestrator.compare_report import terminal_summary
        sys.stdout.write(terminal_summary(comparison, paths))
    return 0


# ------------------------------------------------------------------ calibrate

def _calibrate(args) -> int:
    from orchestrator import run_records
    from simulator import calibration as cal
    from simulator.errors import ModelError
    with tempfile.TemporaryDirectory(prefix="mvpfarm-calibrate-") as tmp:
        records = _device_side(args, args.measured)
        models = list(args.models or [])
        if args.run and not models:
            models = [str(run_records.run_model_files(args.results, args.run, tmp))]
        if not models:
            raise UserError("--models: give the .tflite files (or folders) of the measured models")
        params, report = cal.calibrate(records, models, base=args.base, name=args.name, results_dir=args.results)
    saved, refused = None, None
    if not args.dry_run:
        try:
            saved = cal.save_timing_model(params, args.name, args.results, path=args.out)
        except ModelError as e:
            refused = str(e)
    if args.format == "json":
        print(json.dumps({"report": report, "timing_model": params, "saved": str(saved) if saved else None,
                          "refused": refused}, indent=1))
    else:
        print(f"leave-one-model-out cross-validation on {len(report['models'])} models "
              f"(each predicted by a fit to the others), against {args.base}:")
        print(cal.format_report(report))
        if saved:
            print(f"saved {saved}: use it with --timing {args.name if not args.out else saved}")
    if refused:
        print(f"mvpfarm: {refused}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ nightly

def _nightly(args) -> int:
    from orchestrator import nightly
    result = nightly.run(args.suite, args.results, baseline=args.baseline, update_baseline=args.update_baseline,
                         address=args.address, num_cpus=args.num_cpus)
    for line in result.summary_lines():
        print(line)
    for note in result.notes:
        print(f"note: {note}")
    if args.junit:
        Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit).write_bytes((result.out_dir / "junit.xml").read_bytes())
    return result.exit_code


# ------------------------------------------------------------------ the parser

def register(sub) -> None:
    """Adds compare, calibrate and nightly to the CLI's subparsers."""
    results_help = f"results folder holding mvpfarm.sqlite (default: {DEFAULT_RESULTS})"

    def device_args(p):
        p.add_argument("--measured", metavar="SRC",
                       help="device numbers: published reports (.json, device_reports.json's shape), profile "
                            "records (.json), published measurements (.csv: model, layer, opcode, "
                            "accelerator_cycles, cpu_cycles, latency_s, ram_bytes), a vendor profiler log "
                            "(.log/.txt), or a run id / latest in the result table")
        p.add_argument("--run", metavar="RUN", help="a run with both simulator and board targets (or latest)")
        p.add_argument("--device-target", metavar="KEY", help="which board target of the run (e.g. board/brd2601b)")
        p.add_argument("--models", nargs="+", metavar="PATH", help=".tflite files or folders, matched by name")
        p.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help=results_help)

    cmp = sub.add_parser(
        "compare", help="simulated against on-device numbers, per model and per layer",
        description="Put simulated and measured numbers for the same models side by side: per model and per "
                    "layer the signed error and its percentage for RAM, cycles and latency; mean absolute "
                    "percentage error, worst layers, bias per opcode, the layers over a threshold, and a "
                    "scatter plot. Writes comparison.md/.html/.json and scatter.png.")
    device_args(cmp)
    cmp.add_argument("--simulated", metavar="SRC", help="simulated numbers: a run id or profile-record JSON "
                                                        "(default: profile --models here with --timing)")
    cmp.add_argument("--sim-target", metavar="KEY", help="which simulator target of the run, e.g. simulator/mvp/board")
    cmp.add_argument("--timing", default="board", metavar="NAME",
                     help="timing model when profiling --models (default: %(default)s)")
    cmp.add_argument("--threshold", type=float, default=20.0, metavar="PCT",
                     help="list layers whose |error| passes PCT percent (default: %(default)s)")
    cmp.add_argument("--out", metavar="DIR", help="report folder (default: RESULTS/compare/NAME)")
    cmp.add_argument("--format", choices=("markdown", "json"), default="markdown",
                     help="markdown: a short summary on stdout, the full report in the files (default); "
                          "json: the whole comparison on stdout")
    cmp.set_defaults(func=_guarded(_compare))

    cal = sub.add_parser(
        "calibrate", help="fit the simulator's timing to device measurements; save it as a named timing model",
        description="Fit accelerator, CPU and latency parameters to device measurements, report the "
                    "leave-one-model-out error per model against the base timing model, and save the fit as "
                    "RESULTS/timing_models/NAME.json (use it with --timing NAME) unless its cross-validated "
                    "error is worse than the base's (exit status 1).")
    device_args(cal)
    cal.add_argument("--base", default="board", metavar="NAME",
                     help="the timing model the fit must beat (default: %(default)s)")
    cal.add_argument("--name", default="calibrated", help="name of the fitted timing model (default: %(default)s)")
    cal.add_argument("--out", metavar="PATH", help="write here instead of RESULTS/timing_models/NAME.json")
    cal.add_argument("--dry-run", action="store_true", help="report only; save nothing")
    cal.add_argument("--format", choices=("table", "json"), default="table")
    cal.set_defaults(func=_guarded(_calibrate))

    ni = sub.add_parser(
        "nightly", help="run a regression suite and judge it against a baseline (exit 1 on regression)",
        description="Run the suite's sweeps and models (simulator, and boards when the cluster has them), "
                    "compare every metric with the baseline (the last passing nightly, or --baseline), and "
                    "write RESULTS/nightly/NIGHT/report.md, report.html, junit.xml and trend plots. Exit "
                    "status 0: nothing regressed; 1: regressions, each named; 2: unusable suite, baseline or "
                    "result file.")
    ni.add_argument("--suite", required=True, metavar="FILE", help="the suite file (.toml)")
    ni.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help=results_help)
    ni.add_argument("--baseline", metavar="ID", help="a nightly id or run id to compare with "
                                                    "(default: the suite's last passing nightly)")
    ni.add_argument("--update-baseline", action="store_true",
                    help="accept tonight's numbers as the new baseline (exit 0 whatever changed)")
    ni.add_argument("--address", metavar="ADDR", help="Ray cluster with board agents (default: RAY_ADDRESS)")
    ni.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of a local Ray for the sweeps")
    ni.add_argument("--junit", metavar="PATH", help="also write the JUnit XML here (for CI)")
    ni.set_defaults(func=_guarded(_nightly))
