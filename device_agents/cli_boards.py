"""`mvpfarm boards ...` and `mvpfarm agent start`: the command line of the device agents.

`register(subparsers)` adds the commands to the main parser (orchestrator/cli.py). Handlers import
Ray and the agents lazily, print user errors as one line and return exit status 2.
Also runnable alone: `python -m device_agents.cli_boards boards emulate --count 2`.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

EXIT_USAGE = 2


def _error(msg: str) -> int:
    print(f"mvpfarm: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _parse_faults(specs: list[str], count: int, vendor: int = 0):
    """`--fault [INDEX=]KIND[:VALUE]`: without INDEX the fault applies to every board."""
    from device_agents.faults import Faults
    try:
        return Faults.parse_fleet(specs, count, vendor)
    except ValueError as e:
        raise ValueError(f"--fault: {e}") from None


def _emulate(args: argparse.Namespace) -> int:
    from device_agents.board_kinds import BOARD_KINDS
    from device_agents.virtual_board import emulate
    if args.count < 1:
        return _error("--count must be at least 1")
    if args.kind not in BOARD_KINDS:
        return _error(f"--kind {args.kind}: choose from {', '.join(BOARD_KINDS)}")
    try:
        faults = _parse_faults(args.fault, args.count, args.count if args.vendor else 0)
    except ValueError as e:
        return _error(str(e))
    boards = emulate(args.count, args.kind, faults, seed=args.seed, time_scale=args.time_scale,
                     mode="vendor" if args.vendor else "protocol")
    for b in boards:
        print(f"{b.board_id}\t{b.port}\t{b.kind.name}\t{b.mode}\tJ-Link {b.jlink.serial}\t"
              f"faults: {b.faults.describe()}", flush=True)
    print(f"# {len(boards)} virtual board(s) running; Ctrl-C stops them", file=sys.stderr, flush=True)
    try:
        if args.duration_s is not None:
            time.sleep(args.duration_s)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for b in boards:
            b.stop()
    return 0


def _print_states(states, as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.to_dict() for s in states], indent=1))
        return
    print(f"{'board':<22} {'kind':<10} {'state':<12} {'jobs':>4}  {'host:port':<28} reason")
    for s in states:
        print(f"{s.board_id:<22} {s.kind:<10} {s.state:<12} {s.jobs_measured:>4}  "
              f"{s.host + ':' + s.port:<28} {s.reason or ''}")


def _list(args: argparse.Namespace) -> int:
    import ray
    from device_agents.pool import BoardPool
    try:
        ray.init(address=args.address, namespace="mvpfarm", logging_level="ERROR",
                 log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        return _error(f"cannot reach the Ray cluster at {args.address}: {e}")
    pool = BoardPool.from_cluster()
    try:
        states = pool.states()
    finally:
        pool.close()
    if not states and not args.json:
        print("no boards in the cluster (start agents with `mvpfarm agent start`)")
    else:
        _print_states(states, args.json)
    return 0


def _check(args: argparse.Namespace) -> int:
    """Which firmware, which kit (Commander), and one measurement of the built-in model end to end."""
    from device_agents import single_board as SB
    from device_agents.agent import AgentConfig
    from device_agents.commander import CommanderError, CommanderMissing
    from device_agents.port_lock import PortBusy
    port = args.port
    commander, no_commander = None, ""
    try:
        commander = SB.commander_for(port, args.commander)
    except CommanderMissing as e:
        if args.commander:
            return _error(str(e))
        no_commander = str(e)
    try:
        found = SB.detect(port, args.timeout_s, commander, log_wait_s=2 * args.timeout_s)
    except PortBusy as e:
        return _error(f"{port}: {e}")
    except CommanderError as e:
        return _error(f"{port}: no protocol reply, and the reset through Commander failed: {e}")
    if found.firmware == SB.UNKNOWN:
        return _error(f"{port}: firmware unknown: {found.seen}")
    print(f"{port}: firmware: {found.describe()}")
    info = found.info
    if info is not None:
        print(f"{port}: {info.board_kind} board {info.board_id}, {info.clock_hz / 1e6:g} MHz, RAM {info.ram_bytes:,} B "
              f"(arena up to {info.arena_max_bytes:,} B), flash {info.flash_bytes:,} B (models up to "
              f"{info.model_max_bytes:,} B), MVP {'yes' if info.accelerators & 1 else 'no'}")
    kit, why = SB.kit_info(commander) if commander is not None else (None, no_commander)
    if kit is not None:
        print(f"{port}: kit: part number {kit.part_number}, flash {kit.flash_bytes:,} B, RAM {kit.ram_bytes:,} B "
              f"(Simplicity Commander, J-Link {commander.serial or '(the only one attached)'})")
    elif found.firmware == SB.VENDOR_FIRMWARE:
        return _error(f"{port}: the vendor's firmware needs Commander to load a model: {why}")
    else:
        print(f"{port}: kit: part number and flash size unknown ({why})")
    config = AgentConfig(exchange_timeout_s=args.timeout_s, profile_timeout_s=args.profile_timeout_s,
                         boot_timeout_s=args.timeout_s, attempts_per_job=1, max_faults=1,
                         image=args.image, commander=args.commander)
    try:
        rec = SB.measure(port, SB.CHECK_MODEL.read_bytes(), "check_model", found.firmware, config)
    except SB.BoardUnusable as e:
        return _error(f"end-to-end check failed: {e}")
    s = rec.summary
    print(f"{port}: measured the built-in check model ({s.n_layers} layer(s), {s.macs:,} MACs) end to end: "
          f"{s.latency_s * 1e3:.3f} ms, {s.accelerator_cycles:,} accelerator and {s.cpu_cycles:,} CPU cycles, "
          f"arena {s.ram_bytes:,} B")
    return 0


def _port_firmwares(specs: list[str], default: str) -> list[tuple[str, str]]:
    """`--port PORT[=FIRMWARE]` -> [(port, firmware)]; without FIRMWARE the --firmware default."""
    from device_agents.agent import FIRMWARES
    out = []
    for spec in specs:
        port, sep, fw = spec.rpartition("=")
        out.append((port, fw) if sep and fw in FIRMWARES else (spec, default))
    return out


def _agent_start(args: argparse.Namespace) -> int:
    import ray
    from dataclasses import replace

    from device_agents.agent import VENDOR_FIRMWARE, AgentConfig, probe
    from device_agents.board_kinds import kind_of_part
    from device_agents.commander import CommanderError, FirmwareImage, find_commander
    from device_agents.discovery import board_ports, jlink_serial
    from device_agents.pool import ACTOR_PREFIX, BoardPool, board_resource, spawn_agent
    from device_agents.single_board import commander_for
    named = _port_firmwares(args.port, args.firmware)
    ports = [(p, args.firmware) for p in board_ports()] if not named else named
    if not ports:
        return _error("no boards found: no J-Link serial port (USB vendor 0x1366); name ports with --port")
    config = AgentConfig(exchange_timeout_s=args.timeout_s, profile_timeout_s=args.profile_timeout_s,
                         commander=args.commander, image=args.image)
    if any(fw == VENDOR_FIRMWARE for _, fw in ports):
        try:
            if args.image:
                FirmwareImage.load(args.image)
            config = replace(config, commander=find_commander(args.commander))
        except (ValueError, CommanderError) as e:
            return _error(f"--image: {e}" if isinstance(e, ValueError) else str(e))
        if not args.image:
            print("no --image: boards with the vendor's firmware must already hold its image", file=sys.stderr)
    found = []
    for port, fw in ports:
        try:
            if fw == VENDOR_FIRMWARE:
                part = commander_for(port, config.commander).device_info().part_number
                known = kind_of_part(part)
                kind = args.kind or (known.name if known else part.lower())
                board_id = f"jlink-{jlink_serial(port)}"
            else:
                info = probe(port, args.timeout_s)
                kind, board_id = info.board_kind, info.board_id
        except Exception as e:   # noqa: BLE001 - one bad port is reported, the others still start
            print(f"skipped {port}: {e}", file=sys.stderr)
            continue
        print(f"found {kind} {board_id} on {port} ({fw})")
        found.append((port, kind, board_id, replace(config, firmware=fw)))
    if not found:
        return _error("no port answered (the handshake, or Commander for --firmware mltk-profiler)")
    counts: dict[str, int] = {}
    for _, kind, _, _ in found:
        counts[board_resource(kind)] = counts.get(board_resource(kind), 0) + 1
    if args.address:
        ray.init(address=args.address, namespace="mvpfarm", logging_level="ERROR")
        here = ray.get_runtime_context().get_node_id()
        have = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == here), {})
        missing = {k: v for k, v in counts.items() if have.get(k, 0) < v}
        if missing:
            return _error(f"this Ray node lacks the board resources; start it with: ray start "
                          f"--address {args.address} --resources '{json.dumps(counts)}'")
    else:
        ray.init(address="local", resources=counts, namespace="mvpfarm", include_dashboard=False,
                 logging_level="ERROR")
    actors = [spawn_agent(port, kind, cfg, name=ACTOR_PREFIX + board_id, detached=args.detach)
              for port, kind, board_id, cfg in found]
    pool = BoardPool(actors)
    _print_states(pool.states(), False)
    pool.close()
    if args.detach:
        print(f"{len(actors)} agent(s) registered; `mvpfarm boards list` shows them")
        return 0
    # Ray's core worker installs a crash handler for SIGTERM that prints a stack dump; a service
    # manager's stop is an ordinary end: take SIGTERM back and treat it like Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print("agents running; Ctrl-C (or SIGTERM) stops them", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("mvpfarm: agents stopped", file=sys.stderr, flush=True)
        ray.shutdown()
        return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def register(subparsers) -> None:
    boards = subparsers.add_parser("boards", help="dev boards: emulate, list, check",
                                   description="Work with EFR32xG24 dev boards and virtual boards.")
    bsub = boards.add_subparsers(dest="boards_command", metavar="ACTION")
    bsub.required = True

    em = bsub.add_parser("emulate", help="run virtual boards on pseudo-terminals",
                         description="Open N pseudo-terminals and run a firmware emulator behind each that "
                                     "speaks the mvpfarm protocol (docs/protocol.md). Prints one line per "
                                     "board: id, port, kind, faults. Runs until Ctrl-C.")
    em.add_argument("--count", type=int, default=1, metavar="N", help="number of boards (default 1)")
    em.add_argument("--kind", default="brd2601b", help="board kind (default: %(default)s)")
    em.add_argument("--fault", action="append", default=[], metavar="[I=]KIND[:VALUE]",
                    help="inject a fault into board I (default: every board): hang[:N] (stops answering "
                         "at PROFILE N), unplug[:N] (the pty closes at PROFILE N), reboot[:P], garbage[:P], "
                         "drop[:P], crc[:P] (probabilities), slow[:SECONDS], babble (random bytes, no answer); with --vendor also nodone, "
                         "truncate[:N] (logs from N on stop half-way), unsupported[:LAYER], flashfail (Commander "
                         "fails on every write). Repeatable.")
    em.add_argument("--seed", type=int, default=0, help="seed of noise and faults (default 0)")
    em.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                    help="inference takes X times the emulated silicon's time (default 1: real time)")
    em.add_argument("--vendor", action="store_true",
                    help="emulate Silicon Labs' model-profiler firmware (prints its log) instead")
    em.add_argument("--duration-s", type=float, default=None, help=argparse.SUPPRESS)
    em.set_defaults(func=_emulate)

    ls = bsub.add_parser("list", help="every board in the Ray cluster with its state",
                         description="List every board agent in the Ray cluster: idle, busy or "
                                     "quarantined (with the reason).")
    ls.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    ls.add_argument("--json", action="store_true", help="print the states as JSON")
    ls.set_defaults(func=_list)

    ck = bsub.add_parser("check", help="which firmware and kit a board is, and one measurement end to end",
                         description="Open PORT (a device path or pyserial URL) and say which firmware the board "
                                     "runs: mvpfarm's protocol (it answers HELLO), Silicon Labs' model profiler "
                                     "(it prints its log after a reset through Simplicity Commander) or unknown "
                                     "(with what was seen); the kit's part number and flash size from Commander; "
                                     "then measure a tiny built-in model end to end. Exit 2, with one line, if "
                                     "any of it fails (a hung or babbling board fails).")
    ck.add_argument("port", metavar="PORT")
    ck.add_argument("--timeout-s", type=float, default=2.0,
                    help="handshake timeout; twice this is the wait for the vendor log's first line (default 2)")
    ck.add_argument("--profile-timeout-s", type=float, default=30.0,
                    help="timeout of the measurement (a PROFILE, or the vendor log's silence; default 30)")
    ck.add_argument("--commander", metavar="PATH", help="Simplicity Commander (default: `commander` on PATH)")
    ck.add_argument("--image", metavar="PATH.s37",
                    help="vendor firmware: program this model-profiler image first (once; default: use the "
                         "image on the board)")
    ck.set_defaults(func=_check)

    agent = subparsers.add_parser("agent", help="board agents: start",
                                  description="Run the agents that offer this machine's boards to Ray.")
    asub = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    asub.required = True
    st = asub.add_parser("start", help="find boards, check them, offer them to the Ray cluster",
                         description="Find EFR32xG24 kits (J-Link CDC UART ports, or --port), handshake with "
                                     "each, and start one Ray actor per board holding the resource "
                                     "board:<kind>. Without --address a local Ray instance is started.")
    st.add_argument("--port", action="append", default=[], metavar="P[=FIRMWARE]",
                    help="a serial port or pyserial URL, optionally with its board's firmware (repeatable; "
                         "default: every J-Link port)")
    st.add_argument("--firmware", choices=("mvpfarm-protocol", "mltk-profiler"), default="mvpfarm-protocol",
                    help="the boards' firmware: mvpfarm-protocol (docs/protocol.md; the default) or mltk-profiler "
                         "(Silicon Labs' model-profiler, driven through Simplicity Commander)")
    st.add_argument("--image", metavar="PATH.s37",
                    help="mltk-profiler: the model-profiler image to program once per board (from MLTK's "
                         "download cache or a Simplicity Studio build; mvpfarm never downloads it)")
    st.add_argument("--commander", metavar="PATH", help="Simplicity Commander (default: `commander` on PATH)")
    st.add_argument("--kind", default=None, help="mltk-profiler: the board kind to offer (default: from the "
                                                 "part number Commander reports)")
    st.add_argument("--address", default=None, help="join this Ray cluster (its node must advertise "
                                                    "the board resources)")
    st.add_argument("--detach", action="store_true", help="leave the agents running and exit")
    st.add_argument("--timeout-s", type=float, default=2.0, help="per-exchange timeout (default 2)")
    st.add_argument("--profile-timeout-s", type=float, default=60.0,
                    help="timeout of one PROFILE (warm-up + repeats; default 60)")
    st.set_defaults(func=_agent_start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mvpfarm")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
