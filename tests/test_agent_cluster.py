"""Board agents on a two-node Ray cluster: each board's actor runs on the node its board is on."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
KIND = "brd2601b"


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for i in range(2):
        c.add_node(num_cpus=1, resources={f"board:{KIND}": 2, f"bench-host-{i}": 1})
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.mark.slow
def test_boards_on_two_nodes_are_scheduled_by_their_resource(cluster, zoo_dir, tmp_path):
    import ray
    from device_agents.agent import AgentConfig
    from device_agents.pool import BoardPool, spawn_agent
    from device_agents.virtual_host import VirtualBoardHost
    config = AgentConfig(exchange_timeout_s=1.0, profile_timeout_s=2.0, lock_dir=str(tmp_path / "locks"))
    Host = ray.remote(num_cpus=0)(VirtualBoardHost)
    hosts = [Host.options(resources={f"bench-host-{i}": 1}).remote(2, f"node{i}", time_scale=0.01)
             for i in range(2)]
    placed = ray.get([h.ports.remote() for h in hosts])
    assert placed[0][0] != placed[1][0]                       # two different nodes
    agents, node_of = [], {}
    for node_id, boards in placed:
        for board_id, port in boards:
            agents.append(spawn_agent(port, KIND, config, node_id=node_id))
            node_of[board_id] = node_id
    pool = BoardPool(agents, status_timeout_s=180)   # fresh actors start slowly on a loaded machine
    models = sorted(zoo_dir.glob("*.tflite"))[:8]
    futures = [pool.submit(f"j{i}", m.read_bytes(), m.stem, kind=KIND) for i, m in enumerate(models)]
    results = [f.result(timeout=300) for f in futures]
    states = pool.states()
    pool.close()
    assert [r.status for r in results] == ["measured"] * len(models)
    assert {r.record.model.name for r in results} == {m.stem for m in models}
    # every agent runs on the node where its board is plugged in
    assert {s.board_id: s.node_id for s in states} == node_of
    used_nodes = {node_of[r.board_id] for r in results}
    assert len(used_nodes) == 2
    on_boards = {}
    for h in hosts:
        on_boards.update(ray.get(h.profiles_completed.remote()))
    assert sum(on_boards.values()) == len(models)             # each job measured once, on a board
    assert ray.cluster_resources()[f"board:{KIND}"] == 4
