"""The board pool on real Ray with virtual boards: faults, hand-backs, nothing measured twice."""
from __future__ import annotations

import os

import pytest

from device_agents.agent import AgentConfig
from device_agents.pool import BoardPool, spawn_agent
from device_agents.virtual_board import Faults, VirtualBoard

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
KIND = "brd2601b"


@pytest.fixture(scope="module")
def ray_local():
    import ray
    ray.init(address="local", num_cpus=2, resources={f"board:{KIND}": 8}, include_dashboard=False,
             log_to_driver=False, namespace="mvpfarm-test")
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    yield ray
    ray.shutdown()


@pytest.fixture
def config(tmp_path):
    return AgentConfig(exchange_timeout_s=0.5, profile_timeout_s=1.0, boot_timeout_s=0.5,
                       lock_dir=str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def variants(zoo_dir):
    models = sorted(zoo_dir.glob("*.tflite"))
    return [(f"variant-{i:02d}", models[i % len(models)].stem, models[i % len(models)].read_bytes())
            for i in range(12)]


def _pool(ports, config) -> BoardPool:
    """A pool of fresh agent actors. Ray starts their worker processes one after another, which on
    a loaded 2-core machine took 15 s each (measured beside six busy processes): the pool waits
    long enough that none of them is taken for unavailable."""
    return BoardPool([spawn_agent(port, KIND, config) for port in ports], status_timeout_s=180)


def _run(pool, variants):
    futures = {job: pool.submit(job, data, name, kind=KIND) for job, name, data in variants}
    return {job: f.result(timeout=300) for job, f in futures.items()}


def test_twelve_variants_over_four_boards_with_faults_are_each_measured_once(ray_local, config, variants):
    faults = {"vb-hang": Faults(hang=0), "vb-garbage": Faults(garbage=0.8),
              "vb-reboot": Faults(reboot=0.6), "vb-good": Faults()}
    boards = {bid: VirtualBoard(KIND, bid, seed=i, faults=f, time_scale=0.02).start()
              for i, (bid, f) in enumerate(faults.items())}
    try:
        pool = _pool([b.port for b in boards.values()], config)
        results = _run(pool, variants)
        states = {s.board_id: s for s in pool.states()}
        pool.close()
    finally:
        for b in boards.values():
            b.stop()

    assert sorted(results) == [job for job, _, _ in variants]
    assert all(r.status == "measured" for r in results.values()), \
        [(r.job_id, r.reason) for r in results.values() if r.status != "measured"]
    for (job, name, data), r in ((v, results[v[0]]) for v in variants):
        assert r.record.model.name == name and r.record.target.source == "device"
        assert r.record.target.board == r.board_id and r.board_id in boards
    # exactly once: the boards' own count of measured jobs adds up to the number of variants
    assert sum(s.jobs_measured for s in states.values()) == len(variants)
    assert states["vb-hang"].jobs_measured == 0

    hang = states["vb-hang"]
    assert hang.state == "quarantined" and "no reply to Profile" in hang.reason
    assert states["vb-garbage"].garbage_bytes > 0 and states["vb-garbage"].jobs_measured >= 1
    assert any("rebooted" in f for f in states["vb-reboot"].faults)
    assert boards["vb-reboot"].stats.reboots >= 1
    # the job the hanging board took went elsewhere, with the reason kept
    moved = [r for r in results.values() if any(a.startswith("vb-hang:") for a in r.attempts)]
    assert len(moved) == 1 and moved[0].board_id != "vb-hang"


def test_unplugging_a_board_mid_sweep_moves_its_job(ray_local, config, variants):
    boards = [VirtualBoard(KIND, f"vb-u{i}", seed=10 + i, faults=Faults(unplug=1) if i == 0 else Faults(),
                           time_scale=0.02).start() for i in range(3)]
    try:
        pool = _pool([b.port for b in boards], config)
        # one job per board first, so that vb-u0 has measured one when the rest arrive: the pool
        # then gives the first of them to vb-u0 (all idle, each with one measured), whose cable
        # comes out at its second PROFILE, however fast or slow the machine is
        results = _run(pool, variants[:3])
        assert sorted(r.board_id for r in results.values()) == ["vb-u0", "vb-u1", "vb-u2"]
        results |= _run(pool, variants[3:8])
        states = {s.board_id: s for s in pool.states()}
        pool.close()
    finally:
        for b in boards:
            b.stop()
    assert boards[0].unplugged
    assert all(r.status == "measured" for r in results.values())
    moved = [r for r in results.values() if any("port gone" in a for a in r.attempts)]
    assert len(moved) == 1 and moved[0].board_id != "vb-u0"
    assert states["vb-u0"].state == "quarantined" and states["vb-u0"].reason.startswith("port gone")
    assert states["vb-u0"].jobs_measured == 1
    assert sum(s.jobs_measured for s in states.values()) == 8


def test_a_model_no_board_can_hold_fails_with_the_reason(ray_local, config, zoo_dir):
    with VirtualBoard(KIND, "vb-tiny", seed=1, arena_max_bytes=32 * 1024) as vb:
        pool = _pool([vb.port], config)
        r = pool.submit("big", (zoo_dir / "image_example1.tflite").read_bytes(), "image_example1",
                        kind=KIND).result(timeout=60)
        other = pool.submit("k", b"not a model", "junk", kind=KIND).result(timeout=60)
        none = pool.submit("x", (zoo_dir / "image_example1.tflite").read_bytes(), "x",
                           kind="brd4186c").result(timeout=60)
        pool.close()
    assert r.status == "failed" and r.reason.startswith("refused before upload")
    assert "32,768 B of RAM" in r.reason
    assert vb.stats.uploads_begun == 0
    assert other.status == "failed" and "not a usable model" in other.reason
    assert none.status == "failed" and "no usable board of kind brd4186c" in none.reason
