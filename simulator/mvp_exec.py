"""Executes MVP programs (`mvp_program.Program`) on data: the MVP half of the emulator.

`plan_layer(graph, op)` asks the MVP program model (`mvp_kernels.plan_layer`) what a layer
compiles to; when the layer runs on the MVP it returns an emulator `Step` that executes the
layer's program launches, in order, with the interpreter below. Layers the MVP does not run
return None and fall back to the reference kernels.

The interpreter is one numba function over numerically encoded programs:
- memory: one float64 array holding every buffer the programs address (int8 buffers one slot
  per byte, binary16 buffers one slot per 2 bytes); values are exact binary16 numbers;
- registers: 8 complex binary16 (re, im) pairs, initialised per program;
- arrays: 3-D index counters; an increment wraps modulo the dim's size without carry;
- loops: the hardware rule: when an instruction that ends loops finishes, the innermost loop
  ending there branches back, or once exhausted applies its increments/resets and hands over
  to the next enclosing loop ending there;
- an instruction loads (int8 -> binary16 exactly, lower byte = real for complex int8), runs the
  ALU op with binary16 rounding (`fp16.round_f16`), then stores (int8: round to nearest even,
  saturating).

What the kernels do on the CPU around the programs (the clamp pass, the odd ADD element,
Conv1D edge columns, the per-unit FC bias register) is done here in plain code, following
../shared/mvp/FACTS.md section 3.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from numba import njit

from simulator import fp16 as F
from simulator.graph import Graph, Operator

OP_IDS = {"NOOP": 0, "CLEAR": 1, "COPY": 2, "ADDR": 3, "ADDC": 4, "MAX2A": 5, "MULC": 6,
          "MULR2A": 7, "SQRMAGC2": 8, "MACC": 9, "AACC": 10, "MAXAC2": 11, "CLIP2A": 12,
          "MACR2A": 13}
BASETYPE_IDS = {"uint8": 0, "int8": 1, "binary16": 2}

# instruction record fields
(I_OP, I_Z, I_X, I_Y, I_A, I_L0R, I_L0A, I_L0M, I_L1R, I_L1A, I_L1M, I_SR, I_SA, I_SM,
 I_END) = range(15)
N_I = 15
# array record fields
(A_BASE, A_OFF, A_UNIT, A_TYPE, A_CPLX, A_S0, A_S1, A_S2, A_T0, A_T1, A_T2, A_VALID) = range(12)
N_A = 12
# loop record fields
L_N, L_BEGIN, L_END, L_INCR, L_RESET = range(5)
N_L = 5

# Arithmetic variants (hypotheses about undocumented hardware behaviour), fixed at the values
# that match the vendor simulator best; see tests/test_emulator_mvp.py.
FUSED_MAC = False          # a*b + c rounded once (True) or a*b rounded, then + c rounded (False)
STORE_TIES_EVEN = True     # int8 store rounds ties to even (True) or away from zero (False)


@njit(cache=True, inline="always")
def _mac(x, y, a, fused):
    if fused:
        return F.round_f16(x * y + a)
    return F.round_f16(F.round_f16(x * y) + a)


@njit(cache=True, inline="always")
def _slot(arr, idx, lane):
    """Memory slot of the current element of an array (lane 1 = imaginary half)."""
    e = idx[0] * arr[A_T0] + idx[1] * arr[A_T1] + idx[2] * arr[A_T2]
    elem_bytes = (2 if arr[A_TYPE] == 2 else 1) * (2 if arr[A_CPLX] else 1)
    addr = arr[A_OFF] + e * elem_bytes
    return arr[A_BASE] + addr // arr[A_UNIT] + lane


@njit(cache=True, inline="always")
def _incr(arr, idx, dim):
    idx[dim] += 1
    if idx[dim] >= arr[A_S0 + dim]:
        idx[dim] = 0


@njit(cache=True)
def run_programs(mem, regs0, arrays, loops, n_loops, instrs, n_instrs, fused, ties_even):
    """Runs programs k = 0..K-1 in order over `mem` (modified in place)."""
    n_prog = regs0.shape[0]
    regs = np.zeros((8, 2))
    idx = np.zeros((5, 3), dtype=np.int64)
    counters = np.zeros(8, dtype=np.int64)
    for k in range(n_prog):
        for r in range(8):
            regs[r, 0] = regs0[k, r, 0]
            regs[r, 1] = regs0[k, r, 1]
        idx[:, :] = 0
        nl = n_loops[k]
        for j in range(nl):
            counters[j] = loops[k, j, L_N]
        pc = 0
        ni = n_instrs[k]

        while pc < ni:
            ins = instrs[k, pc]
            # loads
            for ld in range(2):
                reg = ins[I_L0R + 3 * ld]
                if reg < 0:
                    continue
                a = ins[I_L0A + 3 * ld]
                arr = arrays[k, a]
                if arr[A_TYPE] == 0 or arr[A_TYPE] == 1 or arr[A_TYPE] == 2:
                    regs[reg, 0] = mem[_slot(arr, idx[a], 0)]
                    regs[reg, 1] = mem[_slot(arr, idx[a], 1)] if arr[A_CPLX] else 0.0
                m = ins[I_L0M + 3 * ld]
                for d in range(3):
                    if (m >> d) & 1:
                        _incr(arr, idx[a], d)
            # ALU
            op = ins[I_OP]
            z = ins[I_Z]
            x = ins[I_X]
            y = ins[I_Y]
            aa = ins[I_A]
            if op == 1:  # CLEAR
                regs[z, 0] = 0.0
                regs[z, 1] = 0.0
            elif op == 2:  # COPY
                regs[z, 0] = regs[aa, 0]
                regs[z, 1] = regs[aa, 1]
            elif op == 3:  # ADDR: fold the two lanes
                regs[z, 0] = F.round_f16(regs[aa, 0] + regs[aa, 1])
                regs[z, 1] = 0.0
            elif op == 4:  # ADDC
                re = F.round_f16(regs[x, 0] + regs[aa, 0])
                im = F.round_f16(regs[x, 1] + regs[aa, 1])
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 5 or op == 11:  # MAX2A / MAXAC2
                re = max(regs[x, 0], regs[aa, 0])
                im = max(regs[x, 1], regs[aa, 1])
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 6:  # MULC
                xr, xi, yr, yi = regs[x, 0], regs[x, 1], regs[y, 0], regs[y, 1]
                regs[z, 0] = F.round_f16(F.round_f16(xr * yr) - F.round_f16(xi * yi))
                regs[z, 1] = F.round_f16(F.round_f16(xr * yi) + F.round_f16(xi * yr))
            elif op == 7:  # MULR2A
                re = F.round_f16(regs[x, 0] * regs[y, 0])
                im = F.round_f16(regs[x, 1] * regs[y, 1])
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 8:  # SQRMAGC2
                xr, xi = regs[x, 0], regs[x, 1]
                regs[z, 0] = F.round_f16(F.round_f16(xr * xr) + F.round_f16(xi * xi))
                regs[z, 1] = 0.0
            elif op == 9:  # MACC: complex x*y + a
                xr, xi, yr, yi = regs[x, 0], regs[x, 1], regs[y, 0], regs[y, 1]
                ar, ai = regs[aa, 0], regs[aa, 1]
                if yi == 0.0:
                    re = _mac(xr, yr, ar, fused)
                    im = _mac(xi, yr, ai, fused)
                else:
                    re = F.round_f16(F.round_f16(F.round_f16(xr * yr) - F.round_f16(xi * yi)) + ar)
                    im = F.round_f16(F.round_f16(F.round_f16(xr * yi) + F.round_f16(xi * yr)) + ai)
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 10:  # AACC
                re = F.round_f16(F.round_f16(regs[x, 0] + regs[y, 0]) + regs[aa, 0])
                im = F.round_f16(F.round_f16(regs[x, 1] + regs[y, 1]) + regs[aa, 1])
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 12:  # CLIP2A: min(max(a, x), y) per lane
                re = min(max(regs[aa, 0], regs[x, 0]), regs[y, 0])
                im = min(max(regs[aa, 1], regs[x, 1]), regs[y, 1])
                regs[z, 0] = re
                regs[z, 1] = im
            elif op == 13:  # MACR2A
                re = _mac(regs[x, 0], regs[y, 0], regs[aa, 0], fused)
                im = _mac(regs[x, 1], regs[y, 1], regs[aa, 1], fused)
                regs[z, 0] = re
                regs[z, 1] = im
            # store
            sr = ins[I_SR]
            if sr >= 0:
                a = ins[I_SA]
                arr = arrays[k, a]
                lanes = 2 if arr[A_CPLX] else 1
                for lane in range(lanes):
                    v = regs[sr, lane]
                    if arr[A_TYPE] == 2:
                        mem[_slot(arr, idx[a], lane)] = v
                    else:
                        if ties_even:
                            q = F.to_int8_saturating(v)
                        else:
                            q = F.to_int8_saturating_away(v)
                        if arr[A_TYPE] == 0:
                            q = min(max(q + 128, 0), 255) - 128  # uint8 stores are not used
                        mem[_slot(arr, idx[a], lane)] = q
                m = ins[I_SM]
                for d in range(3):
                    if (m >> d) & 1:
                        _incr(arr, idx[a], d)
            # control flow: loops ending here, innermost (highest index) first
            jumped = False
            for j in range(nl - 1, -1, -1):
                if loops[k, j, L_END] != pc:
                    continue
                counters[j] -= 1
                if counters[j] > 0:
                    pc = loops[k, j, L_BEGIN]
                    jumped = True
                    break
                counters[j] = loops[k, j, L_N]
                inc = loops[k, j, L_INCR]
                rst = loops[k, j, L_RESET]
                for a in range(5):
                    for d in range(3):
                        bit = a * 3 + d
                        if (rst >> bit) & 1:
                            idx[a, d] = 0
                        if (inc >> bit) & 1:
                            _incr(arrays[k, a], idx[a], d)
            if not jumped:
                if ins[I_END]:
                    break
                pc += 1

    return mem


# ----------------------------------------------------------------------------- encoding

class Memory:
    """Lays the named buffers of one layer out in one float64 array."""

    def __init__(self, sizes: dict[str, tuple[int, int]]):
        # name -> (byte size, unit bytes per slot)
        self.base: dict[str, int] = {}
        self.unit: dict[str, int] = {}
        total = 0
        for name, (nbytes, unit) in sizes.items():
            self.base[name] = total
            self.unit[name] = unit
            total += (nbytes + unit - 1) // unit + 2   # slack: a complex read of the last element
        self.size = total

    def view(self, mem: np.ndarray, name: str, n_slots: int) -> np.ndarray:
        b = self.base[name]
        return mem[b:b + n_slots]


def encode_programs(programs: list, memory: Memory, register_overrides: list | None = None):
    """Packs programs into the interpreter's arrays."""
    k = len(programs)
    regs = np.zeros((k, 8, 2))
    arrays = np.zeros((k, 5, N_A), dtype=np.int64)
    loops = np.zeros((k, 8, N_L), dtype=np.int64)
    n_loops = np.zeros(k, dtype=np.int64)
    instrs = np.full((k, 8, N_I), -1, dtype=np.int64)
    n_instrs = np.zeros(k, dtype=np.int64)
    for p_i, prog in enumerate(programs):
        for r, re, im in prog.registers:
            regs[p_i, r] = (F.round_f16(float(re)), F.round_f16(float(im)))
        if register_overrides is not None:
            for r, (re, im) in register_overrides[p_i].items():
                regs[p_i, r] = (re, im)
        for a_i, arr in enumerate(prog.arrays):
            if arr is None:
                continue
            arrays[p_i, a_i] = (memory.base[arr.buffer], arr.byte_offset, memory.unit[arr.buffer],
                                BASETYPE_IDS[arr.basetype], int(arr.complex),
                                arr.dims[0].size, arr.dims[1].size, arr.dims[2].size,
                                arr.dims[0].stride, arr.dims[1].stride, arr.dims[2].stride, 1)
        n_loops[p_i] = len(prog.loops)
        for l_i, lp in enumerate(prog.loops):
            incr = sum(1 << (a * 3 + d) for a, d in lp.incr)
            reset = sum(1 << (a * 3 + d) for a, d in lp.reset)
            loops[p_i, l_i] = (lp.iterations, lp.begin, lp.end, incr, reset)
        n_instrs[p_i] = len(prog.instructions)
        for i_i, ins in enumerate(prog.instructions):
            rec = instrs[p_i, i_i]
            rec[I_OP] = OP_IDS[ins.op]
            rec[I_Z] = -1 if ins.z is None else ins.z
            rec[I_X] = 0 if ins.x is None else ins.x
            rec[I_Y] = 0 if ins.y is None else ins.y
            rec[I_A] = 0 if ins.a is None else ins.a
            for l_i, ld in enumerate(ins.loads[:2]):
                rec[I_L0R + 3 * l_i] = ld.register
                rec[I_L0A + 3 * l_i] = ld.array
                rec[I_L0M + 3 * l_i] = sum(1 << d for d in ld.incr_dims)
            if ins.store is not None:
                rec[I_SR] = ins.store.register
                rec[I_SA] = ins.store.array
                rec[I_SM] = sum(1 << d for d in ins.store.incr_dims)
            rec[I_END] = int(ins.endprog)
    return regs, arrays, loops, n_loops, instrs, n_instrs


# ----------------------------------------------------------------------------- layers

def _q(t):
    zp = int(t.zero_point[0]) if t.zero_point is not None and len(t.zero_point) else 0
    return float(t.scale[0]), zp


def _f16(x: float) -> float:
    return float(F.round_f16(float(x)))


def _shift_arrays(program, shifts: dict):
    """The program with some buffers' base offsets moved by `shifts[buffer]` bytes."""
    arrays = tuple(None if a is None else
                   dataclasses.replace(a, byte_offset=a.byte_offset + shifts.get(a.buffer, 0))
                   for a in program.arrays)
    return dataclasses.replace(program, arrays=arrays)


def _launches(plan) -> list:
    """Every launch in order. Where the CPU repeats one program over channels (generic
    pooling: one launch per channel or channel pair; generic depthwise with the channel loop
    outside: one launch per input channel), the model counts the repeats; the CPU moves the
    buffer pointers between them, which is done here."""
    if plan.expand is not None:
        return list(plan.launches())
    out = []
    for program, count in plan.programs:
        if program.kind in ("max_pool_2d/generic", "average_pool_2d/generic") and count > 1:
            step = 2 if program.arrays[0].complex else 1
            out += [_shift_arrays(program, {"input": c * step, "output": c * step})
                    for c in range(count)]
        elif program.kind == "depthwise_conv_2d/generic" and count > 1:
            mult = plan.depth_multiplier
            out += [_shift_arrays(program, {"input": c, "output": c * mult, "filter": c * mult,
                                            "bias": 2 * c * mult, "scaler": 2 * c * mult})
                    for c in range(count)]
        else:
            out += [program] * count
    return out


def plan_layer(graph: Graph, op: Operator):
    """An emulator Step running the layer's MVP programs, or None for a reference-kernel layer."""
    from simulator import mvp_kernels
    from simulator.emulator import Step, _reference_step
    plan = mvp_kernels.plan_layer(graph, op)
    if not plan.runs_on_mvp or not plan.programs:
        return None
    if not plan.supported and op.opcode == "depthwise_conv_2d":
        # The vendor simulator's Prepare rejects these (FACTS: uninitialised-pointer check) and
        # runs them with the reference kernel; we follow the simulator, whose outputs we match.
        return None
    if plan.kernel == "conv_2d/mvp-conv1d":
        # The model merges the width chunks' programs and does not place them at their
        # columns yet; until it does, this layer runs the reference kernel (outputs may then
        # differ from the MVP's by one step).
        return None
    if plan.kernel == "average_pool_2d/mvp":
        return _avg_pool_generic_step(graph, op, plan)
    if plan.kernel == "max_pool_2d/mvp":
        # MAX2A/CLIP2A on int8 values are exact in binary16, so the MVP's result equals the
        # reference kernel's; the generic pooling programs of the model do not walk the
        # window rows per output row (reported to the program model's owner).
        return None
    if op.opcode == "depthwise_conv_2d":
        w_shape, x_shape = graph.tensors[op.inputs[1]].shape, graph.tensors[op.inputs[0]].shape
        plan.depth_multiplier = w_shape[3] // x_shape[3]
    launches = [pr for pr in _launches(plan) if pr.kind != "clamp/i8"]
    if not launches:
        return None
    ins = graph.op_inputs(op)
    out_t = graph.op_outputs(op)[0]
    x_t = ins[0]
    code = op.opcode
    has_weights = code in ("conv_2d", "depthwise_conv_2d", "fully_connected", "transpose_conv")
    consts = mvp_kernels.prepare_constants(graph, op) if has_weights else {}
    p = mvp_kernels.layer_params(graph, op)

    sizes = {"input": (x_t.n_elements, 1), "output": (out_t.n_elements, 1), "zero": (4, 2)}
    if code == "add":
        sizes["input2"] = (ins[1].n_elements, 1)
    elif has_weights:
        sizes["filter"] = (ins[1].n_elements, 1)
        if "bias" in consts:
            sizes["bias"] = (2 * consts["bias"].size, 2)
        if "scaler" in consts:
            sizes["scaler"] = (2 * consts["scaler"].size, 2)
    if any(pr.arrays and any(a is not None and a.buffer == "scratch" for a in pr.arrays)
           for pr in launches):
        sizes["scratch"] = (2 * x_t.n_elements, 2)
    memory = Memory(sizes)
    base_mem = np.zeros(memory.size)
    if has_weights:
        w = ins[1].data.astype(np.float64).reshape(-1)
        memory.view(base_mem, "filter", w.size)[:] = w
        for name in ("bias", "scaler"):
            if name in consts:
                v = consts[name].astype(np.float64).reshape(-1)
                memory.view(base_mem, name, v.size)[:] = v

    overrides = None
    cpu_tail = None
    if code == "fully_connected":
        in_s, _ = _q(x_t)
        out_s, _ = _q(out_t)
        w_s = float(ins[1].scale[0])
        scaler = _f16(in_s * w_s / out_s * 2.0 ** 15)
        bias16 = consts.get("bias", np.zeros(p.units, dtype=np.float16)).astype(np.float64)
        overrides = []
        for i, pr in enumerate(launches):
            o = {3: (scaler, scaler)}
            if pr.kind == "fully_connected/large":
                o[5] = (float(bias16[i % p.units]), 0.0)
            overrides.append(o)
    elif code == "add":
        s1, z1 = _q(ins[0])
        s2, z2 = _q(ins[1])
        so, zo = _q(out_t)
        regs = {0: (_f16(-z1 * s1),) * 2, 1: (_f16(s1),) * 2, 2: (_f16(-z2 * s2),) * 2,
                3: (_f16(s2),) * 2, 4: (_f16(zo),) * 2, 5: (_f16(1.0 / so),) * 2}
        overrides = [regs] * len(launches)
        n = out_t.n_elements
        if n % 2:
            def cpu_tail(values, out):
                a = float(values[op.inputs[0]].reshape(-1)[-1])
                b = float(values[op.inputs[1]].reshape(-1)[-1])
                v = np.float32((a - z1) * np.float32(s1) + (b - z2) * np.float32(s2))
                r = math.copysign(math.floor(abs(v / np.float32(so)) + 0.5), v) + zo
                out[-1] = min(max(r, p.act_min), p.act_max)

    enc = encode_programs(launches, memory, overrides)
    needs_clamp = p.do_activation and code in ("conv_2d", "depthwise_conv_2d", "fully_connected", "add") \
        and not plan.kernel.endswith("mvp-opt")
    wide_conv1d = plan.kernel == "conv_2d/mvp-conv1d"
    reference = _reference_step(graph, op) if wide_conv1d else None
    xi = op.inputs[0]
    x2i = op.inputs[1] if code == "add" else None
    yi = op.outputs[0]
    in_base, in_n = memory.base["input"], x_t.n_elements
    out_base, out_n = memory.base["output"], out_t.n_elements
    in2_base = memory.base.get("input2")
    fused, ties_even = FUSED_MAC, STORE_TIES_EVEN

    def run(values):
        mem = base_mem.copy()
        mem[in_base:in_base + in_n] = values[xi].reshape(-1)
        if x2i is not None:
            mem[in2_base:in2_base + in_n] = values[x2i].reshape(-1)
        if reference is not None:
            # Conv1D edge columns run on the CPU: start from the reference result there
            reference.run(values)
            mem[out_base:out_base + out_n] = values[yi].reshape(-1)
        run_programs(mem, *enc, fused, ties_even)
        out = mem[out_base:out_base + out_n]
        if cpu_tail is not None:
            cpu_tail(values, out)
        if needs_clamp:
            out = np.clip(out, p.act_min, p.act_max)
        values[yi] = out.astype(np.int8).reshape(out_t.shape)

    return Step(op.index, code, "mvp", run, {"mvp_kernel": plan.kernel, "programs": len(launches)})


@njit(cache=True)
def avg_pool_fp16(x, fh, fw, sh, sw, pad_h, pad_w, out_h, out_w, act_min, act_max, do_act,
                  ties_even):
    """The generic MVP average pool, arithmetic as its programs do it (FACTS section 3): per
    output pixel and channel, acc += x * 2^-15 over the window rows then columns (binary16),
    then acc * fp16(2^15 / count), the optional CLIP2A, and the saturating int8 store."""
    n, h, w, ch = x.shape
    out = np.empty((n, out_h, out_w, ch), dtype=np.int8)
    s = 2.0 ** -15
    for b in range(n):
        for oy in range(out_h):
            y0 = oy * sh - pad_h
            fy0 = max(0, -y0)
            fy1 = min(fh, h - y0)
            for ox in range(out_w):
                x0 = ox * sw - pad_w
                fx0 = max(0, -x0)
                fx1 = min(fw, w - x0)
                scale = F.round_f16(32768.0 / ((fy1 - fy0) * (fx1 - fx0)))
                for c in range(ch):
                    acc = 0.0
                    for fy in range(fy0, fy1):
                        for fx in range(fx0, fx1):
                            acc = F.round_f16(x[b, y0 + fy, x0 + fx, c] * s + acc)
                    v = F.round_f16(acc * scale)
                    if do_act:
                        v = min(max(v, float(act_min)), float(act_max))
                    q = F.to_int8_saturating(v) if ties_even else F.to_int8_saturating_away(v)
                    out[b, oy, ox, c] = q
    return out


def _avg_pool_generic_step(graph: Graph, op: Operator, plan):
    """The generic average-pool path, executed from its arithmetic rather than its programs:
    the program model's generic pooling programs do not yet walk the window per output row."""
    from simulator import mvp_kernels
    from simulator.emulator import Step
    p = mvp_kernels.layer_params(graph, op)
    out_t = graph.op_outputs(op)[0]
    xi, yi = op.inputs[0], op.outputs[0]
    ties_even = STORE_TIES_EVEN

    def run(values):
        values[yi] = avg_pool_fp16(values[xi], p.fh, p.fw, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                                   p.h_out, p.w_out, p.act_min, p.act_max, p.do_activation,
                                   ties_even).reshape(out_t.shape)
    return Step(op.index, op.opcode, "mvp", run,
                {"mvp_kernel": plan.kernel, "programs": plan.n_programs, "executed_as": "fp16 kernel"})
