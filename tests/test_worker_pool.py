"""The local Ray's worker pool (`fanout.node_worker_settings`, `forkserver`): a cold sweep builds in
the workers that Ray prestarts with the node, one per CPU, through builders forked from the fork
server, which alone import TensorFlow; the raylet starts no spare worker, and stops none of them
while it waits idle between two sweeps; a sweep whose builds are all cached profiles them in a few
simulator workers, not one per variant."""
import os
import time
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
import ray  # noqa: E402

from orchestrator import fanout, forkserver, sweep_file  # noqa: E402
from tests.conftest import SMALL_MLP_SWEEP  # noqa: E402

pytestmark = pytest.mark.slow


def _raylet_workers(role: bytes | None = None) -> set[int]:
    """Worker processes of this process's local Ray: the raylet's children that it gave a job id
    (its dashboard and runtime-env agents have none; every process is titled `ray::...`); with
    `role`, only those whose MVPFARM_WORKER is `role` (fanout's runtime_env for its task kind)."""
    from ray._private import ray_constants
    node = ray._private.worker._global_node
    raylet_pid = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue                          # a process that ended while we looked
        if ppid == raylet_pid and any(e.startswith(b"RAY_JOB_ID=") for e in environ) and \
                (role is None or b"MVPFARM_WORKER=" + role in environ):
            found.add(int(entry.name))
    return found


def _children(pid: int) -> set[int]:
    return {int(c) for t in Path(f"/proc/{pid}/task").iterdir()
            for c in (t / "children").read_text().split()}


def _has_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's native library is mapped in the process (what its import loads)."""
    return "_pywrap_tensorflow_internal" in Path(f"/proc/{pid}/maps").read_text()


def _sweep(tmp_path, name: str, levels: str):
    f = tmp_path / f"{name}.toml"
    f.write_text(SMALL_MLP_SWEEP.format(name=name, levels=levels))
    return sweep_file.load(f)


def test_a_cold_sweep_starts_one_worker_per_cpu_and_keeps_them_between_sweeps(tmp_path):
    assert not ray.is_initialized()
    assert fanout.connect(None, num_cpus=2)
    earlier = _children(forkserver.server_pid())        # an earlier Ray's, ending with its workers
    try:
        # more variants than CPUs: builds wait in the lease backlog, which is what made the raylet
        # start spare workers (while both workers imported TensorFlow, before the fork server)
        first = fanout.run(_sweep(tmp_path, "first", "[0.75, 0.5, 0.25, 0.125]"), tmp_path / "results",
                           progress=False)
        workers = _raylet_workers()
        assert first.counts.profiled == 5 and first.n_built == 5
        # the two prestarted workers built everything (no warm-up: see below); nothing else was started
        assert len(workers) == 2 and first.build_pids == workers and not first.warm_pids
        assert first.n_built_warm == first.n_built
        # through a builder each, forked from the fork server: they alone have TensorFlow
        builders = _children(forkserver.server_pid()) - earlier
        assert len(builders) == 2 and all(_has_tensorflow(b) for b in builders)
        assert not any(_has_tensorflow(w) for w in workers)
        time.sleep(2.5)                       # idle for longer than Ray's default threshold (1 s)
        second = fanout.run(_sweep(tmp_path, "second", "[0.375, 0.625]"), tmp_path / "results", progress=False)
        assert second.n_built == 2 and second.build_pids <= workers and second.n_built_warm == 2
        # both build workers are still there (beside the simulator worker that profiled the cached base)
        assert second.n_cached == 1 and workers < _raylet_workers()
        assert _children(forkserver.server_pid()) - earlier == builders
    finally:
        ray.shutdown()


def test_a_cached_sweep_profiles_in_as_many_simulator_workers_as_builds_run_at_once(tmp_path):
    assert fanout.connect(None, num_cpus=2)
    try:
        levels = "[0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]"
        first = fanout.run(_sweep(tmp_path, "first", levels), tmp_path / "results", progress=False)
        assert first.n_built == 8 and not _raylet_workers(b"simulator")   # profiled in the builds
        again = fanout.run(_sweep(tmp_path, "again", levels), tmp_path / "results", progress=False)
        assert again.n_cached == 8 and again.n_built == 0 and again.counts.profiled == 8
        # eight profile tasks, at most three (CPUs + 1) in flight: with all eight submitted at once
        # Ray started a simulator worker for each. A worker hands its lease back to the raylet
        # after the driver has the result, so a task submitted at that moment may get a fourth.
        assert 1 <= len(_raylet_workers(b"simulator")) <= 4
    finally:
        ray.shutdown()
