"""The sweep file: a TOML description of a sweep, read and checked before any work starts.

    name = "kws-tips"
    base = { builtin = "ds_cnn", kwargs = { filters = 32 } }   # or builder = "pkg.mod:fn", or keras = "m.keras"
    mode = "one-at-a-time"                                     # or "grid"
    [tips]
    input_size = [0.75, 0.5]
    [[targets]]
    kind = "simulator"
    accelerator = "mvp"                                        # or "none"; timing = "board" (default) or "vendor-sim"
    [[targets]]
    kind = "board"                                             # the cluster's dev boards of one kind
    board = "brd2601b"                                         # the default; accelerator = "mvp"
    repeats = 3                                                # measured runs (the median is kept)
    warmup = 1
    virtual = 4          # with no board agents in the cluster: start 4 virtual boards for this sweep
    faults = ["0=hang", "1=garbage:0.8"]                       # virtual boards only ([I=]KIND[:VALUE])
    virtual_vendor = 2   # of those, the last 2 run the vendor's model-profiler firmware (needs Commander)
    [build]                                                    # optional
    seed = 0                                                   # seeded random representative data
    samples = "samples.npy"                                    # or the user's samples, (N, *input_shape)
    max_variants = 1000                                        # top level: the most variants a grid may make
    [data]                                  # optional: train and score every variant (see datasets)
    builtin = "digits"                      # or npz = "d.npz", or loader = "pkg.mod:fn"; metric = "top1"
    [train]
    epochs = 20                             # batch_size = 32, seed = 0, seeds = 1, learning_rate = 0.001
    [constraints]                           # see constraints; max_accuracy_drop_pts = 1.0 by default

Every mistake raises `SweepFileError` with one line naming the file and the key. Checking runs no
code of the user's: a builder's module is located on the import path, not imported
(`builder_ref`); it is imported when the sweep runs. A sweep file, like a Makefile, runs the code
it names: run only sweep files you trust.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import bases, builder_ref, constraints, tips
from simulator.errors import UserError
from simulator.hardware import ACCELERATORS, CLOCK_HZ
from simulator.profiler import DEFAULT_TIMING

MODES = ("one-at-a-time", "grid")
TARGET_KINDS = ("simulator", "board")
BOARD_DEFAULT = "brd2601b"
BOARD_TIMING = "measured"      # board rows' timing: the board's own counters (device_record.DEVICE_TIMING)
MAX_VIRTUAL_BOARDS = 16
_SIM_KEYS = ("kind", "accelerator", "timing", "clock_hz")
_BOARD_KEYS = ("kind", "board", "accelerator", "repeats", "warmup", "virtual", "faults", "virtual_vendor")
_TOP_KEYS = ("name", "base", "mode", "tips", "targets", "build", "max_variants", "data", "train",
             "constraints")
MAX_VARIANTS_DEFAULT = 1000
SEED_MAX = 2**32 - 1                 # keras.utils.set_random_seed takes 32 bits
_KWARG_INT_MAX = 1 << 16             # a builtin's widths, depths and classes
_INPUT_DIM_MAX = 4096
_DATA_KINDS = ("npz", "loader", "builtin")
TRAIN_DEFAULTS = {"epochs": 20, "batch_size": 32, "seed": 0, "seeds": 1, "learning_rate": 0.001}
_BUILDER_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*$")


class SweepFileError(UserError, ValueError):
    """A mistake in a sweep file; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class TargetSpec:
    kind: str = "simulator"
    accelerator: str = "mvp"
    timing: str = DEFAULT_TIMING
    clock_hz: int = CLOCK_HZ
    # board targets only
    board: str | None = None            # the kind of board, e.g. "brd2601b"
    repeats: int = 3
    warmup: int = 1
    virtual: int = 0                    # virtual boards to start when the cluster has none of the kind
    faults: tuple[str, ...] = ()        # fault specs of those virtual boards
    virtual_vendor: int = 0             # of those, how many run the vendor's model-profiler firmware

    @property
    def key(self) -> str:
        """How the result table names the target: stable across runs. Where the boards come from
        (the cluster's or virtual ones) is not part of it: the measurement is the same."""
        if self.kind == "board":
            return f"board/{self.board}/{self.accelerator}"
        return f"{self.kind}/{self.accelerator}/{self.timing}"


@dataclass
class BuildSettings:
    seed: int = 0
    n_samples: int = 8
    samples: str | None = None          # absolute path of a .npy file

    def as_dict(self) -> dict:
        return {"seed": self.seed, "n_samples": self.n_samples, "samples": self.samples}


@dataclass
class DataSpec:
    """Where the data comes from (one of npz, loader, builtin) and how to score it."""
    source: dict                        # {"npz": abs path} | {"loader": ref, "search_path": [...]} | {"builtin": name}
    metric: str = "top1"
    search_path: tuple[str, ...] = ()   # for a loader or metric function: the sweep file's folder

    def as_dict(self) -> dict:
        return dict(self.source, search_path=list(self.search_path))


@dataclass
class Sweep:
    name: str
    path: str
    sha256: str                          # of the file's bytes: the same file resumes the same run
    text: str
    base: dict
    mode: str
    tips: dict[str, list]
    targets: list[TargetSpec]
    build: BuildSettings = field(default_factory=BuildSettings)
    data: DataSpec | None = None
    train: dict = field(default_factory=lambda: dict(TRAIN_DEFAULTS))
    constraints: constraints.Constraints = field(default_factory=constraints.Constraints)

    @property
    def run_id(self) -> str:
        return f"{self.name}-{self.sha256[:10]}"


def load(path: str | Path) -> Sweep:
    path = Path(path)
    data, text, sha256 = read_toml(path, "sweep file", SweepFileError)
    return parse(data, path, text, sha256)


def read_toml(path: Path, what: str, error: type[Exception]) -> tuple[dict, str, str]:
    """A TOML file's (data, text, sha256 of its bytes), as sweep files and nightly suites are read;
    `error` with one line naming the file when it cannot be read or is not TOML."""
    try:
        data_bytes = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror})") from None
    try:
        text = data_bytes.decode("utf-8")
        return tomllib.loads(text), text, hashlib.sha256(data_bytes).hexdigest()
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise error(f"{path}: not valid TOML: {e}") from None


def parse(data: dict, path: Path, text: str = "", sha256: str = "") -> Sweep:
    def fail(key: str, problem: str):
        raise SweepFileError(f"{path}: {key}: {problem}")

    for key in data:
        if key not in _TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        fail("name", f"{name!r} is not a name (letters, digits, '.', '_', '-')")
    if "base" not in data:
        fail("base", "missing: say which model to start from, e.g. base = { builtin = \"ds_cnn\" }")
    base = _base(data["base"], path.parent, fail)
    mode = data.get("mode", "one-at-a-time")
    if mode not in MODES:
        fail("mode", f"{mode!r} is not a mode (known: {', '.join(MODES)})")
    tip_levels = _tips(data.get("tips"), fail)
    max_variants = data.get("max_variants", MAX_VARIANTS_DEFAULT)
    if isinstance(max_variants, bool) or not isinstance(max_variants, int) or max_variants < 1:
        fail("max_variants", f"{max_variants!r} is not a whole number >= 1")
    n_variants = count_variants(tip_levels, mode)
    if n_variants > max_variants:
        fail("tips", f"{mode} mode makes {n_variants:,} variants, more than max_variants = {max_variants:,} "
                     "(fewer levels, one-at-a-time mode, or raise max_variants)")
    targets = parse_targets(data.get("targets"), fail)
    build = _build(data.get("build", {}), path.parent, fail)
    if build.samples:
        problem = samples_problem(build.samples, base_input_shape(base))
        if problem:
            fail("build.samples", problem)
    data_spec = _data(data.get("data"), path.parent, fail)
    if data_spec is None:
        for k in ("train",):
            if k in data:
                fail(k, "needs a [data] table: there is nothing to train on")
    train = _train(data.get("train", {}), fail)
    bounds = constraints.parse(data.get("constraints"), fail)
    return Sweep(name=name, path=str(path), sha256=sha256, text=text, base=base, mode=mode,
                 tips=tip_levels, targets=targets, build=build, data=data_spec, train=train,
                 constraints=bounds)


def _data(table, folder: Path, fail) -> DataSpec | None:
    if table is None:
        return None
    from orchestrator.datasets import BUILTIN_DATA
    from orchestrator.metrics import BUILTIN_METRICS
    if not isinstance(table, dict):
        fail("data", "must be a table, e.g. [data] builtin = \"digits\"")
    for k in table:
        if k not in (*_DATA_KINDS, "metric"):
            fail(f"data.{k}", f"unknown key (known: {', '.join(_DATA_KINDS)}, metric)")
    kinds = [k for k in _DATA_KINDS if k in table]
    if len(kinds) != 1:
        fail("data", "needs exactly one of npz, loader or builtin")
    kind, value = kinds[0], table[kinds[0]]
    if not isinstance(value, str):
        fail(f"data.{kind}", "must be a string")
    search_path = (str(folder.resolve()),)
    if kind == "npz":
        p = (folder / value).resolve()
        if not p.is_file():
            fail("data.npz", f"{p} does not exist")
        source = {"npz": str(p)}
    elif kind == "builtin":
        if value not in BUILTIN_DATA:
            fail("data.builtin", f"unknown data set {value!r} (known: {', '.join(BUILTIN_DATA)})")
        source = {"builtin": value}
    else:
        if not _BUILDER_RE.match(value):
            fail("data.loader", f"{value!r} is not of the form package.module:function")
        source = {"loader": value}
    metric = table.get("metric", "top1")
    if metric == "top-1":
        metric = "top1"
    if not isinstance(metric, str) or (metric not in BUILTIN_METRICS and not _BUILDER_RE.match(metric)):
        fail("data.metric", f"{metric!r} is not top1, mse or package.module:function")
    return DataSpec(source, metric, search_path)


def _train(table, fail) -> dict:
    if not isinstance(table, dict):
        fail("train", "must be a table")
    out = dict(TRAIN_DEFAULTS)
    for k, v in table.items():
        if k not in TRAIN_DEFAULTS:
            fail(f"train.{k}", f"unknown key (known: {', '.join(TRAIN_DEFAULTS)})")
        if k == "learning_rate":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 10:
                fail(f"train.{k}", f"{v!r} is not a number in (0, 10)")
            v = float(v)
        else:
            lo, hi = {"epochs": (1, 10_000), "batch_size": (1, 1 << 16), "seed": (0, 2**31 - 1),
                      "seeds": (1, 100)}[k]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                fail(f"train.{k}", f"{v!r} is not a whole number from {lo} to {hi}")
        out[k] = v
    return out


def _base(base, folder: Path, fail) -> dict:
    if not isinstance(base, dict):
        fail("base", "must be a table, e.g. base = { builtin = \"ds_cnn\" }")
    kinds = [k for k in ("builtin", "builder", "keras") if k in base]
    for k in base:
        if k not in ("builtin", "builder", "keras", "kwargs"):
            fail(f"base.{k}", "unknown key (known: builtin, builder, keras, kwargs)")
    if len(kinds) != 1:
        fail("base", "needs exactly one of builtin, builder or keras")
    kind = kinds[0]
    value = base[kind]
    kwargs = base.get("kwargs", {})
    if not isinstance(kwargs, dict):
        fail("base.kwargs", "must be a table of keyword parameters")
    if not isinstance(value, str):
        fail(f"base.{kind}", "must be a string")
    out = {kind: value, "kwargs": kwargs}
    if kind == "builtin":
        if value not in bases.BUILTINS:
            fail("base.builtin", f"unknown base {value!r} (known: {', '.join(bases.BUILTINS)})")
        _check_kwargs(bases.BUILTINS[value], value, kwargs, fail)
    elif kind == "builder":
        if not _BUILDER_RE.match(value):
            fail("base.builder", f"{value!r} is not of the form package.module:function")
        try:
            builder_ref.check(value, folder.resolve())
        except builder_ref.BuilderRefError as e:
            fail("base.builder", str(e))
        out["search_path"] = [str(folder.resolve())]
    else:
        p = (folder / value).resolve()
        if p.suffix != ".keras":
            fail("base.keras", f"{value!r} is not a .keras file")
        if not p.is_file():
            fail("base.keras", f"{p} does not exist")
        if kwargs:
            fail("base.kwargs", "a .keras file takes no keyword parameters")
        out["keras"] = str(p)
        out["keras_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _check_kwargs(fn, name: str, kwargs: dict, fail) -> None:
    if bases.accepts_any_kwargs(fn):
        return
    known = bases.builder_parameters(fn)
    for k in kwargs:
        if k not in known:
            fail(f"base.kwargs.{k}", f"not a parameter of {name} (known: {', '.join(known)})")
    import inspect
    defaults = {p.name: p.default for p in inspect.signature(fn).parameters.values()}
    for k, v in kwargs.items():
        problem = _kwarg_problem(defaults[k], v)
        if problem:
            fail(f"base.kwargs.{k}", f"{v!r}: {problem}")
    shape = _builtin_input_shape(fn, kwargs)
    if shape is not None:
        from simulator.model_checks import activation_bytes_limit
        if math.prod(shape) > activation_bytes_limit():
            fail("base.kwargs", f"an input of {list(shape)} ({math.prod(shape):,} values) cannot fit the board")


def _kwarg_problem(default, v) -> str | None:
    """A builtin base's keyword value, checked against the kind of its default."""
    if isinstance(default, bool):
        return None if isinstance(v, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _KWARG_INT_MAX:
            return f"must be a whole number from 1 to {_KWARG_INT_MAX}"
    elif isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 < v <= 16):
            return "must be a number above 0 and at most 16"
    elif isinstance(default, tuple):
        if not isinstance(v, list) or len(v) != len(default) or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= _INPUT_DIM_MAX for d in v):
            return f"must be {len(default)} whole numbers from 1 to {_INPUT_DIM_MAX}, like {list(default)}"
    return None


def _builtin_input_shape(fn, kwargs: dict) -> tuple | None:
    import inspect
    params = {p.name: p.default for p in inspect.signature(fn).parameters.values()}
    if "input_shape" in params:
        return tuple(kwargs.get("input_shape", params["input_shape"]))
    if "input_dim" in params:
        return (kwargs.get("input_dim", params["input_dim"]),)
    return None


def count_variants(tip_levels: dict[str, list], mode: str) -> int:
    """How many variants (the base included) `variants.expand` makes, without making them."""
    if mode == "grid":
        return math.prod(len(v) + 1 for v in tip_levels.values())
    return 1 + sum(len(v) for v in tip_levels.values())


def keras_input_shape(config: dict) -> list | None:
    """The input shape (batch dimension dropped) of a serialized Keras model with one input;
    None when it has several or says none."""
    layers = (config.get("config") or {}).get("layers") or []
    shapes = [(L.get("config") or {}).get("batch_shape") or (L.get("config") or {}).get("batch_input_shape")
              for L in layers if isinstance(L, dict) and L.get("class_name") == "InputLayer"]
    if len(shapes) != 1 or not isinstance(shapes[0], list):
        return None
    return list(shapes[0][1:])


def base_input_shape(base: dict) -> list | None:
    """The base model's input shape when it is known without running user code (builtin bases,
    .keras files); None for builders (their model exists only once the builder runs)."""
    if "builtin" in base:
        shape = _builtin_input_shape(bases.BUILTINS[base["builtin"]], base.get("kwargs", {}))
        return list(shape) if shape is not None else None
    if "keras" in base:
        try:
            with zipfile.ZipFile(base["keras"]) as z:
                return keras_input_shape(json.loads(z.read("config.json")))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
    return None


def samples_problem(samples: str, input_shape: list | None) -> str | None:
    """Why the .npy samples cannot calibrate a model with this input, or None. Reads the file's
    header only (no pickles: a .npy file must not run code)."""
    import numpy as np
    try:
        arr = np.load(samples, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        return f"{samples}: not a readable .npy array ({' '.join(str(e).split())[:120]})"
    if arr.dtype.kind not in "biuf":
        return f"{samples}: holds {arr.dtype} values, not numbers"
    if arr.ndim < 2 or arr.shape[0] < 1:
        return f"{samples}: shape {list(arr.shape)} is not (N, *input_shape) with N >= 1"
    if input_shape is None or any(not isinstance(d, int) for d in input_shape):
        return None
    got = list(arr.shape[1:])
    # 4-D image samples are resized to a tip's input size; their channels must match
    resizable = arr.ndim == 4 and len(input_shape) == 3 and got[-1] == input_shape[-1]
    if got != list(input_shape) and not resizable:
        return f"{samples}: samples of shape {got} do not fit the base model's input {list(input_shape)}"
    return None


def _tips(table, fail) -> dict[str, list]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        fail("tips", "must be a table of tip = [levels]")
    out = {}
    for name, levels in table.items():
        if name not in tips.TIPS:
            fail(f"tips.{name}", f"unknown tip (known: {', '.join(tips.TIPS)})")
        if not isinstance(levels, list):
            levels = [levels]
        if not levels:
            fail(f"tips.{name}", "needs at least one level")
        seen = []
        for i, level in enumerate(levels):
            problem = tips.check_level(name, level)
            if problem:
                fail(f"tips.{name}[{i}]", f"impossible level: {problem} ({tips.TIPS[name].level_doc})")
            if level in seen:
                fail(f"tips.{name}[{i}]", f"level {level!r} is given twice")
            seen.append(level)
        out[name] = levels
    return out


def parse_targets(table, fail, key: str = "targets", kinds: tuple[str, ...] = TARGET_KINDS) -> list[TargetSpec]:
    """The [[targets]] tables (None: the default simulator target), each checked; `fail(key,
    problem)` raises the caller's error. Also what a nightly suite's models entries use, with
    their own `key` and only simulator targets."""
    if table is None:
        return [TargetSpec()]
    if not isinstance(table, list) or not table:
        fail(key, "must be one or more [[targets]] tables")
    out = []
    for i, t in enumerate(table):
        where = f"{key}[{i}]"
        if not isinstance(t, dict):
            fail(where, "must be a table")
        kind = t.get("kind", "simulator")
        if kind not in kinds:
            fail(f"{where}.kind", f"unknown target {kind!r} (known: {', '.join(kinds)})")
        if kind == "board":
            spec = _board_target(t, where, fail)
            if any(o.key == spec.key for o in out):
                fail(where, f"the same target ({spec.key}) is listed twice")
            out.append(spec)
            continue
        for k in t:
            if k not in _SIM_KEYS:
                fail(f"{where}.{k}", f"unknown key for a simulator target (known: {', '.join(_SIM_KEYS)})")
        acc = t.get("accelerator", "mvp")
        if acc not in ACCELERATORS:
            fail(f"{where}.accelerator", f"unknown accelerator {acc!r} (known: {', '.join(ACCELERATORS)})")
        timing = t.get("timing", DEFAULT_TIMING)
        problem = _timing_problem(timing)
        if problem:
            fail(f"{where}.timing", problem)
        clock = t.get("clock_hz", CLOCK_HZ)
        if isinstance(clock, bool) or not isinstance(clock, int) or clock <= 0:
            fail(f"{where}.clock_hz", f"{clock!r} is not a positive whole number of Hz")
        spec = TargetSpec(kind, acc, timing, clock)
        if spec in out:
            fail(where, "the same target is listed twice")
        out.append(spec)
    return out


def _board_target(t: dict, where: str, fail) -> TargetSpec:
    from device_agents.board_kinds import BOARD_KINDS
    from device_agents.faults import Faults
    for k in t:
        if k not in _BOARD_KEYS:
            fail(f"{where}.{k}", f"unknown key for a board target (known: {', '.join(_BOARD_KEYS)})")
    board = t.get("board", BOARD_DEFAULT)
    if not isinstance(board, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", board):
        fail(f"{where}.board", f"{board!r} is not a board kind, e.g. \"{BOARD_DEFAULT}\"")
    acc = t.get("accelerator", "mvp")
    if acc != "mvp":
        fail(f"{where}.accelerator", f"{acc!r}: boards measure with the MVP (accelerator = \"mvp\"); "
                                     "use a simulator target for accelerator = \"none\"")
    from device_agents.protocol import Profile
    repeats, warmup = t.get("repeats", 3), t.get("warmup", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= Profile.MAX_REPEATS:
        fail(f"{where}.repeats", f"{repeats!r} is not a whole number from 1 to {Profile.MAX_REPEATS}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= 1000:
        fail(f"{where}.warmup", f"{warmup!r} is not a whole number from 0 to 1000")
    virtual = t.get("virtual", 0)
    if isinstance(virtual, bool) or not isinstance(virtual, int) or not 0 <= virtual <= MAX_VIRTUAL_BOARDS:
        fail(f"{where}.virtual", f"{virtual!r} is not a whole number of virtual boards from 0 to "
                                 f"{MAX_VIRTUAL_BOARDS}")
    if virtual and board not in BOARD_KINDS:
        fail(f"{where}.board", f"no virtual board of kind {board!r} (known: {', '.join(BOARD_KINDS)})")
    faults = t.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        fail(f"{where}.faults", "must be a list of fault specs like \"1=garbage:0.5\"")
    if faults and not virtual:
        fail(f"{where}.faults", "faults apply to virtual boards only: set virtual = N too")
    vendor = t.get("virtual_vendor", 0)
    if isinstance(vendor, bool) or not isinstance(vendor, int) or not 0 <= vendor <= virtual:
        fail(f"{where}.virtual_vendor", f"{vendor!r} is not a whole number of the {virtual} virtual boards")
    try:
        Faults.parse_fleet(faults, max(virtual, 1), vendor)
    except ValueError as e:
        fail(f"{where}.faults", str(e))
    return TargetSpec("board", acc, BOARD_TIMING, CLOCK_HZ, board=board, repeats=repeats, warmup=warmup,
                      virtual=virtual, faults=tuple(faults), virtual_vendor=vendor)


def _timing_problem(name) -> str | None:
    if not isinstance(name, str):
        return f"{name!r} is not a timing model name"
    from orchestrator.timing_models import load as load_timing_model
    try:
        load_timing_model(name)
    except (FileNotFoundError, ValueError, KeyError, OSError) as e:
        return f"unknown timing model {name!r} ({e})"
    return None


def _build(table, folder: Path, fail) -> BuildSettings:
    if not isinstance(table, dict):
        fail("build", "must be a table")
    for k in table:
        if k not in ("seed", "n_samples", "samples"):
            fail(f"build.{k}", "unknown key (known: seed, n_samples, samples)")
    seed = table.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        fail("build.seed", f"{seed!r} is not a whole number from 0 to {SEED_MAX} (2^32 - 1)")
    n = table.get("n_samples", 8)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        fail("build.n_samples", f"{n!r} is not a whole number from 1 to 1000")
    samples = table.get("samples")
    if samples is not None:
        p = (folder / str(samples)).resolve()
        if p.suffix != ".npy" or not p.is_file():
            fail("build.samples", f"{p} is not an existing .npy file")
        samples = str(p)
    return BuildSettings(seed=seed, n_samples=n, samples=samples)
