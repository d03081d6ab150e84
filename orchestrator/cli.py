"""`mvpfarm`: the command line, a thin layer over the Python API.

Heavy imports (Ray, pandas, TensorFlow) happen inside the subcommands that need them, so that
`mvpfarm profile` answers in a fraction of a second. User errors print one line and exit 2.
"""
from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def _profile(args: argparse.Namespace) -> int:
    from simulator import report
    from simulator.errors import ModelError
    from simulator.profiler import profile_file
    from simulator.timing import load_timing_model

    try:
        load_timing_model(args.timing)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"--timing {args.timing}: {e}") from None
    records = []
    for path in args.models:
        try:
            records.append(profile_file(path, accelerator=args.accelerator, timing=args.timing,
                                        clock_hz=args.clock_hz))
        except ModelError as e:
            raise UserError(str(e)) from None
    if args.format == "json":
        out = report.render_json(records) + "\n"
    elif args.format == "csv":
        out = report.render_csv(records)
    else:
        out = "\n".join(report.render_table(r) for r in records)
    sys.stdout.write(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mvpfarm",
        description="Benchmark farm for TinyML models on Silicon Labs EFR32xG24 (Cortex-M33 + MVP).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    prof = sub.add_parser(
        "profile", help="profile .tflite models on the simulator: flash, RAM, ops, MACs, MVP support, cycles",
        description="Profile one or more .tflite models for the EFR32xG24 without a board: flash (the "
                    "flatbuffer size), RAM (the TFLite Micro tensor arena), ops and MACs, which layers run "
                    "on the MVP accelerator (and why not), accelerator and CPU cycles, and latency.")
    prof.add_argument("models", nargs="+", metavar="MODEL", help="a .tflite file (several may be given)")
    prof.add_argument("--accelerator", choices=("mvp", "none"), default="mvp",
                      help="mvp: layers the MVP can run use its kernels (default); none: every layer on "
                           "the Cortex-M33 (CMSIS-NN / reference kernels)")
    prof.add_argument("--timing", default="vendor-sim", metavar="NAME",
                      help="timing model for cycles: a built-in name (vendor-sim: counts accelerator cycles "
                           "like the vendor's simulator) or a path to a timing-model JSON file "
                           "(default: %(default)s)")
    prof.add_argument("--format", choices=("table", "json", "csv"), default="table",
                      help="table: summary and per-layer table like the vendor's profiler (default); json: "
                           "the profile record (one object, or a list for several models); csv: one row "
                           "per layer")
    prof.add_argument("--clock-hz", type=int, default=78_000_000, metavar="HZ",
                      help="CPU and MVP clock for latency (default: %(default)s, the EFR32xG24 with radio)")
    prof.set_defaults(func=_profile)

    try:
        from orchestrator import cli_sweep
    except ImportError:
        cli_sweep = None
    if cli_sweep is not None:
        cli_sweep.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"mvpfarm: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mvpfarm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
