"""Executes MVP programs (`mvp_program.Program`) on data: the MVP half of the emulator.

`plan_layer(graph, op)` asks the MVP program model (`mvp_plan.plan_layer`) what a layer
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

The programs carry everything the MVP needs (registers included); what the kernels do on the
CPU around them (the clamp pass's remainder, the odd ADD/MUL element, Conv1D edge columns) the
plan lists as `cpu_work`, executed here after the programs, following ../shared/mvp/FACTS.md
section 3.
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


def encode_programs(programs: list, memory: Memory):
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

@njit(cache=True)
def conv1d_column(mem, in_base, f_base, b_base, s_base, o_base, has_bias, out_x, w_in, c_in, c_out,
                  fw, stride_w, pad_w, input_offset, output_offset, act_min, act_max):
    """One SAME-padded edge column of a wide Conv1D, computed by the CPU in binary16 as the SDK's
    conv1d_one_column does (float products added into a binary16 accumulator; the result
    truncated, not rounded, to an integer)."""
    x0 = out_x * stride_w - pad_w
    f0 = max(0, -x0)
    f1 = min(fw, w_in - x0)
    for oc in range(c_out):
        acc = 0.0
        for fx in range(f0, f1):
            for ic in range(c_in):
                v = (mem[in_base + (x0 + fx) * c_in + ic] + input_offset) \
                    * mem[f_base + (oc * fw + fx) * c_in + ic] * 2.0 ** -15
                acc = F.round_f16(np.float32(acc + v))
        if has_bias:
            acc = F.round_f16(acc + mem[b_base + oc])
        acc = F.round_f16(acc * mem[s_base + oc])
        r = int(acc) + output_offset
        mem[o_base + out_x * c_out + oc] = min(max(r, act_min), act_max)


def _odd_element(mem, memory: Memory, work: dict) -> None:
    """The odd last element of an MVP ADD or MUL, computed by the CPU (SDK: float32 for ADD,
    a binary16 product for MUL), rounded half away from zero and saturated."""
    f32 = np.float32
    i = work["index"]
    a = int(mem[memory.base["input"] + i]) - work["input_zp"]
    b = int(mem[memory.base["input2"] + i]) - work["input2_zp"]
    if work["kind"] == "add":
        v = f32(f32(a) * f32(work["s1"])) + f32(f32(b) * f32(work["s2"]))
        v = f32(f32(v) * f32(work["multiplier"])) + f32(work["output_zp"])
    else:
        prod = np.float16(a * b)
        v = np.float16(f32(f32(prod) * f32(work["multiplier"])) + f32(work["output_zp"]))
    r = math.copysign(math.floor(abs(float(v)) + 0.5), float(v))
    mem[memory.base["output"] + i] = min(max(r, -128.0), 127.0)


@dataclasses.dataclass
class MvpLayer:
    """One layer compiled for execution: its buffers' layout, its encoded launches, its CPU work."""
    plan: object
    launches: list
    memory: Memory
    base_mem: np.ndarray
    encoded: tuple
    input_ids: tuple
    output_id: int
    output_shape: tuple
    cpu_work: tuple
    column_args: tuple = ()

    def run(self, values: list) -> None:
        mem = self.base_mem.copy()
        for name, ti in zip(("input", "input2"), self.input_ids):
            x = values[ti].reshape(-1)
            b = self.memory.base[name]
            mem[b:b + x.size] = x
        run_programs(mem, *self.encoded, FUSED_MAC, STORE_TIES_EVEN)
        out_b = self.memory.base["output"]
        for work in self.cpu_work:
            if work["op"] == "clamp":
                lo = out_b + work["start"]
                mem[lo:lo + work["count"]] = np.clip(mem[lo:lo + work["count"]], work["min"], work["max"])
            elif work["op"] == "odd_element":
                _odd_element(mem, self.memory, work)
            elif work["op"] == "conv1d_column":
                conv1d_column(mem, *self.column_args[:6], work["out_x"], *self.column_args[6:])
        n = int(np.prod(self.output_shape))
        values[self.output_id] = mem[out_b:out_b + n].astype(np.int8).reshape(self.output_shape)

    def accelerator_cycles(self, timing) -> int:
        """The cycles of the launches this layer executes, priced by a timing model."""
        return int(round(sum(timing.program_cycles(pr) for pr in self.launches
                             if timing.counts_kind(pr.kind))))


def compile_layer(graph: Graph, op: Operator, plan) -> MvpLayer:
    """Lays out the buffers the layer's programs address and encodes every launch."""
    from simulator import mvp_plan
    launches = list(plan.launches())
    ins = graph.op_inputs(op)
    out_t = graph.op_outputs(op)[0]
    code = op.opcode
    x_t = ins[2] if code == "transpose_conv" else ins[0]
    has_weights = code in ("conv_2d", "depthwise_conv_2d", "fully_connected", "transpose_conv")
    consts = mvp_plan.prepare_constants(graph, op) if has_weights else {}

    sizes = {"input": (x_t.n_elements, 1), "output": (out_t.n_elements, 1), "zero": (4, 2)}
    input_ids = (op.inputs[2],) if code == "transpose_conv" else (op.inputs[0],)
    if code in ("add", "mul"):
        sizes["input2"] = (ins[1].n_elements, 1)
        input_ids = (op.inputs[0], op.inputs[1])
    if has_weights:
        sizes["filter"] = (ins[1].n_elements, 1)
        for name in ("bias", "scaler"):
            if name in consts:
                sizes[name] = (2 * consts[name].size, 2)
    if plan.scratch_bytes:
        sizes["scratch"] = (plan.scratch_bytes, 2)
    memory = Memory(sizes)
    base_mem = np.zeros(memory.size)
    if has_weights:
        w = ins[1].data.astype(np.float64).reshape(-1)
        memory.view(base_mem, "filter", w.size)[:] = w
        for name in ("bias", "scaler"):
            if name in consts:
                v = consts[name].astype(np.float64).reshape(-1)
                memory.view(base_mem, name, v.size)[:] = v
    column_args: tuple = ()
    if any(wk["op"] == "conv1d_column" for wk in plan.cpu_work):
        p = mvp_plan.layer_params(graph, op)
        column_args = (memory.base["input"], memory.base["filter"], memory.base.get("bias", 0),
                       memory.base["scaler"], memory.base["output"], "bias" in consts,
                       p.w_in, p.c_in, p.c_out, p.fw, p.stride_w, p.pad_w, -p.input_zp, p.output_zp,
                       p.act_min, p.act_max)
    return MvpLayer(plan, launches, memory, base_mem, encode_programs(launches, memory), input_ids,
                    op.outputs[0], tuple(out_t.shape), tuple(plan.cpu_work), column_args)


def plan_layer(graph: Graph, op: Operator):
    """An emulator Step running the layer's MVP programs, or None for a layer the MVP does not
    run (it falls back to the reference kernels)."""
    from simulator import mvp_plan
    from simulator.emulator import Step
    plan = mvp_plan.plan_layer(graph, op)
    if not plan.runs_on_mvp or not plan.programs:
        return None
    layer = compile_layer(graph, op, plan)
    return Step(op.index, op.opcode, "mvp", layer.run,
                {"mvp_kernel": plan.kernel, "programs": len(layer.launches)}, mvp=layer)
