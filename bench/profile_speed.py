"""Profiling speed: mvpfarm against the vendor's simulator (MLTK, the oracle), in one run.

For every .tflite under tests/data/zoo and tests/data/corpus, both accelerators:
- `mvpfarm profile MODEL --format json` as a user runs it (a fresh process each time), and the
  in-process API (`profile_file`, after one warm-up);
- the oracle as its script runs it: `$MLTK_PY ../shared/oracle/mltk_profile.py MODEL ACC`, a fresh
  process each time (the oracle cannot profile two models in one process safely).
Prints a Markdown table of wall-clock seconds (median of --repeat runs) and the speed ratio.

    .venv/bin/python bench/profile_speed.py [--repeat 3] [--no-oracle]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORACLE = ROOT.parent / "shared" / "oracle" / "mltk_profile.py"
MLTK_PY = os.environ.get("MLTK_PY", os.path.expanduser("~/.cache/mltk-oracle/bin/python"))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()[-300:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-oracle", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from simulator.profiler import profile_file

    models = sorted((ROOT / "tests" / "data").glob("zoo/*.tflite")) + \
        sorted((ROOT / "tests" / "data").glob("corpus/*.tflite"))
    rows = []
    for m in models:
        for acc in ("mvp", "none"):
            cli = statistics.median(timed([sys.executable, "-m", "orchestrator.cli", "profile", str(m),
                                           "--accelerator", acc, "--format", "json"])
                                    for _ in range(args.repeat))
            profile_file(m, accelerator=acc)
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                profile_file(m, accelerator=acc)
            api = (time.perf_counter() - t0) / args.repeat
            oracle = None
            if not args.no_oracle:
                try:
                    oracle = statistics.median(timed([MLTK_PY, str(ORACLE), str(m), acc])
                                               for _ in range(args.repeat))
                except (RuntimeError, FileNotFoundError) as e:
                    print(f"# oracle failed on {m.name} {acc}: {e}", file=sys.stderr)
            rows.append((m.parent.name + "/" + m.stem, acc, cli, api, oracle))
            print(f"# {rows[-1]}", file=sys.stderr, flush=True)

    print("| model | acc | mvpfarm CLI s | mvpfarm API ms | oracle s | oracle / CLI |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, acc, cli, api, oracle in rows:
        ratio = f"{oracle / cli:.1f}x" if oracle else "-"
        print(f"| {name} | {acc} | {cli:.2f} | {api * 1e3:.1f} | {oracle:.2f} | {ratio} |" if oracle else
              f"| {name} | {acc} | {cli:.2f} | {api * 1e3:.1f} | - | - |")
    done = [r for r in rows if r[4]]
    if done:
        cli_total = sum(r[2] for r in done)
        api_total = sum(r[3] for r in done)
        oracle_total = sum(r[4] for r in done)
        print(f"\nTotal over {len(done)} profiles: mvpfarm CLI {cli_total:.1f} s, API {api_total:.2f} s, "
              f"oracle {oracle_total:.1f} s; oracle/CLI {oracle_total / cli_total:.1f}x, "
              f"oracle/API {oracle_total / api_total:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
