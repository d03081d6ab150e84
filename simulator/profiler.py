"""The profiler: .tflite bytes in, a `ProfileRecord` out.

Ties the simulator's parts together: the reader builds the graph, the MVP program model decides
per layer whether it runs on the accelerator and which programs it launches, the arena planner
sizes RAM, and a named timing model turns programs and CPU work into cycles.
"""
from __future__ import annotations

from pathlib import Path

from simulator.counting import count_ops_macs
from simulator.errors import ModelError
from simulator.graph import Graph, Operator
from simulator.hardware import ACCELERATORS
from simulator.memory import plan_arena
from simulator.mvp_plan import LayerPlan, plan_layer
from simulator.record import (CLOCK_HZ_DEFAULT, LayerRecord, ModelInfo, ProfileRecord, Summary,
                              Target, TensorInfo)
from simulator.timing import DEFAULT_TIMING, load_timing_model  # DEFAULT_TIMING: re-exported
from simulator.tflite_reader import read_model, read_model_file


# Operands every later stage relies on: (minimum inputs, {input position: rank}). A file that
# breaks these is corrupt, and saying so beats an IndexError deep inside a kernel model.
_OPERANDS = {
    "conv_2d": (2, {0: 4, 1: 4}), "depthwise_conv_2d": (2, {0: 4, 1: 4}),
    "fully_connected": (2, {1: 2}), "transpose_conv": (3, {1: 4, 2: 4}),
    "average_pool_2d": (1, {0: 4}), "max_pool_2d": (1, {0: 4}),
    "add": (2, {}), "sub": (2, {}), "mul": (2, {}),
}


def check_operators(graph: Graph) -> None:
    """Raises ModelError for an operator whose operands cannot belong to a valid model."""
    for op in graph.operators:
        where = f"{graph.name}: layer {op.index} ({op.opcode})"
        if not op.outputs or min(op.outputs) < 0:
            raise ModelError(f"{where}: has no output tensor")
        n_min, ranks = _OPERANDS.get(op.opcode, (0, {}))
        if len(op.inputs) < n_min or any(i < 0 for i in op.inputs[:n_min]):
            raise ModelError(f"{where}: needs {n_min} inputs, has {len(op.inputs)}")
        for pos, rank in ranks.items():
            shape = graph.tensors[op.inputs[pos]].shape
            if len(shape) != rank:
                raise ModelError(f"{where}: input {pos} has shape {list(shape)}, expected rank {rank}")


def _tensor_info(graph: Graph, indices: list[int]) -> list[TensorInfo]:
    return [TensorInfo(graph.tensors[i].name, list(graph.tensors[i].shape), graph.tensors[i].dtype)
            for i in indices if i >= 0]


def _plans(graph: Graph, accelerator: str) -> list[LayerPlan]:
    if accelerator == "none":
        return [LayerPlan(False, "accelerator disabled", f"{op.opcode}/cpu", has_mvp_kernel=False,
                          runs_on_mvp=False) for op in graph.operators]
    return [plan_layer(graph, op) for op in graph.operators]


def _note(plan: LayerPlan) -> str | None:
    """The layer's note: the specific limit behind a refusal where the vendor's words (the
    record's reason) do not say it, with, for a layer that runs on the MVP although the vendor's
    simulator refuses it (its quirks), that refusal in the vendor's words; else the plan's note."""
    limit = plan.limit if plan.limit and plan.limit != plan.reason else None
    vendor = f"its words: \"{plan.reason}\"" if plan.runs_on_mvp and not plan.supported else None
    return "; ".join(x for x in (limit, vendor if limit else None, None if limit else plan.note) if x) or None


def profile_graph(graph: Graph, accelerator: str = "mvp", timing: str = DEFAULT_TIMING,
                  clock_hz: int = CLOCK_HZ_DEFAULT) -> ProfileRecord:
    """Profiles a parsed model for the EFR32xG24 with or without the MVP."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {ACCELERATORS}, not {accelerator!r}")
    check_operators(graph)
    tm = load_timing_model(timing)
    plans = _plans(graph, accelerator)
    # Prepare's verdict decides the kernel's buffers: a layer the kernel rejects keeps only some of
    # them, even where (a vendor quirk) its programs still run
    arena = plan_arena(graph, [p.supported for p in plans], mvp_build=(accelerator == "mvp"))

    layers = []
    for op, plan, kernel_bytes in zip(graph.operators, plans, arena.per_layer_bytes):
        ops, macs = count_ops_macs(graph, op)
        acc_cycles = tm.accelerator_cycles(plan) if plan.runs_on_mvp else 0
        cpu_cycles = tm.cpu_cycles(graph, op, plan)
        # One meaning of "unsupported" for every source (simulator, board, vendor log): a layer
        # the MVP's kernels refuse, so that it falls back to the CPU. `supported` is "runs on the
        # MVP" and `reason` is set only for such a fallback: not for an op the MVP has no kernel
        # for (softmax: the board does not count it either), nor for a layer the vendor's
        # simulator flags but whose programs run (its note keeps the vendor's words)
        falls_back = accelerator == "mvp" and plan.has_mvp_kernel and not plan.runs_on_mvp
        layers.append(LayerRecord(
            index=op.index, opcode=op.opcode, ops=ops, macs=macs,
            supported=accelerator == "mvp" and plan.runs_on_mvp,
            reason=plan.reason if falls_back else None,
            accelerator_cycles=int(acc_cycles), cpu_cycles=int(cpu_cycles),
            # the timing model's accounting (vendor-sim: max(acc, cpu), the vendor's)
            latency_s=tm.layer_latency_s(int(acc_cycles), int(cpu_cycles), plan.kernel, clock_hz),
            inputs=_tensor_info(graph, op.inputs), outputs=_tensor_info(graph, op.outputs),
            options=dict(op.options), ram_bytes=int(kernel_bytes), note=_note(plan),
        ))

    summary = Summary.of_layers(layers, flash_bytes=graph.flash_bytes, ram_bytes=int(arena.ram_bytes))
    return ProfileRecord(
        model=ModelInfo(graph.name, graph.sha256, graph.flash_bytes,
                        _tensor_info(graph, graph.inputs), _tensor_info(graph, graph.outputs)),
        target=Target(accelerator=accelerator, clock_hz=int(clock_hz), timing=tm.name, source="simulator"),
        summary=summary, layers=layers,
    )


def profile_model(data: bytes, accelerator: str = "mvp", timing: str = DEFAULT_TIMING,
                  name: str = "model", clock_hz: int = CLOCK_HZ_DEFAULT) -> ProfileRecord:
    """Profiles .tflite bytes. Raises `ModelError` for anything that is not a readable model."""
    return profile_graph(read_model(data, name=name), accelerator, timing, clock_hz)


def profile_file(path: str | Path, accelerator: str = "mvp", timing: str = DEFAULT_TIMING,
                 clock_hz: int = CLOCK_HZ_DEFAULT) -> ProfileRecord:
    return profile_graph(read_model_file(path), accelerator, timing, clock_hz)


def attach_execution(record: ProfileRecord, model: str | Path | bytes, seed: int = 0,
                     count: int = 1, timing: str | None = None) -> ProfileRecord:
    """Runs the model in the emulator (seeded inputs drawn like the oracle's) and adds, per layer,
    the accelerator cycles of the programs it executed and the drift against the reference
    kernels. `timing` (a name or path) defaults to the record's timing model's name. The emulator
    is imported here only: plain profiling never pays numba's start-up."""
    from simulator.emulator import emulate_profile

    emu = emulate_profile(model, accelerator=record.target.accelerator, timing=timing or record.target.timing,
                          seed=seed, count=count)
    for layer, row in zip(record.layers, emu["layers"]):
        layer.execution = {k: row[k] for k in ("accelerator_cycles", "elements", "drift_elements",
                                                "drift_max_steps")}
    record.execution = {k: emu[k] for k in ("seed", "count", "accelerator_cycles", "outputs")}
    return record


__all__ = ["attach_execution", "profile_model", "profile_file", "profile_graph", "ModelError", "Operator"]
