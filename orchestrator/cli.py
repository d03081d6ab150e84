"""`mvpfarm`: the command line, a thin layer over the Python API.

Heavy imports (Ray, pandas, TensorFlow) happen inside the subcommands that need them, so that
`mvpfarm profile` answers in a fraction of a second. User errors (`simulator.errors.UserError`,
the root of every package's user errors) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import sys

from orchestrator.cli_errors import user_error_exit
from simulator.errors import UserError
from simulator.hardware import ACCELERATORS, CLOCK_HZ


def _profile(args: argparse.Namespace) -> int:
    from simulator import profile_table
    from simulator.profiler import attach_execution, profile_file
    from orchestrator.timing_models import resolve as resolve_timing

    try:
        timing = resolve_timing(args.timing)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"--timing {args.timing}: {e}") from None
    records = []
    for path in args.models:            # a ModelError is a UserError: one line, exit 2
        rec = profile_file(path, accelerator=args.accelerator, timing=timing, clock_hz=args.clock_hz)
        if args.execute:
            attach_execution(rec, path, seed=args.seed, count=args.count, timing=timing)
        records.append(rec)
    if args.format == "json":
        out = profile_table.render_json(records) + "\n"
    elif args.format == "csv":
        out = profile_table.render_csv(records)
    else:
        out = "\n".join(profile_table.render_table(r) for r in records)
    sys.stdout.write(out)
    return 0


def _emulate(args: argparse.Namespace) -> int:
    import json

    from simulator.emulator import emulate_file

    if args.count < 1:
        raise UserError(f"--count must be at least 1, not {args.count}")
    res = emulate_file(args.model, accelerator=args.accelerator, seed=args.seed, count=args.count)
    ref = emulate_file(args.model, accelerator="none", seed=args.seed, count=args.count) \
        if args.accelerator == "mvp" and args.format == "table" else None
    if args.format == "json":
        print(json.dumps(res))
        return 0
    from orchestrator import terminal
    floats = any(isinstance(v, float) for r in res["results"] for v in r["output"])
    head = ["input", "sha1", "argmax", "output" + (" (float)" if floats else " (int8)")]
    if ref is not None:
        head += ["drift vs reference kernels", "max drift"]
    rows = []
    for i, r in enumerate(res["results"]):
        out = r["output"]
        best = max(range(len(out)), key=out.__getitem__)
        shown = ", ".join(_value(v, floats) for v in out[:8])
        row = [i, r["input_sha1"][:12], best, f"[{shown}{', ...' if len(out) > 8 else ''}]"]
        if ref is not None:
            steps = [abs(a - b) for a, b in zip(out, ref["results"][i]["output"])]
            row += [f"{sum(1 for d in steps if d)}/{len(out)} moved", _value(max(steps), floats)]
        rows.append(row)
    print(terminal.table(head, rows, [True, False, True, False, False, True],
                         title=f"{res['model']}: {args.count} input(s) drawn with seed {args.seed}, "
                               f"accelerator {args.accelerator}"), end="")
    return 0


def _value(v, floats: bool) -> str:
    """An output value: floats as floats (0.0000, never 0), int8 steps as integers."""
    return f"{float(v):.4f}" if floats else str(int(v))


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
    prof.add_argument("--accelerator", choices=ACCELERATORS, default="mvp",
                      help="mvp: layers the MVP can run use its kernels (default); none: every layer on "
                           "the Cortex-M33 (CMSIS-NN / reference kernels)")
    prof.add_argument("--timing", default="board", metavar="NAME",
                      help="timing model for cycles and latency: board (predicts what an EFR32xG24 board "
                           "measures, fitted to Silicon Labs' published board reports), vendor-sim (counts "
                           "accelerator cycles exactly like the vendor's simulator, latency max(acc, cpu)), "
                           "a model saved by `mvpfarm calibrate` under results/timing_models/, or a path to a "
                           "timing-model JSON file (default: %(default)s)")
    prof.add_argument("--format", choices=("table", "json", "csv"), default="table",
                      help="table: summary and per-layer table like the vendor's profiler (default); json: "
                           "the profile record (one object, or a list for several models); csv: one row "
                           "per layer")
    prof.add_argument("--clock-hz", type=int, default=CLOCK_HZ, metavar="HZ",
                      help="CPU and MVP clock for latency (default: %(default)s, the EFR32xG24 with radio)")
    prof.add_argument("--execute", action="store_true",
                      help="also run the model in the emulator (MVP programs in binary16, TFLM-exact int8 "
                           "kernels) on seeded inputs: adds per layer the accelerator cycles of the executed "
                           "programs and the drift against the reference kernels, and the outputs' drift")
    prof.add_argument("--seed", type=int, default=0, help="with --execute: input seed (default: %(default)s)")
    prof.add_argument("--count", type=int, default=1,
                      help="with --execute: number of inputs (default: %(default)s)")
    prof.set_defaults(func=_profile)

    emu = sub.add_parser(
        "emulate", help="run a model as the EFR32xG24 would (MVP programs in binary16, TFLM-exact int8 kernels)",
        description="Run a .tflite model on seeded inputs with the emulator: MVP layers execute as MVP programs "
                    "in binary16, every other layer with int8 kernels bit-exact with TFLite Micro's reference "
                    "kernels. Inputs are drawn like the vendor oracle's: numpy default_rng(SEED), int8 inputs "
                    "uniform in [-128, 127], float32 inputs uniform in [0, 1).")
    emu.add_argument("model", metavar="MODEL", help="a .tflite file")
    emu.add_argument("--accelerator", choices=ACCELERATORS, default="mvp",
                     help="mvp: MVP layers as MVP programs (default); none: the reference-kernel build")
    emu.add_argument("--seed", type=int, default=0, help="input seed (default: %(default)s)")
    emu.add_argument("--count", type=int, default=3, help="number of inputs (default: %(default)s)")
    emu.add_argument("--format", choices=("table", "json"), default="table",
                     help="table: outputs per input with drift against the reference kernels (default); json: "
                          '{"model", "accelerator", "seed", "results": [{"input_sha1", "output"}]}')
    emu.set_defaults(func=_emulate)

    from device_agents import cli_boards
    from orchestrator import cli_compare, cli_sweep
    cli_sweep.register(sub)
    cli_boards.register(sub)
    cli_compare.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        return user_error_exit(e)
    except KeyboardInterrupt:
        print("mvpfarm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
