"""Fan-out: a sweep's variants as Ray tasks, results written to the table as they arrive.

Build tasks convert a variant and profile it on the sweep's simulator targets in the same worker
(in its builder, see below), on the CPU the build holds (see `_Runner._pump`). Models found in the
build cache are profiled by profile tasks, in a pool of simulator workers of their own (Ray
keeps one pool per runtime environment), which never import TensorFlow and hold no CPU slot (see
`profile_task`). A build's .tflite reaches board targets through Ray's object store. A `Session`
keeps one Ray connection over several sweeps, so that the later ones reuse build workers that
have built before.

A new connection's build workers are warm before the first build: builds run in Ray's default
pool, whose workers Ray starts with the node. On the local Ray that `connect` starts, a worker's
build-pool tasks run in a builder forked from the fork server (`forkserver`), which imported
TensorFlow while Ray started; the first build forks it. On an existing cluster, as soon as Ray is
up a warm-up task per CPU (`warm_up_builds`) imports TensorFlow in the workers while the driver
plans the sweep, opens the boards and the base model builds. The driver sends each build as soon
as it is planned.

Board targets (`kind = "board"`) go to a `device_agents.fleet.Fleet` per board kind: the
cluster's board agents, or virtual boards started for the run. Each (variant, target) is one
board job with a stable id; the board pool runs it on one board at a time, hands it to another
board when one fails, and resolves it once: measured (a device record) or failed with the
reason. Its result goes through the same writer as the simulator's, and the boards' states
(idle, busy, quarantined and why) are stored with the run.

Failure handling:
- a worker process that dies is retried by Ray (`max_retries`; a build once: a conversion that
  segfaults does it again); a task that keeps killing its worker is recorded as failed with the
  reason ("conversion crashed" for a build);
- a variant that cannot be converted, does not fit the board, or that the profiler rejects is
  recorded as failed with its reason (the numbers are kept when there are any);
- the driver writes each result in one transaction as it arrives, so Ctrl-C or a killed driver
  loses at most the tasks in flight, and a rerun of the same sweep file measures only what is
  missing (the table's UNIQUE key makes a second write of a row impossible).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

# Ray reads this once, when it is imported: set here, before the import, every node this process
# starts advertises 127.0.0.1 (`ray.nodes()`), not the machine's network address.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
import ray  # noqa: E402

from orchestrator import board, build, build_pool, forkserver, sweep_file
from orchestrator import progress as progress_mod
from orchestrator.build_pool import (BUILD_RETRIES, MAX_RETRIES, base_config_task, build_task, train_task,
                                     warm_up_task)
from orchestrator.progress import Counts, SweepProgress
from orchestrator.results_db import HEARTBEAT_S, NOT_APPLICABLE, Measurement, ResultsDB, plain_text
from orchestrator.sweep_file import Sweep, TargetSpec
from orchestrator.tips import TipNotApplicable, apply_tips
from orchestrator.variants import Variant, expand
from orchestrator.versions import tool_versions
from simulator.errors import UserError
from simulator.record import ProfileRecord

_WAIT_S = 0.5


class SweepError(UserError):
    """A sweep that cannot go on (e.g. its base model does not build); one line for the user."""


# --- Ray ---------------------------------------------------------------------------------------
def connect(address: str | None = None, num_cpus: int | None = None, resources: dict | None = None,
            progress: bool | str | None = False, verbose: bool = False) -> bool:
    """Connects to the cluster at `address` (or RAY_ADDRESS), else starts a local Ray on
    127.0.0.1 offering `resources` (e.g. the board resources of virtual boards). Returns True if
    this call started Ray (and so should shut it down). `progress` as `progress.mode` takes it;
    Ray's own banners, warnings and worker logs reach stderr only when `verbose`."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"     # every node on 127.0.0.1
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    if address:
        probe_address(address)       # before saying anything: a dead address is one line
        progress_mod.step(f"connecting to the Ray cluster at {address}", progress)
        ray.init(address=address, **common)
    else:
        progress_mod.step("starting a local Ray on 127.0.0.1", progress)
        _loopback_only()
        for name, value in node_worker_settings().items():
            os.environ.setdefault(name, value)
        # first, so that it imports TensorFlow while Ray starts; the node's workers inherit where
        # it listens from the raylet's environment (only this node's: not a later cluster's)
        try:
            os.environ[forkserver.ENV_VAR] = forkserver.start(verbose)
        except OSError as e:
            progress_mod.step(f"no fork server ({e}): each build worker imports TensorFlow itself", progress)
        try:
            ray.init(address="local", num_cpus=num_cpus, resources=resources or None, include_dashboard=False,
                     _node_ip_address="127.0.0.1", **common)
        finally:
            forked = os.environ.pop(forkserver.ENV_VAR, None) is not None
        if forked:
            # its build workers need no warm-up: a build's first call forks its builder (20 ms), and
            # a warm-up in front of it only kept the first builds waiting for a core (0.1-0.2 s each)
            _warmed.add(_connection())
    return True


PROBE_TIMEOUT_S = 5.0


def probe_address(address: str) -> None:
    """Raises SweepError (one line) unless something accepts a TCP connection at the cluster
    address. Without it, ray.init on an address nothing answers retries for minutes and prints
    pages of its C++ warnings."""
    target = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die
        try:
            target = canonicalize_bootstrap_address_or_die("auto")
        except Exception as e:      # ray says why in its own words (no cluster on this machine)
            raise SweepError(f"--address auto: no running Ray cluster found ({build.one_line(e)})") from None
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not port.isdigit() or not host:
        raise SweepError(f"--address {address}: not HOST:PORT (e.g. 127.0.0.1:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise SweepError(f"--address {address}: nothing answers at {host}:{port} "
                         f"({e.strerror or type(e).__name__}); start the head there (ray start --head), "
                         "or leave out --address (and RAY_ADDRESS) for a local Ray") from None


class Session:
    """One Ray connection for several sweeps (a nightly suite, a script's loop). Ray keeps a job's
    idle workers, so the sweeps after the first find build workers that have already imported
    TensorFlow (a few seconds per worker) and simulator workers that are already up. Ray starts
    with the first sweep that has work (one with nothing left to measure needs none), offering
    the virtual boards of every sweep's board targets, and stops when the session ends."""

    def __init__(self, sweeps: list[Sweep], address: str | None = None, num_cpus: int | None = None,
                 progress: bool | str | None = False, verbose: bool = False):
        self.address, self.num_cpus, self.progress, self.verbose = address, num_cpus, progress, verbose
        self.resources = _virtual_board_resources([t for s in sweeps for t in s.targets if t.kind == "board"])
        self.started = False

    def connect(self) -> None:
        self.started |= connect(self.address, self.num_cpus, resources=self.resources, progress=self.progress,
                                verbose=self.verbose)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            ray.shutdown()


def _loopback_only() -> None:
    """When Ray was imported before this module (a user's script, a notebook), it has already read
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER; `_node_ip_address` alone does not keep a local node off the
    network address (measured: ray 2.x advertised 192.0.2.2), so apply the setting it missed."""
    from ray._private import ray_constants
    if getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        ray_constants.ENABLE_RAY_CLUSTER = False


# How long an idle worker lives before the raylet may stop it (1 hour): longer than any gap
# between the tasks of a sweep or the sweeps of a session.
IDLE_WORKER_KEEP_MS = 3_600_000


def node_worker_settings() -> dict[str, str]:
    """The raylet settings (environment variables, read when a node starts) that keep a node's
    workers as mvpfarm's two pools need them: no spare workers, and no worker stopped while idle.

    - `RAY_num_workers_soft_limit=0`. On every lease request the raylet starts min(soft limit,
      lease backlog) minus its idle and starting workers. In a sweep's first seconds every worker
      is importing TensorFlow, none is idle, so with a soft limit of 5 (2 CPUs) it started two or
      three spare workers that never ran a task, 0.4-0.6 s of CPU each taken from the imports on a
      2-core machine (raylet debug log: "Prestarting 1 workers given lease backlog size 2").
      At 0 it starts a worker only when a lease finds none.
    - `RAY_idle_worker_killing_time_threshold_ms`: the soft limit is also how many idle workers the
      raylet keeps; beyond it, it stops those idle longer than this threshold (1 s by default).
      A build worker stopped that way pays TensorFlow's import again in its next build (measured
      with one idle worker per CPU: 14 build processes for 18 builds, 7x slower), so idle workers
      are kept for IDLE_WORKER_KEEP_MS; they end with the job (the driver) that owns them.
    Set for the local Ray that `connect` starts; nodes of an existing cluster need them too."""
    return {"RAY_num_workers_soft_limit": "0",
            "RAY_idle_worker_killing_time_threshold_ms": str(IDLE_WORKER_KEEP_MS)}


def _worker_env(role: str) -> dict:
    return {"env_vars": {"MVPFARM_WORKER": role}}


_warmed: set[tuple[str, str]] = set()      # (job, driver's node): connections warmed up


def _connection() -> tuple[str, str]:
    ctx = ray.get_runtime_context()
    # a fresh local Ray numbers its first job 01000000 again: the node id tells two Rays apart
    return ctx.get_job_id(), ctx.get_node_id()


def warm_up_builds(n_builds: int) -> list:
    """Starts a warm-up task (`warm_up_task`) per CPU of the cluster, at most `n_builds`, once per
    connection (a Ray job: its workers are its own): the build workers import TensorFlow while the
    driver goes on. Returns their refs ([] when this connection is already warm, or is the local
    Ray that `connect` started, whose build workers fork their builders from the fork server)."""
    connection = _connection()
    if connection in _warmed:
        return []
    _warmed.add(connection)
    n = min(n_builds, int(ray.cluster_resources().get("CPU", 0)))
    return [warm_up_task.remote() for _ in range(n)]


@ray.remote(num_cpus=0)
class EpochCounter:
    """Training epochs finished in this run, for the progress line."""

    def __init__(self):
        self.n = 0

    def add(self, k: int = 1) -> None:
        self.n += k

    def get(self) -> int:
        return self.n


# Scoring holds a CPU slot: it is seconds of emulation per variant, unlike a profile.
@ray.remote(num_cpus=1, max_retries=MAX_RETRIES, runtime_env=_worker_env("simulator"))
def score_task(models: dict, target: dict, name: str, y_val, metric: str, search_path: list,
               profile: bool = True) -> dict:
    """The profile of a trained variant (its first seed's model) and every seed's emulated
    accuracy in the target's mode."""
    from orchestrator import scoring
    res = build_pool.profile(models["tflite"][0], target, name) if profile else {"ok": True}
    t0 = time.perf_counter()
    per_seed = []
    for tflite, ref in zip(models["tflite"], models["reference_outputs"]):
        try:
            per_seed.append(scoring.score(tflite, models["x_val"], y_val, metric, target["accelerator"], ref,
                                          search_path))
        except Exception as e:      # an evaluator bug must not take the sweep down: record it
            per_seed.append({"accuracy": None, "agreement_tflite": None,
                             "error": f"scoring error: {type(e).__name__}: {e}"})
    res["scores"] = per_seed
    res["score_s"] = time.perf_counter() - t0
    return res


# A variant built in this run is profiled by its build task (see `_Runner._pump`); profile tasks
# profile the models found in the build cache (a resumed or repeated sweep). They hold no CPU slot:
# each is tens of milliseconds against a conversion's second, and one that had to wait for a slot
# sat behind every queued build (Ray hands a freed CPU to the next build first).
@ray.remote(num_cpus=0, max_retries=MAX_RETRIES, runtime_env=_worker_env("simulator"))
def profile_task(data: bytes, target: dict, name: str) -> dict:
    return build_pool.profile(data, target, name)


def _renamed(profiled: dict, name: str) -> dict:
    """A profile result (`build_pool.profile`) of a model, for another variant with the same model."""
    record = profiled["record"]
    return {**profiled, "record": replace(record, model=replace(record.model, name=name))}


def _build_failure(e: BaseException, what: str = "conversion") -> str:
    """A build task's Ray error as its row's reason: a worker that died is a crash (a variant's:
    in TensorFlow's converter, the only native code a build runs besides Keras)."""
    if isinstance(e, ray.exceptions.WorkerCrashedError):
        where = " in TensorFlow's converter" if what == "conversion" else ""
        return (f"{what} crashed: the build worker died{where} (e.g. SIGSEGV), "
                f"also when retried {BUILD_RETRIES}x")
    return f"build worker failed: {_ray_reason(e)}"


def _ray_reason(e: BaseException) -> str:
    """A Ray error as a row's reason: the exception a task raised, with its own message (a
    RayTaskError's text is Ray's coloured `ray::task() (pid=...)` banner, which says nothing)."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        e = cause
    return plain_text(f"{type(e).__name__}: {build.one_line(e)}")[:300]


# --- the run -----------------------------------------------------------------------------------
@dataclass
class RunResult:
    run_id: str
    db_path: str
    counts: Counts
    wall_s: float = 0.0
    build_s: float = 0.0            # summed over build tasks (model construction + conversion)
    warmup_s: float = 0.0           # summed over warm-up tasks (TensorFlow's import in build workers)
    convert_s: float = 0.0          # summed TensorFlow conversion time
    profile_s: float = 0.0          # summed simulator time
    n_built: int = 0                # conversions run (cache hits excluded)
    n_cached: int = 0
    n_skipped: int = 0              # measurements already in the table (resume)
    n_cpus: float = 0.0
    profile_workers_with_tf: set = field(default_factory=set)     # profile tasks' workers (cached builds)
    n_profiled_by_build: int = 0    # simulator profiles run by the task that built the model
    build_pids: set = field(default_factory=set)      # worker processes that ran conversions
    warm_pids: set = field(default_factory=set)       # build workers warmed up by this run
    n_built_warm: int = 0           # conversions that found TensorFlow imported in their worker
    boards: list[dict] = field(default_factory=list)  # board states at the end (BoardStatus dicts)
    board_notes: list[str] = field(default_factory=list)   # where each target's boards came from


@dataclass
class _Job:
    variant: Variant
    targets: list[TargetSpec]
    spec_key: str | None = None


def run(sweep: Sweep, results_dir: str | Path = "results", address: str | None = None,
        num_cpus: int | None = None, cache_dir: str | Path | None = None,
        progress: bool | None = None, retry_failed: bool = False, board_config=None,
        session: Session | None = None) -> RunResult:
    """Runs the sweep's missing measurements (all of them on the first run); with `retry_failed`
    the failed ones too (e.g. after a simulator fix). `board_config` (a
    `device_agents.agent.AgentConfig`) replaces the agents' timeouts of virtual boards. In a
    `session`, the session's Ray connection is used and outlives the run."""
    results_dir = Path(results_dir)
    cache_dir = str(Path(cache_dir) if cache_dir else results_dir / "cache")
    variants = expand(sweep.tips, sweep.mode)
    versions = tool_versions()
    db = ResultsDB(results_dir)

    def start_run():
        db.start_run(sweep.run_id, sweep.name, sweep.path, sweep.sha256, sweep.text, sweep.mode,
                     sweep.base, len(variants), len(sweep.targets), versions)
    try:
        if retry_failed:
            db.delete_failed(sweep.run_id)
        done = db.done(sweep.run_id)
        jobs = [_Job(v, [t for t in sweep.targets if (v.id, t.key) not in done]) for v in variants]
        jobs = [j for j in jobs if j.targets]
        counts = Counts(total=sum(len(j.targets) for j in jobs))
        result = RunResult(sweep.run_id, str(db.path), counts,
                           n_skipped=len(variants) * len(sweep.targets) - counts.total)
        if not jobs:
            start_run()
            db.set_status(sweep.run_id, "finished")
            return result
        board_targets = list({t.key: t for j in jobs for t in j.targets if t.kind == "board"}.values())
        data = _load_data(sweep, cache_dir)   # bad data stops the sweep here, before Ray and any training
        if session is not None:
            session.connect()
            started = False
        else:
            started = connect(address, num_cpus, resources=_virtual_board_resources(board_targets),
                              progress=progress)
        t0 = time.perf_counter()
        # before the boards, the base and the plan: the build workers import TensorFlow meanwhile
        warm_refs = warm_up_builds(len(jobs))
        fleets: dict = {}
        run_started = False
        try:
            # boards are found (or virtual ones started) before any work, so that a sweep that
            # cannot measure on them stops at once, without creating or touching the run
            fleets = _open_fleets(sweep, board_targets, board_config, result)
            runner = _Runner(sweep, db, cache_dir, versions, result, fleets, data)
            runner.pending.update({ref: ("warm",) for ref in warm_refs})
            runner.prepare()              # the base's config; data checked against it
            start_run()
            run_started = True
            result.n_cpus = ray.cluster_resources().get("CPU", 0.0)
            runner.max_building = max(1, int(result.n_cpus or 1)) + 1
            runner.run(jobs, progress)
        except KeyboardInterrupt:
            if run_started:
                db.set_status(sweep.run_id, "interrupted")
            raise
        except SweepError:
            if run_started:
                db.set_status(sweep.run_id, "failed")
            raise
        finally:
            _close_fleets(fleets, db, sweep.run_id, result)
            result.wall_s = time.perf_counter() - t0
            if started:
                ray.shutdown()
        db.set_status(sweep.run_id, "finished")
        return result
    finally:
        db.close()


def _load_data(sweep: Sweep, cache_dir: str):
    """The sweep's data set with the checks that need no model (and, when the base's config is
    cached, those that do), or None; raises SweepError."""
    if sweep.data is None:
        return None
    from orchestrator import datasets
    try:
        data = datasets.load(sweep.data.as_dict(), sweep.path)
    except datasets.DataError as e:
        raise SweepError(str(e)) from None
    cached = Path(cache_dir) / "base" / f"{build.base_key(sweep.base)}.json"
    if cached.is_file():
        check_data(sweep, data, json.loads(cached.read_text()))
    return data


def check_data(sweep: Sweep, data, base_spec: dict):
    """The data against the base's input and output units; returns the metric (SweepError)."""
    from orchestrator import datasets, metrics, training
    shape, units = training.model_io(base_spec)
    d = sweep.data
    try:
        metric = metrics.get(d.metric, d.search_path)
    except Exception as e:
        raise SweepError(f"{sweep.path}: data.metric: {d.metric} cannot be loaded ({type(e).__name__}: {e})") from None
    try:
        datasets.check_against_model(data, shape or list(data.x_train.shape[1:]), units, metric.classifier,
                                     sweep.path)
    except datasets.DataError as e:
        raise SweepError(str(e)) from None
    return metric


def _virtual_board_resources(targets: list[TargetSpec]) -> dict:
    """What a local Ray started for this sweep offers its virtual boards: `board:<kind>`."""
    out: dict[str, float] = {}
    for t in targets:
        if t.virtual:
            key = f"board:{t.board}"
            out[key] = max(out.get(key, 0), t.virtual)
    return out


def _open_fleets(sweep: Sweep, targets: list[TargetSpec], config, result: RunResult) -> dict:
    """One fleet per board target, keyed by the target's key. Raises SweepError (one line)."""
    if not targets:
        return {}
    from device_agents.fleet import NoBoards, open_fleet
    fleets = {}
    seed = int(hashlib.sha256(sweep.run_id.encode()).hexdigest()[:6], 16)
    try:
        for i, t in enumerate(targets):
            where = f"targets: kind = \"board\", board = \"{t.board}\""
            try:
                fleet = open_fleet(t.board, t.virtual, t.faults, seed=seed + 100 * i, config=config,
                                   prefix=f"vb{i}", virtual_vendor=t.virtual_vendor)
            except NoBoards as e:
                raise SweepError(f"{sweep.path}: {where}: {e}") from None
            fleets[t.key] = fleet
            result.board_notes.append(f"{t.key}: {fleet.note}")
    except BaseException:
        for f in fleets.values():
            f.close()
        raise
    return fleets


def _close_fleets(fleets: dict, db: ResultsDB, run_id: str, result: RunResult) -> None:
    """Keeps each board's last state with the run (for the report), then stops the fleets."""
    for key, fleet in fleets.items():
        try:
            states = [dict(s.to_dict(), target=key) for s in fleet.states()]
        finally:
            fleet.close()
        result.boards += states
    if result.boards:
        db.set_board_states(run_id, result.boards)


class _Runner:
    def __init__(self, sweep: Sweep, db: ResultsDB, cache_dir: str, versions: dict, result: RunResult,
                 fleets: dict | None = None, data=None):
        self.sweep, self.db, self.cache_dir, self.result = sweep, db, cache_dir, result
        self.fleets = fleets or {}              # target key -> device_agents.fleet.Fleet
        self.on_boards = 0                      # board jobs submitted and not yet written
        self.board_results: queue.SimpleQueue = queue.SimpleQueue()   # filled by the pools' threads
        self.versions = versions
        self.build_settings = sweep.build.as_dict()
        self.pending: dict = {}            # ObjectRef -> ("warm",) | ("build", key) | ("profile", job, target, meta)
        self.waiting: dict[str, list[_Job]] = {}    # spec key -> jobs sharing that build
        self.to_build: list[tuple[str, dict]] = []   # (spec key, spec) not yet submitted
        self.profiles_asked: dict[str, list] = {}    # spec key -> (variant, target key) its build task profiles
        self.n_building = 0
        # Profiles of cached builds wait here too: they hold no CPU, so with all of them submitted
        # at once Ray started a simulator worker (130 MB) for nearly each (10 in a cached 36-variant
        # sweep); as many in flight as builds keeps it to that many workers, reused.
        self.to_profile: list[tuple] = []            # (tflite ref, target, job, meta) not yet submitted
        self.profiling: set = set()                  # their refs in flight
        # Builds are submitted a few at a time: with every build queued at once, Ray would run
        # them all before any profile task, and no result would land until the very end. One
        # more than the CPUs, so that a freed CPU never waits for the driver.
        self.max_building = max(1, int(result.n_cpus or 1)) + 1
        self.bar: SweepProgress | None = None
        self.base_spec: dict | None = None
        self.data = data                        # datasets.DataSet, or None: a sweep without accuracy
        self.data_refs: tuple = ()              # (arrays, y_val) in the object store
        self.epochs = None                      # EpochCounter
        self.board_scores: dict = {}            # (variant, target key) -> score_task ref

    def prepare(self, progress: bool | str | None = None) -> None:
        """The base's config, and the data checked against its input and outputs (SweepError)."""
        self.base_spec = self._base_spec(progress)
        if self.data is None:
            return
        metric = check_data(self.sweep, self.data, self.base_spec)
        self.metric_higher_is_better = metric.higher_is_better
        self.data_sha256 = self.data.sha256
        self.data_refs = (ray.put(self.data.arrays()), ray.put(self.data.y_val))
        self.epochs = EpochCounter.remote()

    @property
    def counts(self) -> Counts:
        return self.result.counts

    def run(self, jobs: list[_Job], progress: bool | str | None) -> None:
        if self.base_spec is None:
            self.prepare(progress)
        base_spec = self.base_spec
        with SweepProgress(self.counts, progress, self.sweep.name) as bar:
            self.bar = bar
            try:
                for job in jobs:
                    self._submit(job, base_spec)
                    # the first builds go out while the rest are planned (0.1-0.4 s for 36 variants
                    # beside Ray's start-up): the workers are ready as soon as Ray is up
                    self._pump()
                if self.counts.epochs_total:
                    t = self.sweep.train
                    progress_mod.step(f"training {self.counts.epochs_total // (t['epochs'] * t['seeds'])} variants "
                                      f"({t['epochs']} epochs x {t['seeds']} seed(s) each; the bar counts epochs)",
                                      progress)
                self._pump()
                bar.update()
                beat = time.monotonic()
                while self.pending or self.on_boards:
                    if time.monotonic() - beat > HEARTBEAT_S:     # `results list`: still running
                        self.db.heartbeat(self.sweep.run_id)
                        beat = time.monotonic()
                    if self.pending:
                        ready, _ = ray.wait(list(self.pending), num_returns=1,
                                            timeout=_WAIT_S / 10 if self.on_boards else _WAIT_S)
                        for ref in ready:
                            self._handle(ref, self.pending.pop(ref))
                    # waits for a board only while one measures: the last result ends the sweep at once
                    self._board_results(wait_s=_WAIT_S if self.on_boards and not self.pending else 0.0)
                    self._pump()
                    self._poll_epochs()
                    bar.update()
            except KeyboardInterrupt:
                # No ray.cancel here: force-cancelling a task whose reply is already on its way
                # crashes the driver's core worker (ray 2.60: "Tried to complete task that was not
                # pending"). The job's tasks end with the driver (ray.shutdown, or the cluster
                # reaping a departed driver's workers), and nothing they return is written.
                raise

    def _poll_epochs(self) -> None:
        """Reads the epoch counter without waiting for it (one request in flight)."""
        if self.epochs is None:
            return
        ref = getattr(self, "_epochs_ref", None)
        if ref is None:
            self._epochs_ref = self.epochs.get.remote()
            return
        ready, _ = ray.wait([ref], timeout=0)
        if ready:
            self.counts.epochs_done = ray.get(ref)
            self._epochs_ref = None

    def _base_spec(self, progress: bool | str | None) -> dict:
        cached = Path(self.cache_dir) / "base" / f"{build.base_key(self.sweep.base)}.json"
        if cached.is_file():
            spec = json.loads(cached.read_text())
        else:
            progress_mod.step(f"building the base model ({build.describe_base(self.sweep.base)})", progress)
            try:
                spec = ray.get(base_config_task.remote(self.sweep.base, self.cache_dir))
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
                raise SweepError(f"base: {build.one_line(cause)}") from None
            except ray.exceptions.RayError as e:
                raise SweepError(f"base: {_build_failure(e, 'building the base model')}") from None
        if self.sweep.build.samples:       # a builder's input is only known now: before any variant
            problem = sweep_file.samples_problem(self.sweep.build.samples, sweep_file.keras_input_shape(spec["keras"]))
            if problem:
                raise SweepError(f"{self.sweep.path}: build.samples: {problem}")
        return spec

    def _submit(self, job: _Job, base_spec: dict) -> None:
        try:
            spec = apply_tips(base_spec, job.variant.levels)
        except TipNotApplicable as e:
            for t in job.targets:
                self._write(job, t, {}, error=f"{NOT_APPLICABLE}{e}")
            return
        key = build.variant_key(spec, self.build_settings)
        if self.data is not None:           # a trained variant: its content is the data and training too
            from orchestrator import training
            key = training.seed_key(spec, self.data_sha256, self.sweep.train, self.sweep.data.metric,
                                    self.sweep.train["seed"])
        job.spec_key = key
        if key in self.waiting:                 # the same model as another variant: build once
            self.waiting[key].append(job)
            return
        self.waiting[key] = [job]
        data = build.cached_tflite(self.cache_dir, key) if self.data is None else None
        if data is not None:
            self._built(key, {"ok": True, "key": key, "cached": True, "convert_s": 0.0, "build_s": 0.0},
                        ray.put(data))
            return
        self.to_build.append((key, spec))
        if self.data is not None:
            self.counts.epochs_total += self.sweep.train["epochs"] * self.sweep.train["seeds"]

    def _pump(self) -> None:
        while self.to_profile and len(self.profiling) < self.max_building:
            data_ref, t, job, meta = self.to_profile.pop(0)
            ref = profile_task.remote(data_ref, t.__dict__, job.variant.id)
            self.pending[ref] = ("profile", job, t, meta)
            self.profiling.add(ref)
        while self.to_build and self.n_building < self.max_building:
            key, spec = self.to_build.pop(0)
            if self.data is not None:
                d = self.sweep.data
                meta_ref, data_ref = train_task.remote(spec, self.data_refs[0], self.data_sha256, self.sweep.train,
                                                       d.metric, list(d.search_path), self.cache_dir, self.epochs)
            else:
                # The simulator's profiles (tens of milliseconds each) run in the build task, on
                # the CPU it holds: a profile task would need a simulator worker, whose start (about
                # 1.3 s of CPU, one or two per run) and the profiles themselves ran beside the builds
                # on CPUs Ray had not counted, taking a third of what 2 cores had left in a cold
                # 2-worker sweep (measured: 4.1 s of CPU in 35 s), and the bytes a round trip.
                asked = [(job, t) for job in self.waiting[key] for t in job.targets if t.kind != "board"]
                self.profiles_asked[key] = [(job.variant.id, t.key) for job, t in asked]
                meta_ref, data_ref = build_task.remote(spec, self.build_settings, self.cache_dir,
                                                       [(t.__dict__, job.variant.id) for job, t in asked])
            self.pending[meta_ref] = ("build", key, data_ref)
            self.n_building += 1

    def _built(self, key: str, meta: dict, data_ref) -> None:
        self.counts.built += 1
        # the build task's profiles, in the order _pump asked for them: (variant, target key) -> result
        profiled = dict(zip(self.profiles_asked.pop(key, ()), meta.pop("profiles", None) or ()))
        # a variant that joined the build after it was sent (another variant's model) takes the
        # profile of the same model on the same target, under its own name
        twins = {tkey: res for (_, tkey), res in profiled.items() if res["ok"]}
        if meta.get("cached"):
            self.result.n_cached += 1
        else:
            self.result.n_built += 1
            self.result.build_s += meta.get("build_s", 0.0)
            self.result.convert_s += meta.get("convert_s", 0.0)
            self.result.build_pids.add(meta.get("pid"))
            self.result.n_built_warm += bool(meta.get("worker_warm"))
        if "seeds" in meta:
            self.counts.trained += 1
        data = None
        for job in self.waiting[key]:
            for t in job.targets:
                if t.kind == "board":
                    if data is None:            # the build's bytes, from the object store
                        try:
                            data = ray.get(data_ref)
                        except ray.exceptions.RayError as e:
                            self._write(job, t, meta, error=f"build output lost: {_ray_reason(e)}")
                            continue
                    if self.data is not None:   # the board returns no outputs for x_val: the emulator scores
                        self.board_scores[(job.variant.id, t.key)] = self._score(data_ref, t, job, profile=False)
                        self._submit_to_board(job, t, meta, data["tflite"][0])
                        continue
                    self._submit_to_board(job, t, meta, data)
                    continue
                if self.data is not None:
                    self.pending[self._score(data_ref, t, job)] = ("profile", job, t, meta)
                    continue
                res = profiled.pop((job.variant.id, t.key), None)
                if res is None and t.key in twins:
                    res = _renamed(twins[t.key], job.variant.id)
                if res is not None:
                    self.result.n_profiled_by_build += 1
                    self._profiled(job, t, meta, res)
                    continue
                self.to_profile.append((data_ref, t, job, meta))

    def _score(self, models_ref, target: TargetSpec, job: _Job, profile: bool = True):
        d = self.sweep.data
        return score_task.remote(models_ref, target.__dict__, job.variant.id, self.data_refs[1], d.metric,
                                 list(d.search_path), profile)

    def _accuracy(self, job: _Job, target: TargetSpec, meta: dict, scores: list[dict] | None,
                  source: str) -> dict:
        """The accuracy columns of a trained variant on a target, over its seeds."""
        import numpy as np
        seeds = meta.get("seeds") or []
        out = {"metric": self.sweep.data.metric, "metric_higher_is_better": int(self.metric_higher_is_better),
               "train_s": meta.get("train_s"), "accuracy_source": source}
        if seeds:
            out["accuracy_float"] = float(np.mean([m["accuracy_float"] for m in seeds]))
            out["accuracy_tflite"] = float(np.mean([m["accuracy_tflite"] for m in seeds]))
        per_seed = []
        for i, m in enumerate(seeds):
            sc = scores[i] if scores and i < len(scores) else {}
            per_seed.append({"seed": m["seed"], "accuracy_float": m["accuracy_float"],
                             "accuracy_tflite": m["accuracy_tflite"], "accuracy": sc.get("accuracy"),
                             "agreement_tflite": sc.get("agreement_tflite")})
        out["accuracy_json"] = json.dumps(per_seed)
        errors = [sc.get("error") for sc in (scores or []) if sc.get("error")]
        accs = [p["accuracy"] for p in per_seed if p["accuracy"] is not None]
        if errors or not accs:
            out["accuracy_error"] = errors[0] if errors else "not scored"
            return out
        out["accuracy"] = float(np.mean(accs))
        out["agreement_tflite"] = float(np.mean([p["agreement_tflite"] for p in per_seed]))
        if len(accs) > 1:
            out["accuracy_std"] = float(np.std(accs, ddof=1))
        return out

    # --- boards ----------------------------------------------------------------------------------
    def board_job_id(self, job: _Job, target: TargetSpec) -> str:
        """Stable across reruns: the same measurement always has the same job id."""
        return f"{self.sweep.run_id}/{job.variant.id}/{target.key}"

    def _submit_to_board(self, job: _Job, target: TargetSpec, meta: dict, data: bytes) -> None:
        fleet = self.fleets[target.key]
        fut = fleet.pool.submit(self.board_job_id(job, target), data, job.variant.id, kind=fleet.kind,
                                warmup=target.warmup, repeats=target.repeats)
        self.on_boards += 1
        # written by the driver's loop, never from the pool's thread: one writer, and nothing is
        # written once the run is interrupted
        fut.add_done_callback(lambda f: self.board_results.put((job, target, meta, f.result())))

    def _board_results(self, wait_s: float) -> None:
        try:
            item = self.board_results.get(timeout=wait_s) if wait_s else self.board_results.get_nowait()
        except queue.Empty:
            return
        while True:
            self.on_boards -= 1
            job, target, meta, res = item
            accuracy = None
            if self.data is not None:
                ref = self.board_scores.pop((job.variant.id, target.key), None)
                try:
                    scores = ray.get(ref)["scores"] if ref is not None else None
                except ray.exceptions.RayError as e:
                    scores = [{"accuracy": None, "error": f"score worker failed: {_ray_reason(e)}"}]
                accuracy = self._accuracy(job, target, meta, scores,
                                          "emulator/mvp (the board returns no outputs for the samples)")
            if res.status == "measured":
                self.counts.boards += 1
                self._write(job, target, meta, record=res.record, accuracy=accuracy)
            else:
                self._write(job, target, meta, error=f"board: {res.reason}")
            try:
                item = self.board_results.get_nowait()
            except queue.Empty:
                return

    def _handle(self, ref, what: tuple) -> None:
        if what[0] == "warm":
            try:
                res = ray.get(ref)
            except ray.exceptions.RayError:
                return              # a lost warm-up costs nothing: the builds import TensorFlow themselves
            self.result.warmup_s += res["warmup_s"]
            self.result.warm_pids.add(res["pid"])
            return
        if what[0] == "build":
            _, key, data_ref = what
            self.n_building -= 1
            try:
                meta = ray.get(ref)
            except ray.exceptions.RayError as e:
                meta = {"ok": False, "error": _build_failure(e)}
            if meta["ok"]:
                self._built(key, meta, data_ref)
            else:
                for job in self.waiting[key]:
                    for t in job.targets:
                        self._write(job, t, meta, error=meta["error"])
            return
        _, job, target, meta = what
        self.profiling.discard(ref)
        try:
            res = ray.get(ref)
        except ray.exceptions.RayError as e:
            res = {"ok": False, "error": f"profile worker failed: {_ray_reason(e)}"}
        if res.get("tensorflow_loaded"):
            self.result.profile_workers_with_tf.add(res.get("pid"))
        self._profiled(job, target, meta, res)

    def _profiled(self, job: _Job, target: TargetSpec, meta: dict, res: dict) -> None:
        """Writes a simulator profile (or scored profile) of a job on a target."""
        self.result.profile_s += res.get("profile_s", 0.0)
        accuracy = None
        if self.data is not None:
            accuracy = self._accuracy(job, target, meta, res.get("scores"), f"emulator/{target.accelerator}")
        if not res["ok"]:
            self._write(job, target, meta, error=res["error"], profile_s=res.get("profile_s"), accuracy=accuracy)
            return
        s = res["record"].summary
        self._write(job, target, meta, record=res["record"], profile_s=res["profile_s"],
                    error=board.too_large(s.flash_bytes, s.ram_bytes), accuracy=accuracy)

    def _write(self, job: _Job, target: TargetSpec, meta: dict, error: str | None = None,
               record: ProfileRecord | None = None, profile_s: float | None = None,
               accuracy: dict | None = None) -> None:
        v = job.variant
        self.db.write(Measurement(
            self.sweep.run_id, v.id, target.key, target.kind, target.accelerator, target.timing, tip=v.tip,
            level=v.level, levels=v.levels, error=error, config_sha256=job.spec_key,
            convert_s=meta.get("convert_s"), profile_s=profile_s,
            build_cached=None if not meta else bool(meta.get("cached")), tool_versions=self.versions,
            accuracy=accuracy), record)
        if error and error.startswith(NOT_APPLICABLE):
            self.counts.not_applicable += 1
        elif error:
            self.counts.failed += 1
        else:
            self.counts.profiled += 1
        if self.bar is not None:
            self.bar.finished(v.id, target.key, record.summary if record else None, error, accuracy)
