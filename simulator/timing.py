"""Named timing models: accelerator cycles as a function of program structure, parameters as data.

A timing model prices what `mvp_program.execution_counts` reports about each program: executed
instructions, read-after-write hazards between consecutive instructions, and a fixed cost per
launch. The numbers live in simulator/timing_models/NAME.json (or any JSON file given by path),
so a model calibrated from boards is a new file, not new code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import ModelError
from simulator.mvp_program import Program, execution_counts

MODELS_DIR = Path(__file__).parent / "timing_models"


@dataclass(frozen=True)
class TimingModel:
    name: str
    cycles_per_instruction: float = 1.0
    raw_stall_cycles: float = 1.0
    raw_stall_operands: tuple[str, ...] = ("x", "y")
    load_hides_raw_stall: bool = False
    program_overhead_cycles: float = 0.0
    count_program_kinds: dict = field(default_factory=dict)  # kind prefix -> counted?
    description: str = ""

    def _stalls(self, prev, nxt) -> bool:
        if prev.z is None or (self.load_hides_raw_stall and nxt.loads):
            return False
        return any(getattr(nxt, operand) == prev.z for operand in self.raw_stall_operands)

    def program_cycles(self, program: Program) -> float:
        counts = execution_counts(program)
        instrs = program.instructions
        cycles = self.cycles_per_instruction * sum(counts.per_instruction)
        for (i, j), n in counts.transitions.items():
            if self._stalls(instrs[i], instrs[j]):
                cycles += self.raw_stall_cycles * n
        return cycles + self.program_overhead_cycles

    def counts_kind(self, kind: str) -> bool:
        prefix = kind.split("/", 1)[0]
        return bool(self.count_program_kinds.get(prefix, True))

    def accelerator_cycles(self, plan) -> int:
        """MVP cycles of one layer: the sum over the programs it launches (0 if it runs on the CPU)."""
        total = 0.0
        for program, repeat in plan.programs:
            if self.counts_kind(program.kind):
                total += self.program_cycles(program) * repeat
        return int(round(total))


def load_timing_model(name_or_path: str) -> TimingModel:
    """A timing model by name (simulator/timing_models/NAME.json) or by path to a JSON file."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.exists()):
        path = MODELS_DIR / f"{name_or_path}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.json")))
        raise ModelError(f"unknown timing model {name_or_path!r} (known: {known})")
    try:
        data = json.loads(path.read_text())
        return TimingModel(
            name=data.get("name", path.stem),
            cycles_per_instruction=float(data.get("cycles_per_instruction", 1)),
            raw_stall_cycles=float(data.get("raw_stall_cycles", 1)),
            raw_stall_operands=tuple(data.get("raw_stall_operands", ("x", "y"))),
            load_hides_raw_stall=bool(data.get("load_hides_raw_stall", False)),
            program_overhead_cycles=float(data.get("program_overhead_cycles", 0)),
            count_program_kinds=dict(data.get("count_program_kinds", {})),
            description=data.get("description", ""),
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise ModelError(f"{path}: bad timing model: {e}") from None
