"""The entry point: `plan_layer(graph, op)` dispatches a layer to its operator's planner (planning
each distinct layer shape once), and `prepare_constants` derives the fp16 buffers Prepare writes.
"""
from __future__ import annotations

import numpy as np

from simulator import mvp_checks as checks
from simulator.graph import Graph, Operator
from simulator.mvp_plan.conv import plan_conv
from simulator.mvp_plan.depthwise import plan_depthwise
from simulator.mvp_plan.elementwise import plan_elementwise
from simulator.mvp_plan.fully_connected import plan_fc
from simulator.mvp_plan.params import LayerParams, bias_f16, layer_params
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_plan.pooling import plan_pool
from simulator.mvp_plan.transpose_conv import plan_transpose_conv

MVP_OPCODES = ("conv_2d", "depthwise_conv_2d", "fully_connected", "add", "mul", "average_pool_2d",
               "max_pool_2d", "transpose_conv")
# the CPU kernel a refused layer falls back to: CMSIS-NN, or TFLM's reference kernel where CMSIS-NN
# has none (transpose_conv) or the data is not int8
CPU_KERNELS = {**dict.fromkeys(MVP_OPCODES, "cmsis"), "transpose_conv": "reference"}
FALLBACK_KERNELS = {"check_int8": "reference"}


def plan_layer(graph: Graph, op: Operator) -> LayerPlan:
    """What the MVP does with one layer: the vendor's verdict and the programs it launches."""
    code = op.opcode
    if code not in MVP_OPCODES:
        return LayerPlan(False, f"no MVP kernel for {code}", f"{code}/cpu", has_mvp_kernel=False)
    p = layer_params(graph, op)
    n_out = graph.op_outputs(op)[0].n_elements
    # layers repeat (mobilenets): plan each distinct shape once; plans are shared, do not mutate them
    key = (tuple(p.__dict__.values()), n_out)
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        if len(_PLAN_CACHE) > 4096:
            _PLAN_CACHE.clear()
        plan = _PLAN_CACHE[key] = _plan(p, n_out)
    return plan


_PLAN_CACHE: dict = {}


def _plan(p: LayerParams, n_out: int) -> LayerPlan:
    code = p.opcode
    refusal = checks.first_failure(code, p)     # the checks on the layer's parameters alone
    if refusal:
        return LayerPlan.refused(refusal, f"{code}/{FALLBACK_KERNELS.get(refusal.check, CPU_KERNELS[code])}")
    if code == "conv_2d":
        return plan_conv(p)
    if code == "depthwise_conv_2d":
        return plan_depthwise(p)
    if code == "fully_connected":
        return plan_fc(p)
    if code in ("add", "mul"):
        return plan_elementwise(p, n_out)
    if code in ("average_pool_2d", "max_pool_2d"):
        return plan_pool(p, code == "max_pool_2d")
    return plan_transpose_conv(p)


def prepare_constants(graph: Graph, op: Operator) -> dict[str, np.ndarray]:
    """The fp16 buffers Prepare derives for an MVP layer: bias * 2^-15 and the per-channel output
    scaler in_scale * w_scale / out_scale * 2^15 (clamped to the fp16 range)."""
    ins = graph.op_inputs(op)
    if op.opcode == "transpose_conv":   # inputs: output shape, filter, input, bias
        x, w, bias = ins[2], ins[1], ins[3] if len(ins) > 3 else None
    else:
        x, w, bias = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    out = graph.op_outputs(op)[0]
    consts: dict[str, np.ndarray] = {}
    if bias is not None and bias.data is not None:
        consts["bias"] = bias_f16(bias.data)
    if x.scale is not None and w.scale is not None and out.scale is not None:
        scaler = float(x.scale[0]) * w.scale.astype(np.float64) / float(out.scale[0]) * 2.0 ** 15
        consts["scaler"] = np.clip(scaler, -checks.FP16_MAX, checks.FP16_MAX).astype(np.float16)
    consts["zero"] = np.zeros(2, dtype=np.float16)
    return consts
