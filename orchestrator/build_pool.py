"""The build pool's Ray tasks (warm-up, base, build, train) and what they run.

A fresh Ray worker imports the module of its first task before it runs it, which is on the way of
a cold sweep's first build; so this module is light (Ray, the fork server's client, the build
worker's environment) and the work itself, TensorFlow's, runs where `forkserver.call` sends it:
in the worker's builder on the local Ray, in the worker elsewhere.

Build-pool tasks have no runtime_env: Ray's default pool is the one whose workers it prestarts, a
worker per CPU (see build.as_build_worker). Actors (virtual boards, the epoch counter) are in that
pool too, but an actor gets a new worker process, not an idle build worker (measured with ray 2.60).
"""
from __future__ import annotations

import os
import sys
import time

import ray

from orchestrator import build, forkserver

# A worker that dies is retried (it may have been lost for a reason of its own, e.g. its node).
MAX_RETRIES = 3
# A conversion that kills its worker (TensorFlow's converter segfaults on some graphs) does it
# again: one retry tells a crash from a worker lost for another reason, more only cost time.
BUILD_RETRIES = 1


@ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")
def warm_up_task() -> dict:
    """Readies a build worker (one CPU slot, as a build holds; spread over the nodes): forks its
    builder, or imports TensorFlow and the converter where there is no fork server. Not retried:
    a build on a worker lost here readies it itself."""
    t0 = time.perf_counter()
    build.as_build_worker()
    forkserver.call(warm_up_imports)
    return {"pid": os.getpid(), "warmup_s": time.perf_counter() - t0}


def warm_up_imports() -> None:
    """Imports what a build task runs: TensorFlow and the converter, and the simulator (builds
    profile their models)."""
    build.warm_up()
    import orchestrator.timing_models  # noqa: F401
    import simulator.profiler  # noqa: F401


@ray.remote(num_cpus=1, max_retries=BUILD_RETRIES)
def base_config_task(base: dict, cache_dir: str) -> dict:
    build.as_build_worker()
    return forkserver.call(build.base_config, base, cache_dir)


@ray.remote(num_cpus=1, max_retries=BUILD_RETRIES, num_returns=2)
def build_task(spec: dict, build_settings: dict, cache_dir: str, profiles: list | tuple = ()):
    """Converts a variant, then profiles it on each simulator target of `profiles` ((target,
    name) pairs) in the same worker, while it holds the build's CPU: see `_Runner._pump`."""
    build.as_build_worker()
    meta, data = forkserver.call(_build, spec, build_settings, cache_dir, profiles)
    meta["pid"] = os.getpid()
    return meta, data


def _build(spec: dict, build_settings: dict, cache_dir: str, profiles) -> tuple[dict, bytes]:
    warm = "tensorflow" in sys.modules            # imported by the fork server, a warm-up or an earlier build
    t0 = time.perf_counter()
    meta, data = build.build_variant(spec, build_settings, cache_dir)
    meta["build_s"] = time.perf_counter() - t0
    meta["worker_warm"] = warm
    if meta["ok"] and profiles:
        meta["profiles"] = [profile(data, target, name) for target, name in profiles]
    return meta, data


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES, num_returns=2)
def train_task(spec: dict, data: dict, data_sha256: str, train: dict, metric: str, search_path: list,
               cache_dir: str, epochs=None):
    """Trains a variant once per seed (cached by content) in the build workers' pool: TensorFlow
    single-threaded, one task per CPU. `epochs` (an `EpochCounter`) counts finished epochs."""
    build.as_build_worker()
    on_epoch = (lambda: epochs.add.remote()) if epochs is not None else None
    meta, models = forkserver.call(_train, spec, data, data_sha256, train, metric, search_path, cache_dir,
                                   on_event=on_epoch)
    meta["pid"] = os.getpid()
    return meta, models


def _train(spec: dict, data: dict, data_sha256: str, train: dict, metric: str, search_path: list,
           cache_dir: str, on_event=None) -> tuple[dict, dict]:
    from orchestrator import training
    return training.train_variant(spec, data, data_sha256, train, metric, search_path, None, cache_dir,
                                  on_epoch=on_event)


def profile(data: bytes, target: dict, name: str) -> dict:
    """A model's profile on a simulator target as a task's result: {"ok", "record" | "error",
    "profile_s", ...}; a profiler error is a result, not an exception."""
    from orchestrator.timing_models import resolve as resolve_timing
    from simulator.errors import ModelError
    from simulator.profiler import profile_model
    t0 = time.perf_counter()
    try:
        record = profile_model(data, accelerator=target["accelerator"], timing=resolve_timing(target["timing"]),
                               name=name, clock_hz=target["clock_hz"])
    except ModelError as e:
        return {"ok": False, "error": f"profiler error: {e}", "profile_s": time.perf_counter() - t0}
    except Exception as e:      # a simulator bug must not take the sweep down: record it
        return {"ok": False, "error": f"profiler error: {type(e).__name__}: {e}",
                "profile_s": time.perf_counter() - t0}
    return {"ok": True, "record": record, "profile_s": time.perf_counter() - t0,
            "pid": os.getpid(), "tensorflow_loaded": "tensorflow" in sys.modules}
