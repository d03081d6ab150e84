"""`mvpfarm sweep run`, `mvpfarm rank`, `mvpfarm results`: the sweep subcommands.

Thin: each calls `orchestrator.api`. User errors (a bad sweep file, an unknown run, a base model
that does not build, a damaged result file: each a `simulator.errors.UserError`) are one line on
stderr and exit status 2 (`cli_errors.guarded`).
"""
from __future__ import annotations

import argparse
import sys

from orchestrator.api import DEFAULT_RESULTS
from orchestrator.cli_errors import guarded as _guarded
from simulator.errors import UserError


def _sweep_run(args) -> int:
    from orchestrator import api
    sweeps = [api.load_sweep(f) for f in args.file]      # all checked before any work starts
    done = []

    def ended(result) -> None:
        _summary(result, args.results)
        done.append(result)
    try:
        api.run_sweeps(sweeps, args.results, address=args.address, num_cpus=args.num_cpus, report=False,
                       retry_failed=args.retry_failed, on_result=ended,
                       progress=False if args.quiet else None, verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"mvpfarm: sweep {sweeps[len(done)].run_id} interrupted; what was measured is kept. Run the "
              "same command again to measure what is missing.", file=sys.stderr)
        return 130
    failed = [why for why in (_nothing_measured(r, args.results) for r in done) if why]
    for why in failed:
        print(f"mvpfarm: {why}", file=sys.stderr)
    return 1 if failed else 0


def _nothing_measured(result, results_dir) -> str | None:
    """Why a run has no measurement at all (every row failed), with its commonest reason; None
    when something was measured."""
    from orchestrator.results_db import ResultsDB
    with ResultsDB(results_dir, readonly=True) as db:
        n_measured, n_failed = db.conn.execute(
            "SELECT SUM(status='measured'), SUM(status='failed') FROM measurements WHERE run_id=?",
            (result.run_id,)).fetchone()
        if n_measured or not n_failed:
            return None
        variant, reason = db.conn.execute(     # the base's reason first: it is why nothing ranks
            "SELECT variant, error FROM measurements WHERE run_id=? AND status='failed'"
            " ORDER BY variant = 'base' DESC, id LIMIT 1", (result.run_id,)).fetchone()
    return (f"sweep {result.run_id}: nothing measured, all {n_failed} measurements failed or did not apply "
            f"({variant}: {reason}); the report says why for each")


def _summary(result, results_dir) -> None:
    from orchestrator import api
    print(f"run {result.run_id}: {counts_line(result.counts)}"
          + (f", {result.n_skipped} already in the table" if result.n_skipped else "")
          + f" ({result.db_path})")
    if result.boards:
        _print_boards(result)
    report = api.write_report(result.run_id, results_dir)
    print(f"report: {report} (and report.html)")
    try:
        print(api.rank(result.run_id, results_dir).to_table(), end="")
    except ValueError as e:        # nothing to rank against: the report says why
        print(f"no ranking: {e}")


def counts_line(c) -> str:
    """`14 measured (4 on boards), 2 not applicable, 0 failed`: a run's outcome in words."""
    return (f"{c.profiled} measured" + (f" ({c.boards} on boards)" if c.boards else "")
            + (f", {c.not_applicable} not applicable" if c.not_applicable else "") + f", {c.failed} failed")


def _print_boards(result) -> None:
    from orchestrator import terminal
    from orchestrator.report import board_rows
    for note in result.board_notes:
        print(f"boards: {note}")
    head, rows = board_rows(result.boards)
    print(terminal.table(head, rows, [False, False, False, True, True, True, True, False]), end="")


def _weights(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise UserError(f"--weights: {part!r} is not metric=number") from None
    return out


def _rank(args) -> int:
    from orchestrator import api
    rk = api.rank(args.run, args.results, objective=args.objective, weights=_weights(args.weights),
                  max_ram_bytes=args.max_ram_bytes, max_latency_ms=args.max_latency_ms,
                  max_flash_bytes=args.max_flash_bytes, min_accuracy=args.min_accuracy)
    sys.stdout.write(rk.to_json() + "\n" if args.format == "json" else rk.to_table())
    return 0


def _results_list(args) -> int:
    from orchestrator import api, terminal
    runs = api.runs(args.results)
    if not runs:
        print(f"no runs in {args.results}")
        return 0
    head = ["run", "status", "measured", "not applicable", "failed", "updated"]
    rows = [[r["run_id"], r["status"], r["n_measured"], r["n_not_applicable"], r["n_failed"], r["updated_at"]]
            for r in runs]
    print(terminal.table(head, rows, [False, False, True, True, True, False]), end="")
    for r in runs:
        if r["status"] == "interrupted":
            print(f"{r['run_id']} was interrupted (its driver stopped before the end): resume it with "
                  f"`mvpfarm sweep run {r['sweep_path']} --results {args.results}`")
    return 0


def _results_export(args) -> int:
    from orchestrator import api
    if args.output == "-" and args.format == "parquet":
        raise UserError("--output -: Parquet is binary; give a file name")
    path = api.export(args.run, args.format, args.results, out=None if args.output == "-" else args.output)
    if args.output == "-":
        sys.stdout.write(path.read_text())
    else:
        print(path)
    return 0


def register(sub) -> None:
    """Adds the sweep, rank and results subcommands to the CLI's subparsers."""
    results_help = f"results folder holding mvpfarm.sqlite (default: {DEFAULT_RESULTS})"

    sweep = sub.add_parser("sweep", help="run model-size tip sweeps on a Ray cluster",
                           description="Sweeps: a base model and the tips to try, fanned out over Ray.")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="COMMAND")
    sweep_sub.required = True
    run = sweep_sub.add_parser(
        "run", help="run (or resume) a sweep file",
        description="Build every variant of the sweep file (a TOML file; see examples/kws-tips.toml), "
                    "profile it on each target, and write the results table, the tip ranking and a report. "
                    "Without --address (or RAY_ADDRESS) a local Ray starts on 127.0.0.1. Running the same "
                    "file again resumes: only missing measurements are made.")
    run.add_argument("file", metavar="FILE", nargs="+",
                     help="the sweep file (.toml); several run one after another on one Ray connection, "
                          "so that the later ones find build workers with TensorFlow already imported")
    run.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help=results_help)
    run.add_argument("--address", default=None, metavar="ADDR",
                     help="an existing Ray cluster (e.g. 127.0.0.1:6379 or auto; default: RAY_ADDRESS, "
                          "else a local Ray)")
    run.add_argument("--num-cpus", type=int, default=None, metavar="N",
                     help="CPUs of the local Ray (default: all)")
    run.add_argument("--retry-failed", action="store_true",
                     help="measure the failed variants of an earlier run of this file again")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress: neither the bar (on a terminal) nor a log line per measurement "
                          "(otherwise) on stderr; the summary is still printed")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="let Ray's own banners, warnings and worker logs through to stderr")
    run.set_defaults(func=_guarded(_sweep_run))

    rank = sub.add_parser("rank", help="rank the tips of a sweep run",
                          description="For each tip and level: the change against the base in flash, RAM, "
                                      "cycles and latency, ranked by the objective, with the Pareto front.")
    rank.add_argument("run", metavar="RUN", help="a run id, or latest")
    rank.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help=results_help)
    rank.add_argument("--objective", choices=("accuracy", "latency", "ram", "flash", "weighted"), default=None,
                      help="what to order by (default: for a sweep with [data], the most latency saved among "
                           "the feasible variants that lose at most max_accuracy_drop_pts; else latency)")
    for flag, kind, what in (("--min-accuracy", float, "the worst acceptable accuracy"),
                             ("--max-latency-ms", float, "the latency bound in ms"),
                             ("--max-ram-bytes", int, "the RAM bound in bytes"),
                             ("--max-flash-bytes", int, "the flash bound in bytes")):
        rank.add_argument(flag, type=kind, default=None, metavar="N",
                          help=f"{what}: variants beyond it are infeasible (default: the sweep file's "
                               "[constraints])")
    rank.add_argument("--weights", default=None, metavar="W",
                      help="for --objective weighted: e.g. latency=0.5,ram=0.3,flash=0.2 (default: equal)")
    rank.add_argument("--format", choices=("table", "json"), default="table")
    rank.set_defaults(func=_guarded(_rank))

    res = sub.add_parser("results", help="list runs, export a run's table",
                         description="The result table: list the runs, or export one run as CSV, Parquet "
                                     "or JSON.")
    res.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR", help=results_help)
    res_sub = res.add_subparsers(dest="results_command", metavar="COMMAND")
    lst = res_sub.add_parser("list", help="list the runs (the default)")
    lst.add_argument("--results", default=argparse.SUPPRESS, metavar="DIR", help=results_help)
    exp = res_sub.add_parser("export", help="export one run's table",
                             description="Write one run's table (one row per variant and target) to "
                                         "DIR/RUN/measurements.FORMAT, or to --output.")
    exp.add_argument("run", metavar="RUN", help="a run id, or latest")
    exp.add_argument("--results", default=argparse.SUPPRESS, metavar="DIR", help=results_help)
    exp.add_argument("--format", choices=("csv", "parquet", "json"), required=True)
    exp.add_argument("--output", "-o", default=None, metavar="PATH", help="where to write ('-': stdout)")
    exp.set_defaults(func=_guarded(_results_export))
    res.set_defaults(func=_guarded(_results_list))
    lst.set_defaults(func=_guarded(_results_list))
