"""Named timing models: what a layer costs in accelerator cycles, CPU cycles and time, as data.

A timing model is a JSON file with three parts, so a model calibrated from boards is a new file,
not new code:

- Accelerator: each MVP program is priced linearly in counts that `mvp_program.execution_counts`
  gives without running it: executed instructions, read-after-write hazards between consecutive
  instructions, launches, executed loads and stores per element type, and switches between the
  arrays that consecutive instructions load from. `accelerator_features` / `accelerator_params`
  expose that linear form (same keys), which is what calibration fits.
- CPU: `cpu_model`'s linear per-kernel coefficients, inline or by the name of a
  simulator/hardware/ JSON file.
- Latency: layer time = time_scale * (max(acc, cpu) + overlap[kernel] * min(acc, cpu)) / clock.
  overlap 0 is perfect overlap (the CPU builds the next program while the MVP runs one, the
  vendor's accounting); 1 is none (the CPU waits for each program).

Models are found by name in simulator/timing_models/ (built in) or, when the caller names the folder
it keeps results in, in RESULTS/timing_models/ (fitted by users with
`calibration.save_timing_model`), or by path to a JSON file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from simulator import cpu_model
from simulator.errors import ModelError
from simulator.mvp_program import BASETYPES, Program, execution_counts

MODELS_DIR = Path(__file__).parent / "timing_models"
USER_MODELS_SUBDIR = "timing_models"
# The project's prediction of what a board measures; "vendor-sim" reproduces the vendor's simulator.
DEFAULT_TIMING = "board"
SCHEMA_VERSION = 2
# element types a load or store can move: basetype, "c" suffix for a packed (complex) pair
ELEMENT_TYPES = tuple(f"{b}{c}" for b in BASETYPES for c in ("", "c"))
POOLED_MVP_KEY = cpu_model.POOLED_MVP_KEY  # overlap for an MVP kernel the data never showed


def _element_type(array) -> str:
    return f"{array.basetype}{'c' if array.complex else ''}"


@dataclass(frozen=True)
class TimingModel:
    name: str
    cycles_per_instruction: float = 1.0
    raw_stall_cycles: float = 1.0
    raw_stall_operands: tuple[str, ...] = ("x", "y")
    load_hides_raw_stall: bool = False
    program_overhead_cycles: float = 0.0
    # stall cycles per executed load / store of an element type ("binary16c", "int8", ...)
    load_stall_cycles: dict = field(default_factory=dict)
    store_stall_cycles: dict = field(default_factory=dict)
    # stall cycles when an instruction loads from other arrays than the one executed before it
    load_switch_stall_cycles: float = 0.0
    count_program_kinds: dict = field(default_factory=dict)  # kind prefix -> counted?
    cpu: dict = field(default_factory=cpu_model.load_params)  # cpu_model parameters
    overlap: dict = field(default_factory=dict)               # kernel key -> k in [0, 1]
    default_overlap: float = 0.0
    time_scale: float = 1.0
    description: str = ""
    meta: dict = field(default_factory=dict)  # provenance of fitted models: created, fitted_from, cv

    # ---------------------------------------------------------------- accelerator

    def program_features(self, program: Program) -> dict[str, float]:
        """The counts one launch of `program` is priced by (keys of `accelerator_params`)."""
        return dict(_program_features(program, self.raw_stall_operands, self.load_hides_raw_stall))

    def accelerator_params(self) -> dict[str, float]:
        """Cycles per unit of each feature: accelerator cycles = sum(param * feature)."""
        p = {"instructions": self.cycles_per_instruction, "raw_stalls": self.raw_stall_cycles,
             "programs": self.program_overhead_cycles, "load_switches": self.load_switch_stall_cycles}
        for t in ELEMENT_TYPES:
            p[f"loads/{t}"] = float(self.load_stall_cycles.get(t, 0.0))
            p[f"stores/{t}"] = float(self.store_stall_cycles.get(t, 0.0))
        return p

    def with_accelerator_params(self, params: dict[str, float]) -> "TimingModel":
        p = {**self.accelerator_params(), **params}
        return replace(
            self, cycles_per_instruction=p["instructions"], raw_stall_cycles=p["raw_stalls"],
            program_overhead_cycles=p["programs"], load_switch_stall_cycles=p["load_switches"],
            load_stall_cycles={t: p[f"loads/{t}"] for t in ELEMENT_TYPES if p[f"loads/{t}"]},
            store_stall_cycles={t: p[f"stores/{t}"] for t in ELEMENT_TYPES if p[f"stores/{t}"]})

    def program_cycles(self, program: Program) -> float:
        params = self.accelerator_params()
        return sum(params[k] * v for k, v in _program_features(
            program, self.raw_stall_operands, self.load_hides_raw_stall))

    def counts_kind(self, kind: str) -> bool:
        prefix = kind.split("/", 1)[0]
        return bool(self.count_program_kinds.get(prefix, True))

    def accelerator_features(self, plan) -> dict[str, float]:
        """The layer's feature counts, summed over every program it launches that is counted."""
        total = dict.fromkeys(self.accelerator_params(), 0.0)
        for program, repeat in plan.programs:
            if self.counts_kind(program.kind):
                for k, v in _program_features(program, self.raw_stall_operands, self.load_hides_raw_stall):
                    total[k] += v * repeat
        return total

    def accelerator_cycles(self, plan) -> int:
        """MVP cycles of one layer: the sum over the programs it launches (0 if it runs on the CPU)."""
        total = 0.0
        for program, repeat in plan.programs:
            if self.counts_kind(program.kind):
                total += self.program_cycles(program) * repeat
        return int(round(total))

    # ---------------------------------------------------------------- CPU and latency

    def cpu_cycles(self, graph, op, plan) -> int:
        return cpu_model.cpu_cycles(graph, op, plan, self.cpu)

    def overlap_for(self, kernel_key: str) -> float:
        """k for a kernel: its own, else its opcode's MVP kernel's, else the pooled MVP one."""
        opcode = kernel_key.split("/", 1)[0]
        for key in (kernel_key, f"{opcode}/mvp", POOLED_MVP_KEY):
            if key in self.overlap:
                return float(self.overlap[key])
        return float(self.default_overlap)

    def layer_latency_s(self, acc_cycles: float, cpu_cycles: float, kernel_key: str, clock_hz: float) -> float:
        """Time of one layer on the board: the longer of the MVP and CPU shares, plus the part of
        the shorter one that does not overlap with it."""
        lo, hi = sorted((float(acc_cycles), float(cpu_cycles)))
        k = self.overlap_for(kernel_key) if lo > 0 else 0.0
        return self.time_scale * (hi + k * lo) / clock_hz

    # ---------------------------------------------------------------- data form

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION, "name": self.name, "description": self.description,
            **self.meta,
            "cycles_per_instruction": self.cycles_per_instruction, "raw_stall_cycles": self.raw_stall_cycles,
            "raw_stall_operands": list(self.raw_stall_operands),
            "load_hides_raw_stall": self.load_hides_raw_stall,
            "program_overhead_cycles": self.program_overhead_cycles,
            "load_stall_cycles": dict(self.load_stall_cycles), "store_stall_cycles": dict(self.store_stall_cycles),
            "load_switch_stall_cycles": self.load_switch_stall_cycles,
            "count_program_kinds": dict(self.count_program_kinds),
            "cpu": self.cpu,
            "latency": {"overlap": dict(self.overlap), "default_overlap": self.default_overlap,
                        "time_scale": self.time_scale},
        }


META_KEYS = ("created", "fitted_from", "cv", "command", "base")


@lru_cache(maxsize=4096)
def _program_features(program: Program, raw_operands: tuple, load_hides: bool) -> tuple:
    counts = execution_counts(program)
    instrs = program.instructions

    def stalls(prev, nxt) -> bool:
        # reading the previous instruction's result as X or Y waits for it (A is forwarded)
        if prev.z is None or (load_hides and nxt.loads):
            return False
        return any(getattr(nxt, operand) == prev.z for operand in raw_operands)

    f = {"instructions": float(sum(counts.per_instruction)), "raw_stalls": 0.0, "programs": 1.0,
         "load_switches": 0.0}
    for (i, j), n in counts.transitions.items():
        if stalls(instrs[i], instrs[j]):
            f["raw_stalls"] += n
        src_i = {program.arrays[ld.array].buffer for ld in instrs[i].loads}
        src_j = {program.arrays[ld.array].buffer for ld in instrs[j].loads}
        if src_i and src_j and src_i != src_j:
            f["load_switches"] += n
    for ins, n in zip(instrs, counts.per_instruction):
        for ld in ins.loads:
            key = f"loads/{_element_type(program.arrays[ld.array])}"
            f[key] = f.get(key, 0.0) + n
        if ins.store is not None:
            key = f"stores/{_element_type(program.arrays[ins.store.array])}"
            f[key] = f.get(key, 0.0) + n
    return tuple(sorted(f.items()))


def from_dict(data: dict, default_name: str = "timing", where: str | None = None) -> TimingModel:
    """A timing model from its JSON form. Raises ModelError naming what is malformed."""
    try:
        cpu = data.get("cpu", cpu_model.DEFAULT_PARAMS_NAME)
        if isinstance(cpu, str):
            cpu = cpu_model.load_params_named(cpu)
        elif not (isinstance(cpu, dict) and "kernels" in cpu and "default" in cpu):
            raise ValueError("'cpu' must name a simulator/hardware JSON or hold per_layer_cycles, default, kernels")
        lat = data.get("latency", {})
        return TimingModel(
            name=str(data.get("name", default_name)),
            cycles_per_instruction=float(data.get("cycles_per_instruction", 1)),
            raw_stall_cycles=float(data.get("raw_stall_cycles", 1)),
            raw_stall_operands=tuple(data.get("raw_stall_operands", ("x", "y"))),
            load_hides_raw_stall=bool(data.get("load_hides_raw_stall", False)),
            program_overhead_cycles=float(data.get("program_overhead_cycles", 0)),
            load_stall_cycles={str(k): float(v) for k, v in data.get("load_stall_cycles", {}).items()},
            store_stall_cycles={str(k): float(v) for k, v in data.get("store_stall_cycles", {}).items()},
            load_switch_stall_cycles=float(data.get("load_switch_stall_cycles", 0)),
            count_program_kinds=dict(data.get("count_program_kinds", {})),
            cpu=cpu,
            overlap={str(k): float(v) for k, v in lat.get("overlap", {}).items()},
            default_overlap=float(lat.get("default_overlap", 0.0)),
            time_scale=float(lat.get("time_scale", 1.0)),
            description=str(data.get("description", "")),
            meta={k: data[k] for k in META_KEYS if k in data},
        )
    except (ValueError, TypeError, AttributeError, OSError) as e:
        raise ModelError(f"{where or default_name}: bad timing model: {e}") from None


def user_models_dir(results_dir: str | Path) -> Path:
    """Where users' fitted timing models live in a results folder the caller names."""
    return Path(results_dir) / USER_MODELS_SUBDIR


def _model_dirs(results_dir: str | Path | None) -> list[Path]:
    return [MODELS_DIR] + ([user_models_dir(results_dir)] if results_dir is not None else [])


def known_models(results_dir: str | Path | None = None) -> list[str]:
    return sorted({p.stem for d in _model_dirs(results_dir) for p in d.glob("*.json")})


def load_timing_model(name_or_path: str, results_dir: str | Path | None = None) -> TimingModel:
    """A timing model by name (built in, then RESULTS/timing_models/NAME.json when the caller
    gives its results folder) or by JSON path."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        candidates = [d / f"{name_or_path}.json" for d in _model_dirs(results_dir)]
        path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ModelError(f"unknown timing model {name_or_path!r} (known: {', '.join(known_models(results_dir))})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: bad timing model: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: bad timing model: expected a JSON object")
    return from_dict(data, default_name=path.stem, where=str(path))
