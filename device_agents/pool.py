"""The board pool: the orchestrator's one entry point to boards, in a Ray cluster or in this process.

    pool = BoardPool.from_cluster()                 # every agent started by `mvpfarm agent start`
    pool = BoardPool.in_process([BoardAgent(port)]) # agents in this process, no Ray (see fleet.local_fleet)
    fut = pool.submit("job-1", tflite_bytes, "kws", kind="brd2601b")
    result = fut.result()                           # JobResult: measured (record) or failed (reason)
    pool.states()                                   # [BoardStatus]: idle / busy / quarantined + why
    pool.close()

Each board is one Ray actor (`BoardAgent`) placed by the custom resource `board:<kind>` on the
node where the board is plugged in. The pool runs each job on one idle board of the requested kind
at a time; a job its board hands back (hang, reboot, unplug, quarantine) goes to another board of
the same kind, and only after the attempt on the first board has ended, so no job is ever measured
twice. Every submitted job's future resolves exactly once: measured, or failed with its reason.
The same dispatcher drives agents in this process (a nightly's virtual boards without Ray): there
each call to an agent runs on a thread of the pool's own instead of being a Ray actor task.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

from device_agents.agent import (FAILED, MEASURED, QUARANTINED, VENDOR_FIRMWARE, AgentConfig, BoardAgent,
                                 BoardStatus, JobOutcome, fit_problem, probe)
from device_agents import protocol as P
from simulator.errors import ModelError
from simulator.profiler import profile_model
from simulator.record import ProfileRecord

NAMESPACE = "mvpfarm"
ACTOR_PREFIX = "board-"


@dataclass
class JobResult:
    job_id: str
    status: str                             # "measured" or "failed"
    record: ProfileRecord | None = None     # target.source == "device", target.board == board_id
    reason: str | None = None               # why it failed
    board_id: str | None = None             # the board that measured it
    attempts: list[str] = field(default_factory=list)   # "board: why it was handed back", in order


def board_resource(kind: str) -> str:
    return f"board:{kind}"


def spawn_agent(port: str, kind: str, config: AgentConfig | None = None, node_id: str | None = None,
                name: str | None = None, detached: bool = False, hold_resource: bool = True):
    """One agent actor for the board on `port`, pinned to `node_id` (the node the port is on;
    default: this driver's node) and holding one unit of `board:<kind>`. Without `hold_resource`
    (virtual boards started for one run on a node that offers no board resources) node affinity
    alone places it. `config.firmware` picks the agent: mvpfarm's protocol (`BoardAgent`) or the
    vendor's model profiler (`vendor_agent.VendorAgent`)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    node_id = node_id or ray.get_runtime_context().get_node_id()
    opts = dict(num_cpus=0, max_concurrency=4, resources={board_resource(kind): 1} if hold_resource else {},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    if name:
        opts.update(name=name, namespace=NAMESPACE, get_if_exists=False)
    if detached:
        opts["lifetime"] = "detached"
    return ray.remote(agent_class(config)).options(**opts).remote(port, config or AgentConfig())


def agent_class(config: AgentConfig | None):
    """The agent for boards with `config.firmware`."""
    if config is not None and config.firmware == VENDOR_FIRMWARE:
        from device_agents.vendor_agent import VendorAgent
        return VendorAgent
    return BoardAgent


def launch_local_agents(ports: list[str], config: AgentConfig | None = None, detached: bool = False,
                        probe_timeout_s: float = 2.0) -> tuple[list, list[str]]:
    """Probes each port here, then starts an agent actor on this node for every board that
    answered. Returns (actors, one line per port that was skipped and why)."""
    actors, skipped = [], []
    for port in ports:
        try:
            info = probe(port, probe_timeout_s, config.lock_dir if config else None)
        except Exception as e:    # noqa: BLE001 - any failure of one port is reported, not fatal
            skipped.append(f"{port}: {e}")
            continue
        actors.append(spawn_agent(port, info.board_kind, config, name=ACTOR_PREFIX + info.board_id,
                                  detached=detached))
    return actors, skipped


@dataclass
class _Job:
    job_id: str
    data: bytes
    name: str
    kind: str | None
    ram_bytes: int
    future: Future
    attempts: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    warmup: int | None = None
    repeats: int | None = None


class _RayCalls:
    """Agents as Ray actors: a call is a task on the actor, its handle an ObjectRef."""

    def __init__(self):
        import ray
        self._ray = ray

    def call(self, agent, method: str, *args):
        return getattr(agent, method).remote(*args)

    def get(self, handle, timeout: float | None = None):
        return self._ray.get(handle, timeout=timeout)

    def wait(self, handles: list, timeout: float) -> list:
        return self._ray.wait(handles, num_returns=1, timeout=timeout)[0]

    def close(self) -> None:
        pass


class _ThreadCalls:
    """Agents in this process: a call runs on a thread, its handle a Future. An agent answers
    `status` while it runs a job, as its actor does (max_concurrency), so two threads per board."""

    def __init__(self, n_agents: int):
        self._threads = ThreadPoolExecutor(max_workers=max(2, 2 * n_agents), thread_name_prefix="board-agent")

    def call(self, agent, method: str, *args):
        return self._threads.submit(getattr(agent, method), *args)

    def get(self, handle, timeout: float | None = None):
        return handle.result(timeout=timeout)

    def wait(self, handles: list, timeout: float) -> list:
        return list(wait_futures(handles, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def close(self) -> None:
        self._threads.shutdown(wait=True)


@dataclass
class _Board:
    actor: object
    status: BoardStatus
    busy_with: _Job | None = None


class BoardPool:
    def __init__(self, actors: list, max_attempts: int = 4, status_timeout_s: float = 30.0, calls=None):
        self._calls = calls or _RayCalls()
        self.max_attempts = max_attempts
        self._boards: dict[str, _Board] = {}
        refs = [self._calls.call(a, "status") for a in actors]
        for i, (actor, ref) in enumerate(zip(actors, refs)):
            try:
                st = self._calls.get(ref, timeout=status_timeout_s)
            except Exception as e:   # noqa: BLE001 - an agent that failed to start is shown, not fatal
                st = BoardStatus(board_id=f"agent-{i}", kind="?", port="?", host="?",
                                 state=QUARANTINED, reason=f"agent unavailable: {_one_line(e)}")
            self._boards[st.board_id] = _Board(actor, st)
        self._pending: list[_Job] = []
        self._in_flight: dict = {}       # ObjectRef -> board_id
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch, name="board-pool", daemon=True)
        self._thread.start()

    @classmethod
    def from_cluster(cls, **kw) -> "BoardPool":
        """Every board agent registered in the cluster (named actors in namespace "mvpfarm")."""
        import ray
        names = [a for a in ray.util.list_named_actors(all_namespaces=True)
                 if a.get("namespace") == NAMESPACE and a.get("name", "").startswith(ACTOR_PREFIX)]
        return cls([ray.get_actor(a["name"], namespace=NAMESPACE) for a in names], **kw)

    @classmethod
    def in_process(cls, agents: list[BoardAgent], **kw) -> "BoardPool":
        """Agents of this process (`BoardAgent` objects), without Ray."""
        return cls(agents, calls=_ThreadCalls(len(agents)), **kw)

    # -- API --------------------------------------------------------------------------------------

    def submit(self, job_id: str, tflite_bytes: bytes, name: str = "model", kind: str | None = None,
               warmup: int | None = None, repeats: int | None = None) -> Future:
        """Queues one job; the future gives a JobResult (never raises for board or model trouble).
        `warmup` and `repeats` default to each agent's configuration."""
        fut: Future = Future()
        try:
            ram_bytes = profile_model(tflite_bytes, accelerator="mvp", name=name).summary.ram_bytes
        except ModelError as e:
            fut.set_result(JobResult(job_id, FAILED, reason=f"not a usable model: {e}"))
            return fut
        with self._cv:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._pending.append(_Job(job_id, bytes(tflite_bytes), name, kind, ram_bytes, fut,
                                      warmup=warmup, repeats=repeats))
            self._cv.notify_all()
        return fut

    def states(self, timeout_s: float = 2.0) -> list[BoardStatus]:
        """Each board's state, freshly asked where the agent answers in time."""
        with self._cv:
            boards = list(self._boards.items())
        refs = {bid: self._calls.call(b.actor, "status") for bid, b in boards if b.status.reason is None
                or not b.status.reason.startswith("agent unavailable")}
        out = []
        for bid, b in boards:
            st = b.status
            if bid in refs:
                try:
                    st = self._calls.get(refs[bid], timeout=timeout_s)
                except Exception:   # noqa: BLE001 - a busy or dead agent keeps its last known state
                    pass
            out.append(st)
        return out

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)
        self._calls.close()

    def __enter__(self) -> "BoardPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the dispatcher ----------------------------------------------------------------------------

    def _finish(self, job: _Job, result: JobResult) -> None:
        result.attempts = list(job.attempts)
        job.future.set_result(result)

    def _usable(self, b: _Board, job: _Job) -> bool:
        return b.status.state != QUARANTINED and (job.kind is None or b.status.kind == job.kind)

    def _assign(self) -> None:
        for job in list(self._pending):
            usable = [b for b in self._boards.values() if self._usable(b, job)]
            if not usable:
                why = "; ".join(f"{b.status.board_id}: {b.status.reason}" for b in self._boards.values()
                                if job.kind is None or b.status.kind == job.kind) or "none registered"
                self._pending.remove(job)
                self._finish(job, JobResult(job.job_id, FAILED, reason=f"no usable board of kind "
                                            f"{job.kind or 'any'} ({why})"))
                continue
            fitting = [b for b in usable if _fits(job, b.status) is None]
            if not fitting:
                self._pending.remove(job)
                self._finish(job, JobResult(job.job_id, FAILED,
                                            reason=f"refused before upload: {_fits(job, usable[0].status)}"))
                continue
            # a job handed back goes to a board it has not failed on, waiting for one if need be;
            # only when it has failed on all of them does it get a second chance on one
            untried = [b for b in fitting if b.status.board_id not in job.tried]
            idle = [b for b in (untried or fitting) if b.busy_with is None]
            if not idle:
                continue
            board = min(idle, key=lambda b: (job.tried.count(b.status.board_id), b.status.jobs_measured))
            self._pending.remove(job)
            board.busy_with = job
            ref = self._calls.call(board.actor, "run_job", job.job_id, job.data, job.name, job.warmup, job.repeats)
            self._in_flight[ref] = board.status.board_id

    def _settle(self, ref, board_id: str) -> None:
        board = self._boards[board_id]
        job, board.busy_with = board.busy_with, None
        try:
            outcome: JobOutcome = self._calls.get(ref)
        except Exception as e:   # noqa: BLE001 - the actor or its node died: the board is gone
            board.status.state, board.status.reason = QUARANTINED, f"agent lost: {_one_line(e)}"
            self._retry(job, board_id, board.status.reason)
            return
        if outcome.board is not None:
            board.status = outcome.board
        if outcome.status == MEASURED:
            self._finish(job, JobResult(job.job_id, MEASURED, outcome.record, None, board_id))
        elif outcome.status == FAILED:
            self._finish(job, JobResult(job.job_id, FAILED, None, outcome.reason, None))
        else:
            self._retry(job, board_id, outcome.reason or "handed back")

    def _retry(self, job: _Job, board_id: str, reason: str) -> None:
        job.attempts.append(f"{board_id}: {reason}")
        job.tried.append(board_id)
        if len(job.attempts) >= self.max_attempts:
            self._finish(job, JobResult(job.job_id, FAILED, reason=f"gave up after {len(job.attempts)} "
                                        f"attempts: " + " | ".join(job.attempts)))
        else:
            self._pending.insert(0, job)

    def _dispatch(self) -> None:
        try:
            self._dispatch_loop()
        except BaseException as e:   # a bug here must fail the jobs, never leave them hanging
            with self._cv:
                jobs = self._pending + [b.busy_with for b in self._boards.values() if b.busy_with]
                for job in jobs:
                    if not job.future.done():
                        self._finish(job, JobResult(job.job_id, FAILED,
                                                    reason=f"board pool failed: {_one_line(e)}"))
            raise

    def _dispatch_loop(self) -> None:
        while True:
            with self._cv:
                if self._closed and not self._in_flight:
                    for job in self._pending:
                        self._finish(job, JobResult(job.job_id, FAILED, reason="pool closed"))
                    self._pending.clear()
                    return
                if not self._closed:
                    self._assign()
                refs = list(self._in_flight)
                if not refs:
                    self._cv.wait(timeout=0.5)
                    continue
            ready = self._calls.wait(refs, 0.1)
            with self._cv:
                for ref in ready:
                    self._settle(ref, self._in_flight.pop(ref))


def _fits(job: _Job, st: BoardStatus) -> str | None:
    info = P.Info(P.PROTOCOL_VERSION, st.kind, st.firmware, st.board_id, 1, 0, 0,
                  st.arena_max_bytes, st.model_max_bytes, 1)
    return fit_problem(len(job.data), job.ram_bytes, info)


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


__all__ = ["BoardPool", "JobResult", "spawn_agent", "agent_class", "launch_local_agents", "board_resource",
           "NAMESPACE", "ACTOR_PREFIX"]
