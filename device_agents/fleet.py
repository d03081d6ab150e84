"""A run's boards of one kind: the cluster's board agents, or virtual boards started for the run
(on the driver's Ray node, or with `local_fleet` in this process without Ray).

    fleet = open_fleet("brd2601b", virtual=4)      # Ray must be connected
    fut = fleet.pool.submit(job_id, tflite_bytes, name, kind=fleet.kind)
    fleet.states()                                 # idle / busy / quarantined + why
    fleet.close()                                  # stops what the fleet started, nothing else

Boards that `mvpfarm agent start` registered in the cluster always win: virtual boards are the
stand-in for machines without hardware (the embedded default, CI, the demo), started only when
the cluster has no usable board of the kind. They are plugged into the driver's node, as a USB hub
would be: a `VirtualBoardHost` actor owns the pseudo-terminals and one agent actor per board talks
to them, exactly as agents talk to real ports. Those agents are not registered under a name, so
other runs and `mvpfarm boards list` never see them. A `local_fleet` (a nightly without a
cluster) runs its agents in this process; every fleet measures through the one `BoardPool`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from device_agents.agent import QUARANTINED, AgentConfig, BoardStatus
from device_agents.pool import BoardPool, board_resource, spawn_agent

# Virtual boards answer in milliseconds; these bound how long a hung or babbling one holds a job.
VIRTUAL_CONFIG = AgentConfig(exchange_timeout_s=2.0, profile_timeout_s=10.0, boot_timeout_s=3.0)


class NoBoards(Exception):
    """No board of the kind to measure on; the message is one line telling the user what to do."""


def usable(states: list[BoardStatus], kind: str | None) -> list[BoardStatus]:
    """Boards that can take a job of `kind` (any kind if None)."""
    return [s for s in states if s.state != QUARANTINED and (kind is None or s.kind == kind)]


def cluster_pool(kind: str | None) -> tuple[BoardPool, list[BoardStatus]] | None:
    """A pool over every agent registered in the cluster, with the usable boards of `kind`; None
    (and nothing left open) when there is no usable board of that kind."""
    pool = BoardPool.from_cluster()
    found = usable(pool.states(), kind)
    if found:
        return pool, found
    pool.close()
    return None


@dataclass
class Fleet:
    kind: str | None                        # None: any kind (a nightly's boards without a kind)
    pool: BoardPool
    note: str                               # where the boards come from, for the user and the report
    virtual: bool = False
    host: object = None                     # the VirtualBoardHost actor, for virtual fleets
    agents: list = field(default_factory=list)    # agent actors this fleet started
    stop_local: Callable[[], None] | None = None  # a local fleet: stops its agents and boards

    def states(self) -> list[BoardStatus]:
        return self.pool.states()

    def close(self) -> None:
        """Closes the pool (jobs in flight end first); stops the agents and boards it started."""
        self.pool.close()
        if self.stop_local is not None:
            self.stop_local()
        else:
            _stop(self.agents, self.host)


def _stop(agents: list, host) -> None:
    import ray
    if agents:
        try:    # releases the port locks now rather than when the processes die
            ray.get([a.close.remote() for a in agents], timeout=10)
        except Exception:   # noqa: BLE001 - a dead agent released its lock with its process
            pass
        for a in agents:
            ray.kill(a)
    if host is not None:
        try:
            ray.get(host.stop.remote(), timeout=10)
        except Exception:   # noqa: BLE001 - the boards die with the host process anyway
            pass
        ray.kill(host)


def open_fleet(kind: str, virtual: int = 0, faults: list[str] | tuple[str, ...] = (),
               seed: int = 0, config: AgentConfig | None = None, time_scale: float = 1.0,
               prefix: str = "vb", virtual_vendor: int = 0) -> Fleet:
    """The cluster's boards of `kind`, else `virtual` virtual boards on this node (with the
    given fault specs, "[I=]KIND[:VALUE]"; the last `virtual_vendor` of them run the vendor's
    model-profiler firmware, programmed through Simplicity Commander: `config.commander` or
    `commander` on PATH), else NoBoards. Ray must be connected."""
    found = cluster_pool(kind)
    if found is not None:
        pool, boards = found
        return Fleet(kind, pool, f"{len(boards)} {kind} board(s) of the cluster")
    if not virtual:
        raise NoBoards(f"no {kind} board agents in the Ray cluster: run `mvpfarm agent start` on the "
                       f"machines with boards (and pass their cluster's --address), or set virtual = N "
                       f"in the board target to measure on N virtual boards")
    return _virtual_fleet(kind, virtual, faults, seed, config or VIRTUAL_CONFIG, time_scale, prefix,
                          virtual_vendor)


def _vendor_config(config: AgentConfig) -> AgentConfig:
    """The agent configuration of virtual vendor-firmware boards: their Commander must exist."""
    from device_agents.agent import VENDOR_FIRMWARE
    from device_agents.commander import CommanderMissing, find_commander
    try:
        commander = find_commander(config.commander)
    except CommanderMissing as e:
        raise NoBoards(f"virtual vendor-firmware boards need Simplicity Commander: {e}") from None
    return replace(config, firmware=VENDOR_FIRMWARE, commander=commander)


def _virtual_fleet(kind: str, count: int, faults, seed: int, config: AgentConfig, time_scale: float,
                   prefix: str, vendor: int = 0) -> Fleet:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from device_agents.board_kinds import BOARD_KINDS
    from device_agents.faults import Faults
    from device_agents.virtual_host import VirtualBoardHost
    if kind not in BOARD_KINDS:
        raise NoBoards(f"no virtual board of kind {kind!r} (known: {', '.join(BOARD_KINDS)})")
    here = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n["NodeID"] == here), {})
    # a node started with board resources (the local default) lends them to its virtual boards
    hold = node.get("Resources", {}).get(board_resource(kind), 0) >= count
    modes = ["protocol"] * (count - vendor) + ["vendor"] * vendor
    configs = [config] * (count - vendor) + [_vendor_config(config)] * vendor if vendor else [config] * count
    host = ray.remote(VirtualBoardHost).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(
        count, f"{prefix}-{kind}", kind, seed, time_scale, Faults.parse_fleet(list(faults), count, vendor), modes)
    agents: list = []
    try:
        node_id, ports = ray.get(host.ports.remote(), timeout=120)
        agents = [spawn_agent(port, kind, cfg, node_id=node_id, hold_resource=hold)
                  for (_, port), cfg in zip(ports, configs)]
        pool = BoardPool(agents)
    except BaseException:
        _stop(agents, host)
        raise
    described = f" (faults: {', '.join(faults)})" if faults else ""
    firmware = f", the last {vendor} with the vendor's model-profiler firmware" if vendor else ""
    return Fleet(kind, pool, f"{count} virtual {kind} board(s) started for this run{firmware}{described}",
                 virtual=True, host=host, agents=agents)


def local_fleet(kind: str, count: int, seed: int = 0, silicon=None, prefix: str = "vb",
                config: AgentConfig | None = None) -> Fleet:
    """`count` virtual boards in this process with an agent each, no Ray: for a nightly on a
    machine (or CI runner) without hardware and without a cluster. Board I of the fleet is
    PREFIX-I, seeded SEED + I, with the given silicon model (default: the published one)."""
    import tempfile

    from device_agents.agent import BoardAgent
    from device_agents.board_kinds import BOARD_KINDS
    from device_agents.virtual_board import VirtualBoard
    if kind not in BOARD_KINDS:
        raise NoBoards(f"no virtual board of kind {kind!r} (known: {', '.join(BOARD_KINDS)})")
    lock_dir = tempfile.TemporaryDirectory(prefix="mvpfarm-locks-")
    config = replace(config or AgentConfig(), lock_dir=lock_dir.name)
    boards, agents = [], []

    def stop() -> None:
        for a in agents:
            a.close()
        for b in boards:
            b.stop()
        lock_dir.cleanup()
    try:
        for i in range(count):
            boards.append(VirtualBoard(kind, f"{prefix}-{i}", seed=seed + i, silicon=silicon).start())
            agents.append(BoardAgent(boards[-1].port, config))
        pool = BoardPool.in_process(agents)
    except BaseException:
        stop()
        raise
    return Fleet(kind, pool, f"{count} virtual {kind} board(s) in this process", virtual=True, stop_local=stop)


__all__ = ["Fleet", "NoBoards", "open_fleet", "local_fleet", "cluster_pool", "usable", "VIRTUAL_CONFIG"]
