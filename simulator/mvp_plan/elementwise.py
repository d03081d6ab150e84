"""add and mul on the MVP: programs over complex int8 pairs of up to 2048 elements, the odd last
element on the CPU, broadcasts on the CPU reference kernel.
"""
from __future__ import annotations

import numpy as np

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import clamp_programs, merge
from simulator.mvp_plan.params import LayerParams
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, Load, Program, ProgramBuilder, Store


def _elementwise_registers(p: LayerParams) -> dict[int, float]:
    """ADD: R0 = -zp1*s1, R1 = s1, R2 = -zp2*s2, R3 = s2, R4 = zp_out, R5 = 1/s_out; MUL: R0 = -zp1,
    R1 = -zp2, R2 = zp_out, R3 = s1*s2/s_out. Prepare computes them in float32; the registers
    round them to binary16."""
    f32 = np.float32
    s1, s2, so = f32(p.input_scale), f32(p.input2_scale), f32(p.output_scale)
    if p.opcode == "add":
        return {0: f32(-p.input_zp) * s1, 1: s1, 2: f32(-p.input2_zp) * s2, 3: s2,
                4: float(p.output_zp), 5: f32(1.0) / so if so else 0.0}
    return {0: float(-p.input_zp), 1: float(-p.input2_zp), 2: float(p.output_zp),
            3: s1 * s2 / so if so else 0.0}


def _elementwise_program(p: LayerParams, n_pairs: int, byte_offset: int) -> Program:
    """ADD or MUL over n_pairs complex int8 pairs (the vendor's 4-instruction loops)."""
    kind = p.opcode
    b = ProgramBuilder(f"{kind}/main")
    for r, v in _elementwise_registers(p).items():
        b.reg(r, v, v)
    b.vector(0, "input", byte_offset, "int8", True, n_pairs)
    b.vector(1, "input2", byte_offset, "int8", True, n_pairs)
    b.vector(2, "output", byte_offset, "int8", True, n_pairs)
    b.begin_loop(n_pairs)
    if kind == "add":
        # x1*s1 - zp1*s1, x2*s2 - zp2*s2, sum, sum/s_out + zp_out
        b.compute("MACR2A", z=6, x=6, y=1, a=0, loads=[Load(6, 0, (COL,))])
        b.compute("MACR2A", z=7, x=7, y=3, a=2, loads=[Load(7, 1, (COL,))])
        b.compute("ADDC", z=6, x=6, a=7)
        b.compute("MACR2A", z=7, x=6, y=5, a=4, store=Store(7, 2, (COL,)))
    else:
        # (x1 - zp1) * (x2 - zp2) * multiplier + zp_out
        b.compute("ADDC", z=4, x=4, a=0, loads=[Load(4, 0, (COL,))])
        b.compute("ADDC", z=5, x=5, a=1, loads=[Load(5, 1, (COL,))])
        b.compute("MULR2A", z=6, x=4, y=5)
        b.compute("MACR2A", z=6, x=6, y=3, a=2, store=Store(6, 2, (COL,)))
    b.end_loop()
    return b.build()


def plan_elementwise(p: LayerParams, n_elements: int) -> LayerPlan:
    kind = p.opcode
    routed = checks.first_failure(kind, p, effect=checks.ROUTES)
    if routed:
        # the vendor kernel quietly uses the CPU reference for broadcasts: nothing is rejected
        return LayerPlan(True, None, f"{kind}/cpu-broadcast", [], note=routed.limit)
    ordered = []
    start = 0
    while n_elements - start >= 2:
        n = min(2048, n_elements - start) // 2
        ordered.append((_elementwise_program(p, n, start), 1))
        start += 2 * n
    work: tuple = ()
    if start < n_elements:
        # the odd last element, on the CPU in float (FACTS: ADD in float32 with round(); MUL's
        # product in binary16)
        f32 = np.float32
        work = ({"op": "odd_element", "kind": kind, "index": start, "input_zp": p.input_zp,
                 "input2_zp": p.input2_zp, "output_zp": p.output_zp,
                 "s1": float(f32(p.input_scale)), "s2": float(f32(p.input2_scale)),
                 "multiplier": float(f32(1.0) / f32(p.output_scale)) if kind == "add" else
                 float(f32(p.input_scale) * f32(p.input2_scale) / f32(p.output_scale))},)
    clamp, clamp_work = clamp_programs(p, n_elements)
    ordered += clamp
    return LayerPlan(True, None, f"{kind}/mvp", merge(ordered), runs_on_mvp=True,
                     expand=lambda: (pr for pr, _ in ordered), cpu_work=work + clamp_work)
