"""fully_connected on the MVP: the small path (one program for every unit and batch) and the
large-input path (one program per output, the input depth factorized into two loops).
"""
from __future__ import annotations

import numpy as np

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import clamp_programs, merge, window_dot
from simulator.mvp_plan.params import S, LayerParams
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, ROW, Load, Program, ProgramBuilder, Store


def _fc_scaler(p: LayerParams) -> float:
    """The output scaler register: in_scale * w_scale / out_scale * 2^15 (one for all units)."""
    if not p.output_scale:
        return 0.0
    return min(p.input_scale * p.weight_scale / p.output_scale * 2.0 ** 15, checks.FP16_MAX)


def _fc_small_program(p: LayerParams) -> Program:
    packed = p.accum % 2 == 0
    k = 2 if packed else 1
    b = ProgramBuilder("fully_connected/small")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(3, _fc_scaler(p), _fc_scaler(p))
    b.reg(4, p.output_zp)
    b.array(0, "input", 0, "int8", packed, (1, p.batches, p.accum // k), (0, p.accum // k, 1))
    b.array(1, "filter", 0, "int8", packed, (1, p.units, p.accum // k), (0, p.accum // k, 1))
    if p.has_bias:
        b.vector(2, "bias", 0, "binary16", False, p.bias_length)
    else:
        b.vector(2, "zero", 0, "binary16", False, 1)
    b.array(3, "output", 0, "int8", False, (1, p.batches, p.units), (0, p.units, 1))
    b.begin_loop(p.batches)
    b.begin_loop(p.units)
    b.compute("NOOP", loads=[Load(5, 2, (COL,))])
    b.begin_loop(p.accum // k)
    b.compute("MACR2A", z=6, x=6, y=0, a=1, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(1, ROW)
    if packed:
        b.compute("ADDR", z=5, a=5)
    b.compute("MACR2A", z=5, x=5, y=3, a=4, store=Store(5, 3, (COL,)))
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(3, ROW)
    b.end_loop()
    return b.build()


def _fc_large_program(p: LayerParams, batch: int, unit: int, bias: float = 0.0) -> Program:
    """One output of the large-input path; the CPU puts the unit's fp16 bias into R5."""
    packed = p.accum % 2 == 0
    n, m = checks.factorize(p.fc_loop_count)
    b = ProgramBuilder("fully_connected/large")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(3, _fc_scaler(p), _fc_scaler(p))
    b.reg(4, p.output_zp)
    b.reg(5, bias)
    b.array(0, "input", batch * p.accum, "int8", packed, (1, n, m), (0, m, 1))
    b.array(1, "filter", unit * p.accum, "int8", packed, (1, n, m), (0, m, 1))
    b.vector(3, "output", batch * p.units + unit, "int8", False, 1)
    window_dot(b, n, m)
    if packed:
        b.compute("ADDR", z=5, a=5)
    b.compute("MACR2A", z=5, x=5, y=3, a=4, store=Store(5, 3, (COL,)))
    return b.build()


def plan_fc(p: LayerParams) -> LayerPlan:
    clamp, work = clamp_programs(p, p.batches * p.units)
    if not p.fc_large_input:
        programs = [(_fc_small_program(p), 1)] + clamp
        refusal = checks.first_failure("fully_connected", p, programs, needs=checks.NEEDS_PROGRAMS)
        if refusal:
            return LayerPlan.refused(refusal, "fully_connected/cmsis")
        warned = checks.first_failure("fully_connected", p, effect=checks.WARNS)
        return LayerPlan(True, None, "fully_connected/mvp", merge(programs), runs_on_mvp=True,
                         expand=lambda: (pr for pr, _ in programs), cpu_work=work,
                         note=f"{warned.reason}: {warned.limit}" if warned else None)
    bias = np.frombuffer(p.bias_f16, dtype=np.float16) if p.bias_f16 else np.zeros(p.units, np.float16)

    def expand():
        for batch in range(p.batches):
            for unit in range(p.units):
                yield _fc_large_program(p, batch, unit, float(bias[unit]))
        for program, _ in clamp:
            yield program
    programs = [(_fc_large_program(p, 0, 0), p.batches * p.units)] + merge(clamp)
    flagged = checks.first_failure("fully_connected", p, effect=checks.FLAGS)
    return LayerPlan(False, flagged.reason, "fully_connected/mvp-large", programs,
                     runs_on_mvp=True, expand=expand, cpu_work=work, limit=flagged.limit,
                     note="vendor simulator logs this message although the large-input MVP path runs the layer")
