"""How a sweep scales on Ray: variants per minute with 1 and 2 workers, side by side with the same
sweep run serially in one process without Ray (the peer), the share of time spent in TensorFlow
conversion, and Ray's overhead per variant.

    .venv/bin/python bench/sweep_scaling.py            # ~4 minutes on 2 cores
    .venv/bin/python bench/sweep_scaling.py --quick    # a smaller sweep

Every configuration starts from an empty build cache (the base model's config is cached, as it is
after a sweep's first run) and runs a fresh local Ray on 127.0.0.1 with N CPUs.
Definitions: task time = summed build + profile task time; orchestration overhead = wall time -
task time / workers (scheduling, transfers, result writing, worker start-up, idle tails);
efficiency = (variants/min with 2 workers) / (2 x variants/min with 1 worker).
"""
from __future__ import annotations

import argparse
import os
import shutil
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


def serial(sweep, cache_dir: Path) -> dict:
    """The peer: the same variants built and profiled one after another in this process."""
    from orchestrator import build
    from orchestrator.tips import TipNotApplicable, apply_tips
    from orchestrator.variants import expand
    from simulator.profiler import profile_model
    base_spec = build.base_config(sweep.base, cache_dir)
    t0 = time.perf_counter()
    convert_s = profile_s = 0.0
    n = 0
    for v in expand(sweep.tips, sweep.mode):
        try:
            spec = apply_tips(base_spec, v.levels)
        except TipNotApplicable:
            continue
        meta, data = build.build_variant(spec, sweep.build.as_dict(), cache_dir)
        convert_s += meta["convert_s"]
        t1 = time.perf_counter()
        profile_model(data, accelerator="mvp", name=v.id)
        profile_s += time.perf_counter() - t1
        n += 1
    return {"wall_s": time.perf_counter() - t0, "n": n, "task_s": convert_s + profile_s, "convert_s": convert_s,
            "workers": 1}


def on_ray(sweep, n_cpus: int, work: Path) -> dict:
    import ray
    from orchestrator import fanout
    results = work / f"ray{n_cpus}"
    shutil.copytree(work / "cache" / "base", results / "cache" / "base")
    t0 = time.perf_counter()
    fanout.connect(None, num_cpus=n_cpus)
    init_s = time.perf_counter() - t0
    try:
        r = fanout.run(sweep, results, progress=False)
    finally:
        ray.shutdown()
    return {"wall_s": r.wall_s, "n": r.counts.profiled + r.counts.failed, "task_s": r.build_s + r.profile_s,
            "convert_s": r.convert_s, "workers": n_cpus, "init_s": init_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 12-variant sweep instead of 36")
    args = ap.parse_args()
    filters = "[0.5]" if args.quick else "[0.75, 0.5, 0.25]"
    work = Path(tempfile.mkdtemp(prefix="mvpfarm-bench-"))
    try:
        f = work / "sweep.toml"
        f.write_text(SWEEP.format(filters=filters))
        from orchestrator import sweep_file
        sweep = sweep_file.load(f)
        rows = {"serial, no Ray (peer)": serial(sweep, work / "cache")}
        shutil.rmtree(work / "cache" / "tflite")
        rows["Ray, 1 worker"] = on_ray(sweep, 1, work)
        rows["Ray, 2 workers"] = on_ray(sweep, 2, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nsweep: ds_cnn grid, {rows['Ray, 1 worker']['n']} variants, simulator target, 2-core machine\n")
    print(f"| configuration | variants | wall s | variants/min | TF conversion share | "
          f"overhead s/variant | overhead share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        overhead_s = r["wall_s"] - r["task_s"] / r["workers"]
        print(f"| {name} | {r['n']} | {r['wall_s']:.1f} | {r['n'] / r['wall_s'] * 60:.1f} | "
              f"{r['convert_s'] / r['task_s']:.0%} | {overhead_s / r['n']:.3f} | {overhead_s / r['wall_s']:.1%} |")
    v1 = rows["Ray, 1 worker"]["n"] / rows["Ray, 1 worker"]["wall_s"]
    v2 = rows["Ray, 2 workers"]["n"] / rows["Ray, 2 workers"]["wall_s"]
    print(f"\nscaling efficiency 1 -> 2 workers: {v2 / (2 * v1):.0%} (goal >= 85%)")
    print(f"Ray start-up (not in wall s): {rows['Ray, 1 worker']['init_s']:.1f} s / "
          f"{rows['Ray, 2 workers']['init_s']:.1f} s")


if __name__ == "__main__":
    main()
