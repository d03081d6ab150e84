"""How a sweep scales on Ray: variants per minute with 1 and 2 workers, side by side with the same
sweep on a `multiprocessing` pool of 1 and 2 processes without Ray (the peer: what this machine
allows without any orchestrator), the share of time spent in TensorFlow conversion, and Ray's
overhead per variant.

    .venv/bin/python bench/sweep_scaling.py                # 3 trials, ~8 minutes on 2 cores
    .venv/bin/python bench/sweep_scaling.py --quick        # a 12-variant sweep, 1 trial

Every run starts from an empty build cache (the base model's config is cached, as it is after a
sweep's first run) and new worker processes. Every Ray run, in every trial, starts a fresh local
Ray on 127.0.0.1 with N CPUs, and with it a fresh fork server (`orchestrator.forkserver`, which
imports TensorFlow while Ray starts, once, for every build worker), and stops both after:
"Ray, N workers" is the first sweep of a fresh Ray (the cold start: its build workers fork their
builders from the server, waiting for its import to end if it has not); "second sweep of a
session" is the same sweep run after a small warm-up sweep on the same Ray connection, as
`mvpfarm sweep run A.toml B.toml` or a nightly suite runs them: its builders have built before.
The pool's processes each import TensorFlow themselves.
The configurations of a trial run back to back and the trials are interleaved, so that the slow
drifts of a shared machine hit every configuration alike; the table shows each configuration's
median trial, and the load average (`os.getloadavg`) at the start and end of the run.

Definitions:
- wall s: the pool's from creating the pool (its processes' start included) to the last result;
  a cold Ray sweep's from the moment `ray.init` has returned (the local Ray is up) to the sweep's
  return, i.e. the driver's planning, the build workers' warm-up (forking a builder, or what is
  left of the server's import), every build and profile, and the result writing; a second
  sweep's is its own `fanout.run` call. Ray's own start (`ray.init`: the GCS, the raylet, its
  prestarted workers, beside the fork server's import) is the "Ray start s" column: it is paid
  once per Ray, by 1 or 2 workers alike, and is not in wall s;
- task time: the summed time inside the workers of every build, profile and warm-up task
  (a TensorFlow import left in a warm-up counts: it is conversion work);
- overhead = wall s - task time / workers: worker start-up, scheduling, transfers, the driver's
  planning and result writing, idle workers (e.g. one waiting for the last build of the other);
- efficiency = (variants/min with 2) / (2 x variants/min with 1), per trial.
"""
from __future__ import annotations

import argparse
import multiprocessing
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

SWEEP = """
name = "bench-scaling"
base = {{ builtin = "ds_cnn" }}
mode = "grid"
[tips]
filters = {filters}
input_size = [0.75, 0.5]
kernel_size = [1, 2]
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""


WARMUP = """
name = "bench-warmup"
base = { builtin = "ds_cnn" }
mode = "one-at-a-time"
[tips]
filters = [0.25]
input_size = [0.5]
kernel_size = [1]
[build]
seed = 1
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""


def _pool_worker_init() -> None:
    from orchestrator import build
    os.environ.update(build.WORKER_ENV)          # what the sweep's build workers start with
    # the converter's C++ chatter, which Ray's workers keep out of the terminal too
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _pool_job(args) -> tuple[float, float, float]:
    from orchestrator import build
    from simulator.profiler import profile_model
    spec, settings, cache_dir, name = args
    t0 = time.perf_counter()
    meta, data = build.build_variant(spec, settings, cache_dir)
    t1 = time.perf_counter()
    profile_model(data, accelerator="mvp", name=name)
    return t1 - t0, meta["convert_s"], time.perf_counter() - t1


def on_pool(specs: list, settings: dict, n_procs: int, cache_dir: Path) -> dict:
    """The peer: a spawn-context process pool, one variant per job, no Ray."""
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(n_procs, initializer=_pool_worker_init) as pool:
        done = list(pool.imap_unordered(_pool_job, [(s, settings, str(cache_dir), n) for n, s in specs],
                                        chunksize=1))
    wall_s = time.perf_counter() - t0
    return {"wall_s": wall_s, "n": len(done), "task_s": sum(b + p for b, _, p in done),
            "convert_s": sum(c for _, c, _ in done), "workers": n_procs}


def on_ray(sweep, n_cpus: int, work: Path, trial: int, warmup=None) -> dict:
    """The sweep on a fresh local Ray; with `warmup`, as the second sweep of one connection
    (`mvpfarm sweep run WARMUP SWEEP`), whose build workers have built before."""
    import ray
    from orchestrator import fanout, forkserver
    results = work / f"ray{n_cpus}-{trial}{'-warm' if warmup else ''}"
    shutil.copytree(work / "cache" / "base", results / "cache" / "base")
    assert not ray.is_initialized()
    t0 = time.perf_counter()
    fanout.connect(None, num_cpus=n_cpus)
    t_up = time.perf_counter()
    try:
        if warmup is not None:
            fanout.run(warmup, results, progress=False)
            t_up = time.perf_counter()
        r = fanout.run(sweep, results, progress=False)
        wall_s = time.perf_counter() - t_up
    finally:
        ray.shutdown()
        forkserver.stop()        # the next run starts its own, as a fresh `mvpfarm sweep run` does
    if r.n_built_warm != r.n_built:
        print(f"  note: {r.n_built - r.n_built_warm} of {r.n_built} builds imported TensorFlow themselves",
              file=sys.stderr)
    return {"wall_s": wall_s, "n": r.counts.profiled + r.counts.failed,
            "task_s": r.build_s + r.profile_s + r.warmup_s, "convert_s": r.convert_s + r.warmup_s,
            "workers": n_cpus, "ray_start_s": t_up - t0 if warmup is None else None}


def _row(name: str, r: dict) -> str:
    overhead_s = r["wall_s"] - r["task_s"] / r["workers"]
    ray_start = f"{r['ray_start_s']:.1f}" if r.get("ray_start_s") is not None else ""
    return (f"| {name} | {r['n']} | {ray_start} | {r['wall_s']:.1f} | {r['n'] / r['wall_s'] * 60:.1f} | "
            f"{r['convert_s'] / r['task_s']:.0%} | {overhead_s / r['n']:.3f} | {overhead_s / r['wall_s']:.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 12-variant sweep instead of 36, one trial")
    ap.add_argument("--trials", type=int, default=3, help="interleaved trials (default 3)")
    args = ap.parse_args()
    trials = 1 if args.quick else args.trials
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mvpfarm-bench-"))
    try:
        f = work / "sweep.toml"
        f.write_text(SWEEP.format(filters="[0.5]" if args.quick else "[0.75, 0.5, 0.25]"))
        from orchestrator import build, sweep_file
        from orchestrator.tips import TipNotApplicable, apply_tips
        from orchestrator.variants import expand
        sweep = sweep_file.load(f)
        # a few other variants (other seed: nothing shared with the sweep's cache) that start every worker
        w = work / "warmup.toml"
        w.write_text(WARMUP)
        warmup = sweep_file.load(w)
        base_spec = build.base_config(sweep.base, work / "cache")
        specs = []
        for v in expand(sweep.tips, sweep.mode):
            try:
                specs.append((v.id, apply_tips(base_spec, v.levels)))
            except TipNotApplicable:
                continue
        settings = sweep.build.as_dict()
        configs = {
            "pool, 1 process, no Ray (peer)": lambda t: on_pool(specs, settings, 1, work / f"p1-{t}"),
            "pool, 2 processes, no Ray (peer)": lambda t: on_pool(specs, settings, 2, work / f"p2-{t}"),
            "Ray, 1 worker": lambda t: on_ray(sweep, 1, work, t),
            "Ray, 2 workers": lambda t: on_ray(sweep, 2, work, t),
            "Ray, 1 worker, second sweep of a session": lambda t: on_ray(sweep, 1, work, t, warmup),
            "Ray, 2 workers, second sweep of a session": lambda t: on_ray(sweep, 2, work, t, warmup),
        }
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        for t in range(trials):
            for name, fn in configs.items():
                runs[name].append(fn(t))
                r = runs[name][-1]
                overhead_s = r["wall_s"] - r["task_s"] / r["workers"]
                print(f"trial {t + 1}/{trials}: {name}: {r['wall_s']:.1f} s, overhead {overhead_s / r['wall_s']:.1%}, "
                      f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def efficiency(one: str, two: str) -> list[float]:
        return [(b["n"] / b["wall_s"]) / (2 * a["n"] / a["wall_s"]) for a, b in zip(runs[one], runs[two])]

    eff_ray = efficiency("Ray, 1 worker", "Ray, 2 workers")
    eff_warm = efficiency("Ray, 1 worker, second sweep of a session", "Ray, 2 workers, second sweep of a session")
    eff_pool = efficiency("pool, 1 process, no Ray (peer)", "pool, 2 processes, no Ray (peer)")
    n = runs["Ray, 1 worker"][0]["n"]
    load = " / ".join(f"{a:.1f}, {b:.1f}, {c:.1f}" for a, b, c in (load_start, os.getloadavg()))
    print(f"\nsweep: ds_cnn grid, {n} variants, simulator target, {os.cpu_count()} cores, "
          f"median of {trials} interleaved trial(s); load average (1, 5, 15 min) at start / end: {load}\n")
    print("| configuration | variants | Ray start s | wall s | variants/min | TF conversion share | "
          "overhead s/variant | overhead share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in runs.items():
        print(_row(name, sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]))

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.0%} (trials: {', '.join(f'{x:.0%}' for x in xs)})"
    print(f"\nscaling efficiency 1 -> 2 (goal >= 85%): Ray, first sweep of a fresh Ray {spread(eff_ray)}; "
          f"Ray, second sweep of a session {spread(eff_warm)}; no-Ray pool {spread(eff_pool)}")
    for name in ("Ray, 2 workers", "Ray, 2 workers, second sweep of a session"):
        shares = [(r["wall_s"] - r["task_s"] / r["workers"]) / r["wall_s"] for r in runs[name]]
        print(f"overhead share, {name} (goal < 5%): {statistics.median(shares):.1%} "
              f"(trials: {', '.join(f'{x:.1%}' for x in shares)})")


if __name__ == "__main__":
    main()
