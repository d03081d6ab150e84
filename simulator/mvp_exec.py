"""Executes MVP programs (`mvp_program.Program`) on data: the MVP half of the emulator.

`compile_step(graph, op)` asks the MVP program model (`mvp_plan.plan_layer`) what a layer
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
from simulator.emulation_step import Step
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
(A_BASE, A_OFF, A_UNIT, A_TYPE, A_CPLX, A_S0, A_S1, A_S2, A_T0, A_T1, A_T2, A_VALID, A_SHARED) = range(13)
N_A = 13
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
def _slot(arrays, k, a, idx, lane):
    """Memory slot of the current element of array a of program k (lane 1 = imaginary half).
    (Scalar indexing throughout the interpreter: an array view per access would cost a
    reference-count update each, more than the arithmetic.)"""
    e = idx[a, 0] * arrays[k, a, A_T0] + idx[a, 1] * arrays[k, a, A_T1] + idx[a, 2] * arrays[k, a, A_T2]
    elem_bytes = (2 if arrays[k, a, A_TYPE] == 2 else 1) * (2 if arrays[k, a, A_CPLX] else 1)
    addr = arrays[k, a, A_OFF] + e * elem_bytes
    return arrays[k, a, A_BASE] + addr // arrays[k, a, A_UNIT] + lane


@njit(cache=True, inline="always")
def _incr(arrays, k, a, idx, dim):
    idx[a, dim] += 1
    if idx[a, dim] >= arrays[k, a, A_S0 + dim]:
        idx[a, dim] = 0


@njit(cache=True, inline="always")
def _load(mem, shared, arrays, k, a, slot, regs, reg, lane):
    """One lane of an array's current element into a register lane, for every sample."""
    if arrays[k, a, A_SHARED]:
        v = np.float64(shared[slot])
        for b in range(regs.shape[2]):
            regs[reg, lane, b] = v
    else:
        for b in range(regs.shape[2]):
            regs[reg, lane, b] = mem[slot, b]


@njit(cache=True)
def run_batch(mem, shared, regs0, arrays, loops, n_loops, instrs, n_instrs, fused, ties_even):
    """Runs programs k = 0..K-1 in order over a batch of samples: `mem` [slots, batch] holds
    each sample's own buffers (modified in place), `shared` [slots] the read-only buffers every
    sample reads (filter, bias, scaler; arrays flagged A_SHARED). The programs' control flow
    does not depend on the data, so each instruction is decoded once and applied to the whole
    batch in an inner loop: every sample gets exactly the arithmetic it would get alone. ALU
    results go through (re, im) temporaries first: z may be one of the operands."""
    n_prog = regs0.shape[0]
    nb = mem.shape[1]
    regs = np.zeros((8, 2, nb))
    t_re = np.zeros(nb)
    t_im = np.zeros(nb)
    idx = np.zeros((5, 3), dtype=np.int64)
    counters = np.zeros(8, dtype=np.int64)
    for k in range(n_prog):
        for r in range(8):
            for b in range(nb):
                regs[r, 0, b] = regs0[k, r, 0]
                regs[r, 1, b] = regs0[k, r, 1]
        idx[:, :] = 0
        nl = n_loops[k]
        for j in range(nl):
            counters[j] = loops[k, j, L_N]
        pc = 0
        ni = n_instrs[k]

        while pc < ni:
            # loads
            for ld in range(2):
                reg = instrs[k, pc, I_L0R + 3 * ld]
                if reg < 0:
                    continue
                a = instrs[k, pc, I_L0A + 3 * ld]
                _load(mem, shared, arrays, k, a, _slot(arrays, k, a, idx, 0), regs, reg, 0)
                if arrays[k, a, A_CPLX]:
                    _load(mem, shared, arrays, k, a, _slot(arrays, k, a, idx, 1), regs, reg, 1)
                else:
                    for b in range(nb):
                        regs[reg, 1, b] = 0.0
                m = instrs[k, pc, I_L0M + 3 * ld]
                for d in range(3):
                    if (m >> d) & 1:
                        _incr(arrays, k, a, idx, d)
            # ALU
            op = instrs[k, pc, I_OP]
            z = instrs[k, pc, I_Z]
            x = instrs[k, pc, I_X]
            y = instrs[k, pc, I_Y]
            aa = instrs[k, pc, I_A]
            write = True
            if op == 1:  # CLEAR
                for b in range(nb):
                    t_re[b] = 0.0
                    t_im[b] = 0.0
            elif op == 2:  # COPY
                for b in range(nb):
                    t_re[b] = regs[aa, 0, b]
                    t_im[b] = regs[aa, 1, b]
            elif op == 3:  # ADDR: fold the two lanes
                for b in range(nb):
                    t_re[b] = F.round_f16(regs[aa, 0, b] + regs[aa, 1, b])
                    t_im[b] = 0.0
            elif op == 4:  # ADDC
                for b in range(nb):
                    t_re[b] = F.round_f16(regs[x, 0, b] + regs[aa, 0, b])
                    t_im[b] = F.round_f16(regs[x, 1, b] + regs[aa, 1, b])
            elif op == 5 or op == 11:  # MAX2A / MAXAC2
                for b in range(nb):
                    t_re[b] = max(regs[x, 0, b], regs[aa, 0, b])
                    t_im[b] = max(regs[x, 1, b], regs[aa, 1, b])
            elif op == 6:  # MULC
                for b in range(nb):
                    xr, xi, yr, yi = regs[x, 0, b], regs[x, 1, b], regs[y, 0, b], regs[y, 1, b]
                    t_re[b] = F.round_f16(F.round_f16(xr * yr) - F.round_f16(xi * yi))
                    t_im[b] = F.round_f16(F.round_f16(xr * yi) + F.round_f16(xi * yr))
            elif op == 7:  # MULR2A
                for b in range(nb):
                    t_re[b] = F.round_f16(regs[x, 0, b] * regs[y, 0, b])
                    t_im[b] = F.round_f16(regs[x, 1, b] * regs[y, 1, b])
            elif op == 8:  # SQRMAGC2
                for b in range(nb):
                    xr, xi = regs[x, 0, b], regs[x, 1, b]
                    t_re[b] = F.round_f16(F.round_f16(xr * xr) + F.round_f16(xi * xi))
                    t_im[b] = 0.0
            elif op == 9:  # MACC: complex x*y + a
                for b in range(nb):
                    xr, xi, yr, yi = regs[x, 0, b], regs[x, 1, b], regs[y, 0, b], regs[y, 1, b]
                    ar, ai = regs[aa, 0, b], regs[aa, 1, b]
                    if yi == 0.0:
                        t_re[b] = _mac(xr, yr, ar, fused)
                        t_im[b] = _mac(xi, yr, ai, fused)
                    else:
                        t_re[b] = F.round_f16(F.round_f16(F.round_f16(xr * yr) - F.round_f16(xi * yi)) + ar)
                        t_im[b] = F.round_f16(F.round_f16(F.round_f16(xr * yi) + F.round_f16(xi * yr)) + ai)
            elif op == 10:  # AACC
                for b in range(nb):
                    t_re[b] = F.round_f16(F.round_f16(regs[x, 0, b] + regs[y, 0, b]) + regs[aa, 0, b])
                    t_im[b] = F.round_f16(F.round_f16(regs[x, 1, b] + regs[y, 1, b]) + regs[aa, 1, b])
            elif op == 12:  # CLIP2A: min(max(a, x), y) per lane
                for b in range(nb):
                    t_re[b] = min(max(regs[aa, 0, b], regs[x, 0, b]), regs[y, 0, b])
                    t_im[b] = min(max(regs[aa, 1, b], regs[x, 1, b]), regs[y, 1, b])
            elif op == 13:  # MACR2A
                for b in range(nb):
                    t_re[b] = _mac(regs[x, 0, b], regs[y, 0, b], regs[aa, 0, b], fused)
                    t_im[b] = _mac(regs[x, 1, b], regs[y, 1, b], regs[aa, 1, b], fused)
            else:  # NOOP
                write = False
            if write:
                if z < 0:
                    z = 7   # an op without a destination: as register index -1 always addressed
                for b in range(nb):
                    regs[z, 0, b] = t_re[b]
                    regs[z, 1, b] = t_im[b]
            # store
            sr = instrs[k, pc, I_SR]
            if sr >= 0:
                a = instrs[k, pc, I_SA]
                lanes = 2 if arrays[k, a, A_CPLX] else 1
                kind = arrays[k, a, A_TYPE]
                for lane in range(lanes):
                    slot = _slot(arrays, k, a, idx, lane)
                    if kind == 2:
                        for b in range(nb):
                            mem[slot, b] = regs[sr, lane, b]
                    elif ties_even:
                        for b in range(nb):
                            mem[slot, b] = F.to_int8_saturating(regs[sr, lane, b])
                    else:
                        for b in range(nb):
                            mem[slot, b] = F.to_int8_saturating_away(regs[sr, lane, b])
                    if kind == 0:   # uint8 stores are not used by the kernels
                        for b in range(nb):
                            mem[slot, b] = min(max(mem[slot, b] + 128, 0), 255) - 128
                m = instrs[k, pc, I_SM]
                for d in range(3):
                    if (m >> d) & 1:
                        _incr(arrays, k, a, idx, d)
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
                            _incr(arrays, k, a, idx, d)
            if not jumped:
                if instrs[k, pc, I_END]:
                    break
                pc += 1

    return mem


def run_programs(mem, regs0, arrays, loops, n_loops, instrs, n_instrs, fused, ties_even):
    """One sample: runs the programs over `mem` (one flat array holding every buffer, none
    shared), modified in place and returned."""
    batch = np.ascontiguousarray(mem, dtype=np.float32).reshape(-1, 1)
    run_batch(batch, np.zeros(1, dtype=np.float32), regs0, arrays, loops, n_loops, instrs, n_instrs,
              fused, ties_even)
    mem[:] = batch[:, 0]
    return mem


# ----------------------------------------------------------------------------- encoding

class Memory:
    """Lays the named buffers of one layer out in two float32 arrays: the samples' own buffers
    (one row per slot, a column per sample) and the `shared` read-only ones every sample reads
    (the layer's constants), so a batch does not copy the weights once per sample."""

    def __init__(self, sizes: dict[str, tuple[int, int]], shared: tuple[str, ...] = ()):
        # name -> (byte size, unit bytes per slot)
        self.base: dict[str, int] = {}
        self.unit: dict[str, int] = {}
        self.shared = frozenset(shared)
        totals = {False: 0, True: 0}
        for name, (nbytes, unit) in sizes.items():
            where = name in self.shared
            self.base[name] = totals[where]
            self.unit[name] = unit
            totals[where] += (nbytes + unit - 1) // unit + 2   # slack: a complex read of the last element
        self.size = totals[False]
        self.shared_size = totals[True]

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
                                arr.dims[0].stride, arr.dims[1].stride, arr.dims[2].stride, 1,
                                int(arr.buffer in memory.shared))
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
                if prog.arrays[ins.store.array].buffer in memory.shared:
                    raise ValueError(f"{prog.kind}: a store to the read-only buffer "
                                     f"{prog.arrays[ins.store.array].buffer!r}")
                rec[I_SR] = ins.store.register
                rec[I_SA] = ins.store.array
                rec[I_SM] = sum(1 << d for d in ins.store.incr_dims)
            rec[I_END] = int(ins.endprog)
    return regs, arrays, loops, n_loops, instrs, n_instrs


# ----------------------------------------------------------------------------- layers

@njit(cache=True)
def conv1d_column(mem, shared, in_base, f_base, b_base, s_base, o_base, has_bias, out_x, w_in, c_in,
                  c_out, fw, stride_w, pad_w, input_offset, output_offset, act_min, act_max):
    """One SAME-padded edge column of a wide Conv1D, computed by the CPU in binary16 as the SDK's
    conv1d_one_column does (float products added into a binary16 accumulator; the result
    truncated, not rounded, to an integer); for every sample of the batch (mem's columns)."""
    x0 = out_x * stride_w - pad_w
    f0 = max(0, -x0)
    f1 = min(fw, w_in - x0)
    for b in range(mem.shape[1]):
        for oc in range(c_out):
            acc = 0.0
            for fx in range(f0, f1):
                for ic in range(c_in):
                    v = (mem[in_base + (x0 + fx) * c_in + ic, b] + input_offset) \
                        * shared[f_base + (oc * fw + fx) * c_in + ic] * 2.0 ** -15
                    acc = F.round_f16(np.float32(acc + v))
            if has_bias:
                acc = F.round_f16(acc + shared[b_base + oc])
            acc = F.round_f16(acc * shared[s_base + oc])
            r = int(acc) + output_offset
            mem[o_base + out_x * c_out + oc, b] = min(max(r, act_min), act_max)


def _odd_element(mem, memory: Memory, work: dict) -> None:
    """The odd last element of an MVP ADD or MUL, computed by the CPU (SDK: float32 for ADD,
    a binary16 product for MUL), rounded half away from zero and saturated; for every sample
    (numpy's float32 and float16 operations round as the scalar C code does)."""
    f32 = np.float32
    i = work["index"]
    a = mem[memory.base["input"] + i].astype(np.int64) - work["input_zp"]
    b = mem[memory.base["input2"] + i].astype(np.int64) - work["input2_zp"]
    if work["kind"] == "add":
        v = (a.astype(f32) * f32(work["s1"])) + (b.astype(f32) * f32(work["s2"]))
        v = (v * f32(work["multiplier"])) + f32(work["output_zp"])
    else:
        prod = (a * b).astype(np.float64).astype(np.float16)
        v = ((prod.astype(f32) * f32(work["multiplier"])) + f32(work["output_zp"])).astype(np.float16)
    v = v.astype(np.float64)
    r = np.copysign(np.floor(np.abs(v) + 0.5), v)
    mem[memory.base["output"] + i] = np.clip(r, -128.0, 127.0)


@dataclasses.dataclass
class MvpLayer:
    """One layer compiled for execution: its buffers' layout, its encoded launches, its CPU work."""
    plan: object
    launches: list
    memory: Memory
    base_mem: np.ndarray          # the initial contents of a sample's own buffers
    shared_mem: np.ndarray        # the read-only buffers (filter, bias, scaler)
    encoded: tuple
    input_ids: tuple
    output_id: int
    output_shape: tuple
    cpu_work: tuple
    column_args: tuple = ()

    def run(self, values: list) -> None:
        """Runs the layer on values with a leading batch axis (size 1 or the batch's)."""
        ins = [values[ti] for ti in self.input_ids]
        nb = max(x.shape[0] for x in ins)
        mem = np.empty((self.memory.size, nb), dtype=np.float32)
        mem[:] = self.base_mem[:, None]
        for name, x in zip(("input", "input2"), ins):
            x = x.reshape(x.shape[0], -1)
            b = self.memory.base[name]
            mem[b:b + x.shape[1]] = x.T
        run_batch(mem, self.shared_mem, *self.encoded, FUSED_MAC, STORE_TIES_EVEN)
        out_b = self.memory.base["output"]
        for work in self.cpu_work:
            if work["op"] == "clamp":
                lo = out_b + work["start"]
                np.clip(mem[lo:lo + work["count"]], work["min"], work["max"], out=mem[lo:lo + work["count"]])
            elif work["op"] == "odd_element":
                _odd_element(mem, self.memory, work)
            elif work["op"] == "conv1d_column":
                conv1d_column(mem, self.shared_mem, *self.column_args[:6], work["out_x"], *self.column_args[6:])
        n = int(np.prod(self.output_shape))
        values[self.output_id] = mem[out_b:out_b + n].T.astype(np.int8).reshape((nb,) + self.output_shape)

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
        if code == "fully_connected":
            # keep_num_dims: the vendor's program walks T weight rows, past the layer's U when
            # T > U (what follows the weights in flash; zeros here: check_fc_output_2d)
            p = mvp_plan.layer_params(graph, op)
            sizes["filter"] = (max(ins[1].n_elements, p.units * p.accum), 1)
        for name in ("bias", "scaler"):
            if name in consts:
                sizes[name] = (2 * consts[name].size, 2)
    if plan.scratch_bytes:
        sizes["scratch"] = (plan.scratch_bytes, 2)
    memory = Memory(sizes, shared=("filter", "bias", "scaler"))
    base_mem = np.zeros(memory.size, dtype=np.float32)
    shared_mem = np.zeros(max(memory.shared_size, 1), dtype=np.float32)
    if has_weights:
        w = ins[1].data.astype(np.float32).reshape(-1)
        memory.view(shared_mem, "filter", w.size)[:] = w
        for name in ("bias", "scaler"):
            if name in consts:
                v = consts[name].astype(np.float32).reshape(-1)   # binary16 values: exact
                memory.view(shared_mem, name, v.size)[:] = v
    column_args: tuple = ()
    if any(wk["op"] == "conv1d_column" for wk in plan.cpu_work):
        p = mvp_plan.layer_params(graph, op)
        column_args = (memory.base["input"], memory.base["filter"], memory.base.get("bias", 0),
                       memory.base["scaler"], memory.base["output"], "bias" in consts,
                       p.w_in, p.c_in, p.c_out, p.fw, p.stride_w, p.pad_w, -p.input_zp, p.output_zp,
                       p.act_min, p.act_max)
    return MvpLayer(plan, launches, memory, base_mem, shared_mem, encode_programs(launches, memory), input_ids,
                    op.outputs[0], tuple(out_t.shape), tuple(plan.cpu_work), column_args)


def compile_step(graph: Graph, op: Operator):
    """An emulator Step running the layer's MVP programs, or None for a layer the MVP does not
    run (it falls back to the reference kernels)."""
    from simulator import mvp_plan
    plan = mvp_plan.plan_layer(graph, op)
    if not plan.runs_on_mvp or not plan.programs:
        return None
    layer = compile_layer(graph, op, plan)
    return Step(op.index, op.opcode, "mvp", layer.run,
                {"mvp_kernel": plan.kernel, "programs": len(layer.launches)}, mvp=layer)
