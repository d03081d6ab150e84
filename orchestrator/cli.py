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
    if args.device is not None:
        return _profile_on_device(args, records)
    if args.compare:
        raise UserError("--compare compares a board's measurement with the simulator's: add --device [PORT]")
    if args.format == "json":
        out = profile_table.render_json(records) + "\n"
    elif args.format == "csv":
        out = profile_table.render_csv(records)
    else:
        out = "\n".join(profile_table.render_table(r) for r in records)
    sys.stdout.write(out)
    return 0


def _profile_on_device(args: argparse.Namespace, simulated: list) -> int:
    """`profile --device`: each model measured on one attached board, with the simulator's record
    of it beside the measurement under --compare."""
    import json

    from device_agents import single_board as SB
    from device_agents.agent import AgentConfig
    from device_agents.commander import CommanderError
    from device_agents.port_lock import PortBusy
    from simulator import profile_table

    config = AgentConfig(profile_timeout_s=args.device_timeout_s, image=args.image, commander=args.commander)
    try:
        port = SB.default_port(args.device)
        firmware = args.firmware
        if firmware == "auto":
            commander = None
            try:
                commander = SB.commander_for(port, args.commander)
            except CommanderError:
                pass
            found = SB.detect(port, commander=commander)
            if found.firmware == SB.UNKNOWN:
                raise UserError(f"--device {port}: firmware unknown: {found.seen}")
            firmware = found.firmware
        models = []
        for path, sim in zip(args.models, simulated):
            with open(path, "rb") as f:
                models.append((f.read(), sim.model.name))
        measured = SB.measure_all(port, models, firmware, config)
    except (SB.BoardUnusable, PortBusy, CommanderError) as e:
        raise UserError(f"--device: {e}") from None
    if not args.compare:
        if args.format == "json":
            sys.stdout.write(profile_table.render_json(measured) + "\n")
        elif args.format == "csv":
            sys.stdout.write(profile_table.render_csv(measured))
        else:
            sys.stdout.write("\n".join(profile_table.render_table(r) for r in measured))
        return 0
    from orchestrator.compare import compare_records
    pairs = [(sim, dev, compare_records(sim, dev)) for sim, dev in zip(simulated, measured)]
    if args.format == "json":
        out = [{"device": d.to_dict(), "simulator": s.to_dict(), "comparison": c.to_dict()} for s, d, c in pairs]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    elif args.format == "csv":
        sys.stdout.write(profile_table.render_csv([r for s, d, _ in pairs for r in (d, s)]))
    else:
        for s, d, c in pairs:
            sys.stdout.write(profile_table.render_table(d))
            print(_comparison_text(c))
    return 0


def _comparison_text(c) -> str:
    """Measured against predicted, per layer and in total (latency and cycles)."""
    def pct(delta) -> str:
        return "n/a" if delta.error_pct is None else f"{delta.error_pct:+.1f}%"
    lines = [f"Simulator ({c.simulated_target}) against the board ({c.measured_target}): error = simulated - measured"]
    for name in ("latency_s", "accelerator_cycles", "cpu_cycles", "ram_bytes"):
        d = c.deltas.get(name)
        if d is not None:
            lines.append(f"  {name:<20} measured {d.measured:>14,.6g}  simulated {d.simulated:>14,.6g}  {pct(d)}")
    if c.note:
        lines.append(f"  {c.note}")
    for L in c.layers:
        d = L.deltas.get("latency_s")
        if d is not None:
            lines.append(f"  layer {L.index:>3} {L.opcode:<18} {d.measured * 1e3:9.3f} ms measured, "
                         f"{d.simulated * 1e3:9.3f} ms simulated  {pct(d)}")
    return "\n".join(lines)


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
    dev = prof.add_argument_group("on a board (mvpfarm's protocol firmware or Silicon Labs' model profiler)")
    dev.add_argument("--device", nargs="?", const="", default=None, metavar="PORT",
                     help="measure on the board on PORT (default: the only J-Link port) instead, without Ray; "
                          "the same table and JSON, with target.source = \"device\"")
    dev.add_argument("--compare", action="store_true", help="with --device: the simulator's prediction beside it")
    dev.add_argument("--firmware", choices=("auto", "mvpfarm-protocol", "mltk-profiler"), default="auto",
                     help="the board's firmware (default: auto, asked with a handshake, then a reset)")
    dev.add_argument("--commander", metavar="PATH", help="Simplicity Commander (default: `commander` on PATH)")
    dev.add_argument("--image", metavar="PATH.s37",
                     help="mltk-profiler: program this model-profiler image first (default: the board's own)")
    dev.add_argument("--device-timeout-s", type=float, default=90.0, metavar="S",
                     help="timeout of one measurement (the vendor's tool waits 90 s for its log; default 90)")
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
