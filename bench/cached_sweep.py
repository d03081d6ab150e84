"""A sweep whose every variant is in the build cache (a sweep run again, or resumed): its wall time on
a 2-CPU local Ray, side by side with the peer in the same run, the same models profiled one after
another by the simulator in this process (no Ray, no worker to start), and how many simulator
worker processes Ray started for it.

    .venv/bin/python bench/cached_sweep.py            # 3 rounds, about a minute on 2 cores

One local Ray for the whole run: a cold sweep fills the cache, then each round runs the same sweep
under a new name (all 36 variants cached: only profile tasks) and profiles the 36 cached models
in-process. The first cached sweep of the connection is the one that starts simulator workers.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROUNDS = 3


def _simulator_workers() -> int:
    """Processes on this machine started by Ray for fanout's simulator tasks."""
    n = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"MVPFARM_WORKER=simulator" in (entry / "environ").read_bytes().split(b"\0"):
                n += 1
        except OSError:
            continue
    return n


def main() -> None:
    import ray
    from orchestrator import fanout, sweep_file
    from simulator.profiler import profile_model
    from sweep_scaling import SWEEP
    work = Path(tempfile.mkdtemp(prefix="mvpfarm-bench-"))
    rows = []
    try:
        text = SWEEP.format(filters="[0.75, 0.5, 0.25]")
        (work / "fill.toml").write_text(text)
        fanout.connect(None, num_cpus=2)
        fanout.run(sweep_file.load(work / "fill.toml"), work / "r", progress=False)
        models = sorted((work / "r" / "cache" / "tflite").glob("*.tflite"))
        for i in range(ROUNDS):
            f = work / f"again{i}.toml"
            f.write_text(text.replace('name = "bench-scaling"', f'name = "again{i}"'))
            t0 = time.perf_counter()
            r = fanout.run(sweep_file.load(f), work / "r", progress=False)
            ray_s = time.perf_counter() - t0
            assert r.n_cached == r.counts.profiled == len(models), (r.n_cached, r.counts.profiled, len(models))
            t0 = time.perf_counter()
            for m in models:
                profile_model(m.read_bytes(), accelerator="mvp", name=m.stem)
            peer_s = time.perf_counter() - t0
            rows.append((ray_s, peer_s, _simulator_workers()))
            print(f"round {i + 1}/{ROUNDS}: Ray {ray_s:.2f} s, in-process {peer_s:.2f} s, "
                  f"{rows[-1][2]} simulator workers", file=sys.stderr)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncached sweep: ds_cnn grid, {len(models)} variants, simulator target, 2 CPUs\n")
    print("| round | Ray sweep s | in-process profiles s (peer) | simulator workers |")
    print("|---|---:|---:|---:|")
    for i, (ray_s, peer_s, n) in enumerate(rows):
        print(f"| {i + 1}{' (first of the connection)' if i == 0 else ''} | {ray_s:.2f} | {peer_s:.2f} | {n} |")
    print(f"| median | {statistics.median(r[0] for r in rows):.2f} | {statistics.median(r[1] for r in rows):.2f} | |")


if __name__ == "__main__":
    main()
