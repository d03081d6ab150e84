"""The TFLM tensor arena: what the vendor reports as "Runtime Memory Size", and why.

An arena holds two things: the planned "head" (activations and kernels' scratch buffers, placed
by `allocation.plan_greedy` over `live_ranges`) and the persistent "tail" (the interpreter's own
structures, each operator's builtin options and kernel data, the input/output tensors), which
grows down from the arena's end, each allocation aligned down to its alignment.

The vendor's number is not measured on the MCU: MLTK loads the model on an x86-64 host, in its
TFLM build (MVP kernels, or the reference kernels with the CMSIS-NN scratch sizes requested), and
1. binary-searches the smallest 16-byte-aligned arena with which the model loads (from 2048 bytes
   up, stopping when the bracket is within 128 bytes: the result sits up to ~128 bytes above the
   true minimum, deterministically);
2. adds 256 bytes of headroom;
3. replaces a fixed list of 64-bit structure sizes by their 32-bit ones (its own formula).
Its number is not always a function of the model: a depthwise layer that only the optimized MVP
path can run is put on the MVP or the CMSIS-NN path by stale bytes of each probe's freshly
malloc'd arena (VENDOR_HEAP_WORST_CASE, _prepare_reads_stale_memory); such a layer is counted
for the worst case, so `ram_bytes` is never below what the vendor reports for it.
This module replays exactly that: it builds the host (64-bit) tail allocation by allocation, the
head with TFLM's planner, finds the load-time peak, and applies steps 1-3. `ram_bytes` is thus
comparable to the vendor's `runtime_memory_size`; the per-part fields explain it.

Where the numbers come from: the search, headroom and 64->32-bit swap are MLTK's
tflite_micro_model.cc (facts in ../shared/mvp/FACTS.md section 4); the planner and lifetimes are
TFLM's (allocation.py, live_ranges.py); which kernels request which scratch and per-channel
buffers is MLTK's kernel overrides (reference kernels requesting the CMSIS-NN scratch sizes) and
the MVP kernels. The byte sizes of host (x86-64) structures are not published: they were pinned
with single- and few-operator models run through the vendor simulator, which reports its
persistent total and memory plan (see the "fitted" notes). Result: the vendor's number on all
zoo and corpus models (the test in tests/test_memory.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simulator.allocation import ARENA_ALIGNMENT_BYTES, align_up, plan_greedy
from simulator.graph import Graph, Operator
from simulator.live_ranges import plan_requests

# ----------------------------------------------------------------- the vendor's accounting
SEARCH_LOWER_BYTES = 2048            # find_optimal_buffer_size: lower limit
SEARCH_UPPER_BYTES = 1 << 25         # host SRAM_SIZE stand-in; any power of two >= 32 MB gives the same probes
SEARCH_RESOLUTION_BYTES = 128        # stops once upper - lower <= 128
HEADROOM_BYTES = 256                 # "for padding or context.GetTensor()"

# adjust_required_tensor_arena_bytes_from_64bit_to_32bit: (64-bit, 32-bit) bytes it swaps
VENDOR_FIXED_OVERHEAD = (56 * 2 + 72 + 64 + 16 + 16, 28 * 2 + 44 + 32 + 8 + 8)
VENDOR_PER_TENSOR = (24, 12)              # TfLiteEvalTensor, every tensor
VENDOR_PER_OPERATOR = (64, 32)            # NodeAndRegistration
VENDOR_PER_SCRATCH = (8, 4)               # ScratchBufferHandle
VENDOR_PER_IO_TENSOR = (8 + 64, 4 + 32)   # TfLiteTensor* + TfLiteTensor per model input / output
VENDOR_PER_IO_QUANT_TABLE = (24, 12)      # TfLiteAffineQuantization, per input/output with a table
VENDOR_POINTER = (8, 4)                   # per extra pointer in an MVP kernel's OpData, MVP builds only
VENDOR_MVP_EXTRA_POINTERS = {"add": 3, "conv_2d": 7, "depthwise_conv_2d": 7, "fully_connected": 5,
                             "average_pool_2d": 2, "max_pool_2d": 2, "transpose_conv": 8}

# ----------------------------------------------------------------- host (64-bit) TFLM structures
PTR = 8
# allocator objects placed at the arena's end before anything else: the arena allocator, the
# greedy planner, the MicroAllocator, the builtin-data allocator, plus MLTK's context (fitted)
HOST_PROLOGUE_BYTES = 320
SUBGRAPH_ALLOCATIONS_BYTES = 16      # per subgraph
NODE_AND_REGISTRATION_BYTES = 64     # per operator
EVAL_TENSOR_BYTES = 24               # per tensor, constants included
SCRATCH_HANDLE_BYTES = 8             # per scratch-buffer request
TFLITE_TENSOR_BYTES = 64             # persistent TfLiteTensor per model input / output
AFFINE_QUANT_BYTES = 24              # TfLiteAffineQuantization, per quantized input / output
SCRATCH_REQUEST_BYTES = 16           # ScratchBufferRequest, kept in the head while preparing
MAX_SCRATCH_PER_OP = 12              # kMaxScratchBuffersPerOp
ALLOCATION_INFO_BYTES = 32           # per tensor and scratch buffer while planning
PLANNER_PER_BUFFER_BYTES = 40        # greedy planner's working arrays per planned buffer

# builtin option structs as MicroBuiltinDataAllocator stores them: (bytes, alignment); the sizes
# of TFLM's builtin_op_data.h structs at the vendor's pin (tflite-micro 7005d60: TfLiteConvParams
# has 7 ints, quantized_bias_type included: 28; with 24 the zoo's conv models were 16-144 B low in
# the recorder's persistent total; TfLiteTransposeConvParams 20), except (fitted, with the
# vendor's recorder):
# - fully_connected: 24 matches the zoo's FC-heavy models and FC-only chains (the struct is 16);
# - add and sub: 4 (the structs are 8): chains of 1, 3 and 9 FULLY_CONNECTED+ADD (or +SUB) stages
#   take 4 B per stage less of the vendor's persistent total than 8 would, in both builds; the
#   unrolled GRU (4 adds a step) and LSTM (3) were over-counted by it.
BUILTIN_DATA = {
    "conv_2d": (28, 4), "depthwise_conv_2d": (28, 4), "fully_connected": (24, 4),
    "average_pool_2d": (40, 4), "max_pool_2d": (40, 4), "l2_pool_2d": (40, 4),
    "add": (4, 4), "sub": (4, 4), "mul": (4, 4), "div": (4, 4), "softmax": (4, 4),
    "reshape": (36, 4), "concatenation": (8, 4), "mean": (1, 1), "sum": (1, 1),
    "reduce_max": (1, 1), "reduce_min": (1, 1), "reduce_prod": (1, 1), "strided_slice": (24, 4),
    "pack": (8, 4), "unpack": (8, 4), "leaky_relu": (4, 4), "squeeze": (36, 4),
    "transpose_conv": (20, 4), "resize_bilinear": (2, 1), "resize_nearest_neighbor": (2, 1),
    "split": (4, 4), "split_v": (4, 4), "gather": (8, 4), "shape": (4, 4), "cast": (0, 1),
    "svdf": (12, 4), "depth_to_space": (4, 4), "space_to_depth": (4, 4), "arg_max": (4, 4),
    "arg_min": (4, 4), "hard_swish": (0, 1), "expand_dims": (0, 1), "batch_matmul": (4, 4),
}

# Kernel data (OpData) that each kernel's Init allocates, 16-byte aligned; reference kernels of
# the MLTK host build (the "none" accelerator, and CPU-only ops of MVP builds). Fitted on
# single-operator models; entries for operators never probed are estimates from the struct.
# add: TFLM's OpDataAdd at the vendor's pin (60 B, 64 allocated; the reference builds of the
# MobileNetV2s with residual adds in tests/data/corpus2 and the zoo were 256-384 B low with 48).
# sub: OpDataSub at the pin (tflite-micro 7005d60: 52 B, 64 allocated; 48 left chains of SUBs
# 16 B per op low). strided_slice: StridedSliceParams at the pin (84 B, 96 allocated; 112 put the
# unrolled GRU's 21 slices, and chains of 1/3/9 slices, 16 B per op above the vendor's total).
# pad: PadParams + output zero point at the pin (56 B, 64 allocated; 48 left the zoo's
# keyword_spotting_mobilenetv2, 4 PADs, 64 B below the recorder's persistent total and its RAM
# 128 B below the worst-case figure). max/average_pool_2d: MLTK's CmisOpDataPooling (TFLM's
# OpDataPooling, 32 B, plus a scratch index: 36 B, 48 allocated; 32 left the zoo's pooling models
# 16 B per pool below).
REFERENCE_OPDATA_BYTES = {
    "conv_2d": 80, "depthwise_conv_2d": 80, "fully_connected": 32, "average_pool_2d": 48,
    "max_pool_2d": 48, "add": 64, "sub": 64, "mul": 48, "softmax": 80, "relu": 32, "relu6": 16,
    "logistic": 16, "tanh": 16, "leaky_relu": 16, "pad": 64, "padv2": 64, "mean": 48, "sum": 48,
    "quantize": 32, "dequantize": 32, "concatenation": 48, "strided_slice": 96,
    "transpose_conv": 80, "hard_swish": 32, "prelu": 48, "squared_difference": 64,
}
# MLTK's concatenation override keeps per-input shape and data tables in a scratch buffer (fitted)
CONCAT_SCRATCH_PER_INPUT_BYTES = 44
# MVP kernels (MLTK's sl_mvp_ml_* TFLM kernels, host build): their OpData (fitted; mul is an MVP
# kernel in MLTK's build as well; add is its struct's x86-64 size: 104 B with the three pointers of
# sli_mvp_ml_add_s8_params_t, 112 allocated, where 96 left the MobileNetV2s 256-384 B low)
MVP_OPDATA_BYTES = {
    "conv_2d": 176, "depthwise_conv_2d": 160, "fully_connected": 128, "add": 112, "mul": 112,
    "average_pool_2d": 96, "max_pool_2d": 96, "transpose_conv": 192,
}


@dataclass
class KernelMemory:
    """What one operator's kernel takes from the arena, on the host build the vendor measures."""
    builtin: tuple[int, int] = (0, 1)                        # (bytes, alignment), parsed options
    init_bytes: list[int] = field(default_factory=list)      # persistent, at Init (16-aligned each)
    prepare_bytes: list[int] = field(default_factory=list)   # persistent, at Prepare (16-aligned)
    scratch_bytes: list[int] = field(default_factory=list)   # planned in the head for this op only

    @property
    def persistent_bytes(self) -> int:
        return sum(align_up(n) for n in self.init_bytes + self.prepare_bytes)


@dataclass
class ArenaPlan:
    ram_bytes: int                 # comparable to the vendor's runtime_memory_size
    planned_bytes: int             # the head: activations + scratch, as TFLM's greedy planner lays it out
    persistent_bytes: int          # the tail, as the vendor counts it (32-bit structure sizes)
    per_layer_bytes: list[int]     # each kernel's own persistent + scratch bytes
    host_tail_bytes: int = 0       # the tail on the vendor's 64-bit host
    host_required_bytes: int = 0   # smallest arena with which the model loads on that host
    searched_bytes: int = 0        # what the vendor's binary search settles on
    n_scratch_buffers: int = 0


# ----------------------------------------------------------------- per-kernel allocations

def _channels(graph: Graph, op: Operator, which: int = 0) -> int:
    t = graph.tensors[op.outputs[which]]
    return t.shape[-1] if t.shape else 1


def _cmsis_conv_scratch(graph: Graph, op: Operator) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size (CMSIS-NN with DSP): 1x1 unit-stride unpadded convs
    with C_in % 4 == 0 need none, the rest an im2col of 2 columns of int16: 4 * C_in * Fh * Fw."""
    x = graph.tensors[op.inputs[0]]
    w = graph.tensors[op.inputs[1]]
    c_in, fh, fw = x.shape[-1], w.shape[1], w.shape[2]
    o = op.options
    padded = o.get("padding") == "same" and (fh > 1 or fw > 1)
    if (fh == 1 and fw == 1 and not padded and o.get("stride_h", 1) == 1
            and o.get("stride_w", 1) == 1 and c_in % 4 == 0):
        return 0
    return 4 * c_in * fh * fw


def _cmsis_depthwise_scratch(graph: Graph, op: Operator) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size: the optimized path (multiplier 1) keeps
    C * Fh * Fw int16; the generic path (multiplier > 1) needs none."""
    x = graph.tensors[op.inputs[0]]
    w = graph.tensors[op.inputs[1]]
    if op.options.get("depth_multiplier", 1) != 1 and w.shape[3] != x.shape[-1]:
        return 0
    return 2 * x.shape[-1] * w.shape[1] * w.shape[2]


def _is_int8(graph: Graph, op: Operator) -> bool:
    return bool(op.inputs) and op.inputs[0] >= 0 and graph.tensors[op.inputs[0]].dtype == "int8"


def reference_kernel_memory(graph: Graph, op: Operator) -> KernelMemory:
    """A TFLM reference kernel in MLTK's host build (which also requests the CMSIS-NN scratch)."""
    code = op.opcode
    k = KernelMemory(builtin=BUILTIN_DATA.get(code, (0, 1)))
    opdata = REFERENCE_OPDATA_BYTES.get(code)
    if opdata:
        k.init_bytes.append(opdata)
    if code in ("conv_2d", "depthwise_conv_2d", "transpose_conv"):
        c = _channels(graph, op)
        # per-channel output multipliers and shifts (int32 each)
        k.prepare_bytes += [4 * c, 4 * c]
        if _is_int8(graph, op) and code == "conv_2d":
            n = _cmsis_conv_scratch(graph, op)
            if n:
                k.scratch_bytes.append(n)
        elif _is_int8(graph, op) and code == "depthwise_conv_2d":
            n = _cmsis_depthwise_scratch(graph, op)
            if n:
                k.scratch_bytes.append(n)
        elif code == "transpose_conv" and graph.tensors[op.inputs[2]].dtype == "int8":
            # inputs are (output shape, filter, data): int32 accumulators for the whole output
            k.scratch_bytes.append(4 * graph.tensors[op.outputs[0]].n_elements)
    elif code == "average_pool_2d" and _is_int8(graph, op):
        # arm_avgpool_s8_get_buffer_size (DSP): one int32 accumulator per channel
        k.scratch_bytes.append(4 * _channels(graph, op))
    elif code in ("mean", "sum"):
        # reduce kernels: an int32 temp accumulator per output element
        k.scratch_bytes.append(4 * graph.tensors[op.outputs[0]].n_elements)
    elif code == "concatenation":
        # MLTK's concatenation (any number of inputs) keeps per-input shape/data tables in a scratch
        n_in = sum(1 for i in op.inputs if i >= 0)
        k.scratch_bytes.append(CONCAT_SCRATCH_PER_INPUT_BYTES * n_in)
    return k


def mvp_kernel_memory(graph: Graph, op: Operator, on_mvp: bool) -> KernelMemory:
    """An operator in MLTK's MVP build: the MVP kernel's OpData always (its Init runs first), then
    what its Prepare allocates. Where Prepare rejects a layer, what stays allocated depends on how
    far it got (each case pinned on the vendor simulator):
    - conv_2d (dilation, strides over the hardware limits) hands over to the reference conv:
      its per-channel buffers and CMSIS-NN scratch, no fp16 constants;
    - depthwise_conv_2d whose verdict depends on stale arena bytes (only the optimized path fits,
      see mvp_checks.check_depthwise_prepare_alignment) is counted on the CMSIS-NN path, the worst
      case of the vendor's load (_prepare_reads_stale_memory, VENDOR_HEAP_WORST_CASE);
    - depthwise_conv_2d that a hardware limit refuses (a stride over the MVP's, no path fits)
      hands over to the CMSIS-NN kernel before its fp16 constants: per-channel multipliers and
      shifts and the CMSIS-NN scratch (the stride-2 depthwise layers of tests/data/corpus2);
    - fully_connected (input depth over the limit) keeps only its OpData."""
    code = op.opcode
    if code not in MVP_OPDATA_BYTES:
        return reference_kernel_memory(graph, op)
    k = KernelMemory(builtin=BUILTIN_DATA.get(code, (0, 1)), init_bytes=[MVP_OPDATA_BYTES[code]])
    # VENDOR_HEAP_WORST_CASE: counted on the CMSIS-NN path even where it runs on the MVP
    cmsis_depthwise = code == "depthwise_conv_2d" and (
        _prepare_reads_stale_memory(graph, op) or not on_mvp and _limit_refuses_depthwise(graph, op))
    if cmsis_depthwise or not on_mvp and code in ("conv_2d", "transpose_conv"):
        ref = reference_kernel_memory(graph, op)
        k.prepare_bytes, k.scratch_bytes = ref.prepare_bytes, ref.scratch_bytes
        return k
    if code in ("conv_2d", "depthwise_conv_2d", "transpose_conv"):
        c = _channels(graph, op)
        k.prepare_bytes += [2 * c, 2 * c]       # fp16 bias (even without a bias) and fp16 scaler
    elif code == "fully_connected" and on_mvp:
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        if bias >= 0:
            k.prepare_bytes.append(2 * graph.tensors[bias].n_elements)   # fp16 bias
    if on_mvp and code == "conv_2d":
        x = graph.tensors[op.inputs[0]]
        k.scratch_bytes.append(2 * x.n_elements)    # SL_MVP_OPTIMIZE_SPEED: fp16 copy of the input
    elif on_mvp and code == "transpose_conv":
        k.scratch_bytes.append(2 * graph.tensors[op.outputs[0]].n_elements)   # fp16 accumulators
    return k


def _prepare_reads_stale_memory(graph: Graph, op: Operator) -> bool:
    """VENDOR_HEAP_WORST_CASE: a depthwise layer that only the optimized path can run (the one
    mvp_checks.check_depthwise_prepare_alignment flags). Its Prepare asks the optimized path's dry run
    before it has set the OpData's buffer pointers, so the verdict reads whatever the arena's bytes
    were: the bias/scaler pointers' alignment and, for channel pairs, all five pointers'. The vendor
    mallocs a fresh arena for every probe of its size search, so the bytes are the heap's leftovers:
    with every allocated byte 0x00 (MALLOC_PERTURB_=255) the layer loads on the MVP with its fp16
    constants; with 0x01 (=254) it loads on the CMSIS-NN path (per-channel multipliers and shifts,
    its scratch) in every probe; an ordinary run lands anywhere between (dw_s2_24x24x96: 70448,
    72492, and runs of 70576 and 72368). The arena is counted for the worst case, the CMSIS-NN
    path's, so that the number is never below the vendor's whatever its heap held."""
    from simulator.mvp_plan import depthwise_paths, layer_params
    return depthwise_paths(layer_params(graph, op)).prepare_depends_on_alignment


def _limit_refuses_depthwise(graph: Graph, op: Operator) -> bool:
    """A hardware-limit check refuses the layer outright (not the vendor simulator's random verdict)."""
    from simulator import mvp_checks
    from simulator.mvp_plan import depthwise_paths, layer_params
    p = layer_params(graph, op)
    return (mvp_checks.first_failure("depthwise_conv_2d", p) is not None or mvp_checks.first_failure(
        "depthwise_conv_2d", p, depthwise_paths(p), needs=mvp_checks.NEEDS_PATHS) is not None)


# ----------------------------------------------------------------- the host arena

class _Tail:
    """The persistent section: grows down from a 16-byte-aligned end."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, n_bytes: int, alignment: int) -> None:
        end = self.used + n_bytes
        self.used = -(-end // alignment) * alignment


def _quant_channels(graph: Graph, index: int) -> int:
    t = graph.tensors[index]
    return len(t.scale) if t.scale is not None else 0


def _vendor_search(required_bytes: int) -> int:
    if required_bytes > SEARCH_UPPER_BYTES:
        # beyond any arena the vendor would search (and any MCU): no search stop to mimic
        return align_up(required_bytes)
    lower, upper, last = SEARCH_LOWER_BYTES, SEARCH_UPPER_BYTES, -1
    while upper - lower > SEARCH_RESOLUTION_BYTES:
        probe = align_up((upper + lower) // 2)
        if probe >= required_bytes:
            last = upper = probe
        else:
            lower = probe + 1
    return last


def _vendor_overhead(graph: Graph, n_scratch: int, mvp_build: bool) -> tuple[int, int]:
    """The (64-bit, 32-bit) totals of the vendor's structure-size swap."""
    n_io = len(graph.inputs) + len(graph.outputs)
    n_tables = sum(1 for i in list(graph.inputs) + list(graph.outputs)
                   if graph.tensors[i].has_quantization_table)
    n_ptr = sum(VENDOR_MVP_EXTRA_POINTERS.get(op.opcode, 0) for op in graph.operators) if mvp_build else 0
    counts = ((VENDOR_FIXED_OVERHEAD, 1), (VENDOR_PER_TENSOR, len(graph.tensors)),
              (VENDOR_PER_OPERATOR, len(graph.operators)), (VENDOR_PER_SCRATCH, n_scratch),
              (VENDOR_PER_IO_TENSOR, n_io), (VENDOR_PER_IO_QUANT_TABLE, n_tables), (VENDOR_POINTER, n_ptr))
    return (sum(s[0] * n for s, n in counts), sum(s[1] * n for s, n in counts))


def plan_arena(graph: Graph, on_mvp: list[bool], mvp_build: bool | None = None) -> ArenaPlan:
    """The arena for `graph`; `on_mvp[i]` says whether operator i runs on the MVP kernel.
    `mvp_build` (default: any layer on the MVP) selects the vendor's MVP build, whose MVP-capable
    operators carry the MVP kernel's data even when they fall back to the CPU."""
    if mvp_build is None:
        mvp_build = any(on_mvp)
    kernels = [mvp_kernel_memory(graph, op, bool(flag)) if mvp_build else reference_kernel_memory(graph, op)
               for op, flag in zip(graph.operators, on_mvp)]
    scratch = [k.scratch_bytes for k in kernels]
    n_scratch = sum(len(s) for s in scratch)

    # the head: activations and scratch buffers
    requests = plan_requests(graph, scratch)
    head = plan_greedy(requests).head_bytes

    # the tail, in the order TFLM allocates it
    tail = _Tail()
    tail.take(HOST_PROLOGUE_BYTES, PTR)
    tail.take(SUBGRAPH_ALLOCATIONS_BYTES * graph.n_subgraphs, PTR)
    tail.take(NODE_AND_REGISTRATION_BYTES * len(graph.operators), PTR)
    tail.take(EVAL_TENSOR_BYTES * len(graph.tensors), PTR)
    for k in kernels:
        if k.builtin[0]:
            tail.take(*k.builtin)
    for k in kernels:
        for n in k.init_bytes:
            tail.take(n, ARENA_ALIGNMENT_BYTES)
    for k in kernels:
        for n in k.prepare_bytes:
            tail.take(n, ARENA_ALIGNMENT_BYTES)
    if n_scratch:
        tail.take(SCRATCH_HANDLE_BYTES * n_scratch, PTR)
    for t in graph.tensors:
        if t.is_variable and t.size_bytes:
            tail.take(t.size_bytes, ARENA_ALIGNMENT_BYTES)
    before_io = tail.used
    for group in (graph.inputs, graph.outputs):
        tail.take(PTR * len(group), ARENA_ALIGNMENT_BYTES)
        for i in group:
            tail.take(TFLITE_TENSOR_BYTES, PTR)
            ch = _quant_channels(graph, i)
            if ch:
                tail.take(AFFINE_QUANT_BYTES, PTR)
                tail.take(4 + 4 * ch, 4)      # zero-point TfLiteIntArray
    host_tail = align_up(tail.used)

    # while planning, the head holds the scratch requests and the planner's working memory
    n_planned = len(requests)
    n_infos = len(graph.tensors) + n_scratch
    planning = (align_up(before_io) + SCRATCH_REQUEST_BYTES * (n_scratch + MAX_SCRATCH_PER_OP) + 16
                + ALLOCATION_INFO_BYTES * n_infos + PLANNER_PER_BUFFER_BYTES * n_planned)
    required = max(head + host_tail, align_up(planning))

    searched = _vendor_search(required)
    o64, o32 = _vendor_overhead(graph, n_scratch, mvp_build)
    ram = searched + HEADROOM_BYTES - o64 + o32
    per_layer = [k.persistent_bytes + sum(align_up(n) for n in k.scratch_bytes) for k in kernels]
    return ArenaPlan(ram_bytes=ram, planned_bytes=head, persistent_bytes=host_tail - o64 + o32,
                     per_layer_bytes=per_layer, host_tail_bytes=host_tail, host_required_bytes=required,
                     searched_bytes=searched, n_scratch_buffers=n_scratch)
