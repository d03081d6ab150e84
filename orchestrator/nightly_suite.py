"""The nightly suite file: what a nightly measures, read and checked before anything runs.

    name = "nightly"
    [[sweeps]]                                  # sweep files, run as they are (fresh runs each night)
    file = "kws-small.toml"
    [[models]]                                  # .tflite files profiled on the simulator targets,
    name = "zoo"                                # and measured on boards with boards = true
    files = ["../tests/data/zoo/keyword_spotting.tflite"]
    targets = [{ accelerator = "mvp", timing = "board" }]
    boards = true
    [boards]
    kind = "brd2601b"                           # any kind if left out
    repeats = 3                                 # measurements per model: the noise estimate
    virtual = 2                                 # virtual boards to use when the cluster has none
    [thresholds]                                # measured metrics: max(min_change x baseline, k_sigma x noise)
    "device.latency_s" = { min_change = 0.01, k_sigma = 5 }
    [trend]
    nights = 14

Paths are relative to the suite file. A sweep entry is read by `orchestrator.sweep_file` and a
models entry's targets by its target parser, so a suite accepts exactly the targets a sweep file
does (simulator targets only: boards come from `boards = true`). Every mistake raises
`NightlyError` with one line naming the file and the key.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import baseline as bl
from orchestrator import sweep_file
from orchestrator.sweep_file import Sweep, SweepFileError, TargetSpec
from simulator.errors import UserError

TREND_NIGHTS = 14
_TOP_KEYS = ("name", "sweeps", "models", "boards", "thresholds", "trend")


class NightlyError(UserError):
    """The nightly cannot run or judge; one line for the user, exit status 2."""


@dataclass
class ModelsEntry:
    name: str
    files: list[Path]
    targets: list[TargetSpec]
    boards: bool = False


@dataclass
class SweepEntry:
    name: str
    path: Path
    sweep: Sweep                                # as checked when the suite was read


@dataclass
class BoardsSpec:
    kind: str | None = None
    repeats: int = 3
    virtual: int = 0


@dataclass
class Suite:
    name: str
    path: Path
    sha256: str
    text: str
    sweeps: list[SweepEntry] = field(default_factory=list)
    models: list[ModelsEntry] = field(default_factory=list)
    boards: BoardsSpec = field(default_factory=BoardsSpec)
    thresholds: dict = field(default_factory=dict)
    trend_nights: int = TREND_NIGHTS

    @property
    def entries(self) -> list[str]:
        return [e.name for e in self.sweeps] + [e.name for e in self.models]


def load_suite(path: str | Path) -> Suite:
    """Reads and checks a suite file; raises NightlyError naming the file and the key."""
    path = Path(path)
    data, text, sha256 = sweep_file.read_toml(path, "suite file", NightlyError)

    def fail(key: str, problem: str):
        raise NightlyError(f"{path}: {key}: {problem}")

    for key in data:
        if key not in _TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_.-" for c in name):
        fail("name", f"{name!r} is not a name (letters, digits, '.', '_', '-')")
    suite = Suite(name, path, sha256, text)
    folder = path.parent
    seen: set[str] = set()

    def entry_name(where: str, value, default: str) -> str:
        n = value if value is not None else default
        if not isinstance(n, str) or not n or not all(c.isalnum() or c in "_-" for c in n):
            fail(f"{where}.name", f"{n!r} is not a name (letters, digits, '_', '-')")
        if n in seen:
            fail(f"{where}.name", f"{n!r} is used twice")
        seen.add(n)
        return n

    for i, s in enumerate(_tables(data.get("sweeps", []), "sweeps", fail)):
        where = f"sweeps[{i}]"
        for k in s:
            if k not in ("file", "name"):
                fail(f"{where}.{k}", "unknown key (known: file, name)")
        if not isinstance(s.get("file"), str):
            fail(f"{where}.file", "missing: the sweep file to run")
        sweep_path = (folder / s["file"]).resolve()
        try:
            sweep = sweep_file.load(sweep_path)        # checked before any work
        except SweepFileError as e:
            raise NightlyError(f"{path}: {where}.file: {e}") from None
        suite.sweeps.append(SweepEntry(entry_name(where, s.get("name"), sweep.name.replace(".", "-")),
                                       sweep_path, sweep))

    for i, m in enumerate(_tables(data.get("models", []), "models", fail)):
        where = f"models[{i}]"
        for k in m:
            if k not in ("name", "files", "targets", "boards"):
                fail(f"{where}.{k}", "unknown key (known: name, files, targets, boards)")
        patterns = m.get("files")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            fail(f"{where}.files", "must be a list of .tflite files or glob patterns")
        files: list[Path] = []
        for pat in patterns:
            hits = sorted(Path(p) for p in glob.glob(str(folder / pat)))
            if not hits:
                fail(f"{where}.files", f"{pat!r} matches no file (relative to {folder})")
            files += [h.resolve() for h in hits if h.is_file()]
        stems = [f.stem for f in files]
        if len(set(stems)) != len(stems):
            fail(f"{where}.files", "two files have the same name; models are known by name")
        targets = m.get("targets")
        targets = sweep_file.parse_targets([targets] if isinstance(targets, dict) else targets, fail,
                                           f"{where}.targets", kinds=("simulator",))
        boards = m.get("boards", False)
        if not isinstance(boards, bool):
            fail(f"{where}.boards", "must be true or false")
        suite.models.append(ModelsEntry(entry_name(where, m.get("name"), f"models{i}"), files, targets, boards))

    b = data.get("boards", {})
    if not isinstance(b, dict):
        fail("boards", "must be a table")
    for k in b:
        if k not in ("kind", "repeats", "virtual"):
            fail(f"boards.{k}", "unknown key (known: kind, repeats, virtual)")
    repeats, virtual = b.get("repeats", 3), b.get("virtual", 0)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        fail("boards.repeats", f"{repeats!r} is not a whole number from 1 to 100")
    if isinstance(virtual, bool) or not isinstance(virtual, int) or not 0 <= virtual <= 16:
        fail("boards.virtual", f"{virtual!r} is not a whole number from 0 to 16")
    kind = b.get("kind")
    if kind is not None and not isinstance(kind, str):
        fail("boards.kind", "must be a board kind, e.g. \"brd2601b\"")
    suite.boards = BoardsSpec(kind, repeats, virtual)

    th = data.get("thresholds", {})
    if not isinstance(th, dict):
        fail("thresholds", "must be a table")
    for key, value in th.items():
        kind_name = key.split(".", 1)[0]
        if kind_name not in bl.DEFAULT_THRESHOLDS:
            fail(f"thresholds.{key}", "must be device.METRIC or simulator.METRIC (or device / simulator)")
        if not isinstance(value, dict) or any(k not in ("min_change", "k_sigma") for k in value):
            fail(f"thresholds.{key}", "must be a table of min_change (a fraction) and k_sigma")
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                fail(f"thresholds.{key}.{k}", f"{v!r} is not a number >= 0")
    suite.thresholds = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in th.items()}
    trend = data.get("trend", {})
    nights = trend.get("nights", TREND_NIGHTS) if isinstance(trend, dict) else None
    if isinstance(nights, bool) or not isinstance(nights, int) or nights < 2:
        fail("trend.nights", f"{nights!r} is not a whole number >= 2")
    suite.trend_nights = nights
    if not suite.sweeps and not any(m.files for m in suite.models):
        raise NightlyError(f"{path}: empty suite: no [[sweeps]] and no [[models]] files to measure")
    return suite


def _tables(value, key: str, fail) -> list[dict]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        fail(key, "must be one or more tables")
    return value
