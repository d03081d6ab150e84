"""Every MVP hardware limit and kernel precondition as a small named check, and the registry that
runs them for the planners and writes the supported-operators list.

A check takes the layer's parameters (`mvp_plan.LayerParams`, plus what the planner built when
the limit is about it: the programs, or the kernel paths) and returns None when the layer passes,
or a `Refusal`: `reason` is what the vendor's tools print for it (reports are compared with the
vendor simulator line by line, so its words are kept, generic ones included), `limit` names the
specific limit in words with the numbers. Its docstring's first line is the rule as listed in
docs/supported_operators.md, with the numbers filled in from the hardware data
(`python -m simulator.mvp_checks` rewrites the list).

`CHECKS` registers each check under the operators it applies to, with what it needs (`NEEDS_*`)
and what failing it does (`REFUSES`: the layer runs on the CPU kernel and is reported
unsupported; `FLAGS`: the vendor simulator reports it unsupported, but the MVP runs it; `ROUTES`:
the kernel quietly hands it to the CPU; `WARNS`: the MVP runs it and the vendor reports it
supported, but it computes something else than TFLite Micro: the layer's note says what). The planners ask the registry (`first_failure`) and never
call a check themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from simulator.hardware import MVP
from simulator.mvp_program import violations

FP16_MAX = MVP.fp16_max
ACCUMULATOR_SCALER = 2.0 ** -15       # the kernels' fixed-point scaling of int32 accumulators into fp16
MAX_COLUMN_LENGTH = MVP.dim_size_max
MAX_STRIDE = MVP.dim_stride_max
FACTOR_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31)
DW_GENERIC_MIN_MACS = 120             # the generic depthwise path's dry run: MACs per program at least
POOL_WINDOW_MAX = 512                 # the generic pooling program: window elements at most
HW_LIMITS = "Hardware limits exceeded"  # what the kernels' is_supported adds after a program builder's own message

# the numbers the docstrings name, from the hardware data and the kernel constants above
NUMBERS = {"dim_max": MVP.dim_size_max, "stride_min": MVP.dim_stride_min, "stride_max": MVP.dim_stride_max,
           "loops": MVP.n_loops, "iterations_max": MVP.loop_iterations_max, "instructions": MVP.n_instructions,
           "fp16_max": f"{MVP.fp16_max:g}", "fc_even_max": 2 * MVP.dim_size_max, "max_prime": FACTOR_PRIMES[-1],
           "dw_min_macs": DW_GENERIC_MIN_MACS, "pool_window_max": POOL_WINDOW_MAX}

# what needs a check has beyond the layer's parameters
NEEDS_PARAMS, NEEDS_PATHS, NEEDS_PROGRAMS = "params", "paths", "programs"
# what failing a check does
REFUSES, FLAGS, ROUTES, WARNS = "refuses", "flags", "routes", "warns"


@dataclass(frozen=True)
class Refusal:
    reason: str        # the vendor's words (what its simulator and firmware print)
    limit: str         # the specific limit that failed, in words, with the numbers
    check: str = ""    # the check's name


def factorize(number: int, max_factor: int = MAX_COLUMN_LENGTH) -> tuple[int, int] | None:
    """(n, m) with n*m == number and both <= max_factor, peeling primes <= 31 off m the way the
    SDK does; None when that fails."""
    a, b = 1, number
    while b > max_factor or a > max_factor:
        for f in FACTOR_PRIMES:
            if b % f == 0:
                a, b = a * f, b // f
                break
        else:
            return None
    return a, b


def over(what: str, value: int, limit: int) -> str | None:
    """'WHAT = value > limit' when value exceeds limit, else None: how a path names its problem."""
    return f"{what} = {value} > {limit}" if value > limit else None


def first(*problems: str | None) -> str | None:
    """The first problem that is one (None when none is)."""
    return next((x for x in problems if x is not None), None)


def programs_violation(programs) -> str | None:
    """The first MVP encoding limit that one of [(Program, count)] breaks, in words, or None."""
    for program, _ in programs:
        found = violations(program)
        if found:
            return f"a {program.kind} program breaks the MVP's limits: {found[0]}"
    return None


def _refusal(reason: str, limit: str | None = None) -> Refusal:
    return Refusal(reason, limit or reason)


# ---------------------------------------------------------------- every kernel

def check_int8(p) -> Refusal | None:
    """Input and output tensors are int8 (the MVP kernels run int8 only; float32 layers use the reference kernels)."""
    if p.input_dtype != "int8":
        return _refusal(f"the MVP runs int8 only: input is {p.input_dtype}")
    if p.output_dtype != "int8":
        return _refusal(f"the MVP runs int8 only: output is {p.output_dtype}")
    return None


def check_programs_fit(p, programs) -> Refusal | None:
    """Every program the layer compiles to fits the MVP: array dims 1..{dim_max} elements, strides {stride_min}..{stride_max}, at most {loops} loops of 1..{iterations_max} iterations and {instructions} instructions."""
    if not programs:
        return _refusal(HW_LIMITS, "no MVP program covers the layer (its width does not split into chunks "
                                   f"whose rows are at most {MAX_STRIDE} elements)")
    problem = programs_violation(programs)
    return _refusal(HW_LIMITS, problem) if problem else None


# ---------------------------------------------------------------- conv_2d

def check_conv_dilation(p) -> Refusal | None:
    """conv_2d: dilation 1 in both directions."""
    if p.dilation_h != 1 or p.dilation_w != 1:
        return _refusal(f"Dilation not supported, {HW_LIMITS}",
                        f"dilation {p.dilation_h}x{p.dilation_w}: the MVP's conv_2d kernel needs dilation 1")
    return None


def check_conv_prescale_stride(p) -> Refusal | None:
    """conv_2d: one input row (W_in * C_in elements, halved when C_in is even) is at most {stride_max} elements (the fp16 input pre-scaling program walks rows with it; a wide Conv1D pre-scales width chunks instead)."""
    stride = p.w_in * p.c_in // (2 if p.c_in % 2 == 0 else 1)
    if stride > MAX_STRIDE and not p.is_wide_conv1d:
        # the vendor prints the assertion's source text, limit macro expanded
        return _refusal(f"Assertion failed: input_stride_dim0 <= (int)((0xFFF0000UL >> (16+1))), {HW_LIMITS}",
                        f"input row stride W_in*C_in{' / 2' if p.c_in % 2 == 0 else ''} = {stride} elements "
                        f"> {MAX_STRIDE}")
    return None


def check_conv_output_stride(p) -> Refusal | None:
    """conv_2d: one output row (W_out * C_out elements) is at most {stride_max} elements apart from the next."""
    if p.w_out * p.c_out > MAX_STRIDE and not p.is_wide_conv1d:
        return _refusal(f"Output vector stride ({p.w_out * p.c_out}) exceeded (max={MAX_STRIDE}), {HW_LIMITS}",
                        f"output row stride W_out*C_out = {p.w_out * p.c_out} elements > {MAX_STRIDE}")
    return None


# ---------------------------------------------------------------- depthwise_conv_2d

def check_depthwise_output_stride(p) -> Refusal | None:
    """depthwise_conv_2d: one output row (W_out * C_out elements) is at most {stride_max} elements apart from the next (checked before either path is tried)."""
    if p.w_out * p.c_out > MAX_STRIDE:
        return _refusal(f"output_stride[3] ({p.w_out * p.c_out}) > {MAX_STRIDE}, {HW_LIMITS}",
                        f"output row stride W_out*C_out = {p.w_out * p.c_out} elements > {MAX_STRIDE}")
    return None


DW_GENERIC_STRIDE_ASSERTION = "Assertion failed: (unsigned)strides[i] <= ((0xFFF0000UL >> (16+1)))"


def check_depthwise_generic_row_stride(p, paths) -> Refusal | None:
    """depthwise_conv_2d on the generic path (chosen when H_in*W_in > 4*Fh*Fw*C or the multiplier is not 1): the input stride between output rows, stride_h * W_in * C_in elements, is at most {stride_max} (the 12-bit stride field of an MVP array dimension; the kernel asserts it before it folds any dimension)."""
    stride = p.stride_h * p.w_in * p.c_in
    if not paths.opt_considered and stride > MAX_STRIDE:
        # the vendor prints the assertion's source text, limit macro expanded
        return _refusal(f"{DW_GENERIC_STRIDE_ASSERTION}, {HW_LIMITS}",
                        f"generic path: input stride between output rows stride_h*W_in*C_in = "
                        f"{p.stride_h}*{p.w_in}*{p.c_in} = {stride} elements > {MAX_STRIDE}")
    return None


def check_depthwise_path(p, paths) -> Refusal | None:
    """depthwise_conv_2d: the optimized path (dilation 1, multiplier 1, chosen when H_in*W_in <= 4*Fh*Fw*C) or the generic path (1 batch, at least {dw_min_macs} MACs per program) can be programmed."""
    if not paths.opt_feasible and not paths.generic_feasible:
        return _refusal(HW_LIMITS, f"no depthwise path fits: optimized: {paths.opt_problem}; "
                                   f"generic: {paths.generic_problem}")
    return None


def check_depthwise_prepare_alignment(p, paths) -> Refusal | None:
    """depthwise_conv_2d (vendor simulator only): a layer that only the optimized path can run is rejected at random: the kernel checks bias/scaler pointer alignment before it has set those pointers, so the verdict depends on leftover memory. It still runs on the MVP when accepted, and on the board."""
    if paths.prepare_depends_on_alignment:
        return _refusal(HW_LIMITS, "only the optimized path fits (generic: "
                                   f"{paths.generic_problem}), and the vendor simulator's Prepare checks its "
                                   "unset bias/scaler pointers: it runs on the MVP")
    return None


# ---------------------------------------------------------------- fully_connected

def check_fc_weight_zero_point(p) -> Refusal | None:
    """fully_connected: weight zero point 0 (the TFLite int8 quantization spec)."""
    if p.weight_zero_point != 0:
        return _refusal("Null weight_offset", f"weight zero point {p.weight_zero_point}: must be 0")
    return None


def check_fc_units(p) -> Refusal | None:
    """fully_connected: at most {dim_max} units (output_shape[1]) and 1..{dim_max} batches when the input fits one program (depth <= {dim_max}, or <= {fc_even_max} if even)."""
    if not p.fc_large_input:
        if p.units > MAX_COLUMN_LENGTH:
            # the kernel logs the limit, then its support check fails the program as well
            return _refusal(f"output_shape[1] ({p.units}) > {MAX_COLUMN_LENGTH}, {HW_LIMITS}",
                            f"{p.units} units > {MAX_COLUMN_LENGTH}")
        if not 1 <= p.batches <= MAX_COLUMN_LENGTH:
            return _refusal(HW_LIMITS, f"{p.batches} batches outside 1..{MAX_COLUMN_LENGTH}")
        if p.bias_length > MAX_COLUMN_LENGTH:
            return _refusal(HW_LIMITS, f"bias of {p.bias_length} elements > {MAX_COLUMN_LENGTH}")
    return None


def check_fc_accum_factorizable(p) -> Refusal | None:
    """fully_connected: an input depth over {dim_max} ({fc_even_max} if even) splits into two factors <= {dim_max} using primes <= {max_prime} (the large-input path, one program per output)."""
    if p.fc_large_input and factorize(p.fc_loop_count) is None:
        return _refusal(f"weights_shape[1] ({p.accum}) > {p.fc_max_accum}",
                        f"input depth {p.accum} > {p.fc_max_accum}, and its {p.fc_loop_count} loop iterations "
                        f"do not split into two factors <= {MAX_COLUMN_LENGTH} using primes <= {FACTOR_PRIMES[-1]}")
    return None


def check_fc_bias_fp16(p) -> Refusal | None:
    """fully_connected: every bias * 2^-15 is within the fp16 range (+-{fp16_max})."""
    if p.bias_max_abs * ACCUMULATOR_SCALER > FP16_MAX:
        return _refusal("bias out of fp16 range", f"largest |bias| {p.bias_max_abs:.0f} * 2^-15 = "
                                                  f"{p.bias_max_abs * ACCUMULATOR_SCALER:.6g} > fp16 max {FP16_MAX:g}")
    return None


def check_fc_large_input_flagged(p) -> Refusal | None:
    """fully_connected (vendor simulator only): an input depth over {dim_max} ({fc_even_max} if even) is reported as 'weights_shape[1] (N) > M' even when the large-input path runs it on the MVP (MLTK logs the message on success)."""
    if p.fc_large_input:
        return _refusal(f"weights_shape[1] ({p.accum}) > {p.fc_max_accum}",
                        f"input depth {p.accum} > {p.fc_max_accum}: the large-input path runs it on the MVP, "
                        "one program per output; the vendor simulator reports it unsupported")
    return None


def check_fc_output_2d(p) -> Refusal | None:
    """fully_connected: a 3-D output (keep_num_dims, a Dense layer on a 3-D input, 1 x T x U) runs on the MVP with the vendor's kernel reading batches and units from output dims 0 and 1 (1 and T): it computes T values from input row 0 (weight rows past U read what follows the weights, the bias wraps) and leaves the other T*U - T outputs unwritten, so the board's outputs differ from TFLite Micro's. The vendor reports the layer supported; the emulator follows its program and leaves unwritten outputs at 0. Reshape to 2-D (or Flatten) before the Dense layer to get TFLM's numbers on the MVP."""
    if p.fc_layer_units:
        return _refusal("Dense on a 3-D input: the MVP kernel computes the wrong outputs",
                        f"output {'x'.join(map(str, p.output_shape))}: the MVP kernel computes {p.units} of "
                        f"{p.units * p.fc_layer_units} values (batches {p.batches}, units {p.units} from "
                        f"the output's dims 0 and 1), the rest stay unwritten")
    return None


# ---------------------------------------------------------------- pooling

def check_pool_path(p, paths) -> Refusal | None:
    """average_pool_2d / max_pool_2d: the optimized (per output pixel) or the generic (per channel) program can be built: window <= {pool_window_max} elements, stride_w*C and W_out*C <= {stride_max} elements."""
    if not paths.opt_feasible and not paths.generic_feasible:
        return _refusal(HW_LIMITS, f"no pooling path fits: optimized: {paths.opt_problem}; "
                                   f"generic: {paths.generic_problem}")
    return None


# ---------------------------------------------------------------- add

def check_add_same_shape(p) -> Refusal | None:
    """add, mul: both inputs have the same number of elements (1x1x1xC and C alike: the kernel walks both as flat vectors; broadcasts run on the CPU reference kernel, without a rejection message)."""
    if math.prod(p.input_shape) != math.prod(p.input2_shape or ()):
        return _refusal(f"broadcast {p.opcode} runs on the CPU")
    return None


ALL_KERNELS = "all MVP kernels"

# group -> [check]; a group names the operators its checks apply to ("add, mul"), in the order
# the kernels test them (the first failure is the one the vendor reports)
CHECKS: dict[str, list[Callable]] = {
    ALL_KERNELS: [check_int8, check_programs_fit],
    "conv_2d": [check_conv_dilation, check_conv_prescale_stride, check_conv_output_stride],
    "depthwise_conv_2d": [check_depthwise_output_stride, check_depthwise_generic_row_stride, check_depthwise_path,
                          check_depthwise_prepare_alignment],
    "fully_connected": [check_fc_weight_zero_point, check_fc_units, check_fc_accum_factorizable,
                        check_fc_large_input_flagged, check_fc_bias_fp16, check_fc_output_2d],
    "average_pool_2d, max_pool_2d": [check_pool_path],
    "add, mul": [check_add_same_shape],
}
NEEDS = {check_programs_fit: NEEDS_PROGRAMS, check_depthwise_path: NEEDS_PATHS,
         check_depthwise_generic_row_stride: NEEDS_PATHS,
         check_depthwise_prepare_alignment: NEEDS_PATHS, check_pool_path: NEEDS_PATHS}
EFFECT = {check_depthwise_prepare_alignment: FLAGS, check_fc_large_input_flagged: FLAGS, check_fc_output_2d: WARNS,
          check_add_same_shape: ROUTES}

for _checks in CHECKS.values():
    for _check in _checks:
        _check.__doc__ = _check.__doc__.format(**NUMBERS)


def checks_for(opcode: str, needs: str = NEEDS_PARAMS, effect: str = REFUSES) -> list[Callable]:
    """The registered checks of an operator that need `needs` and have `effect`, in order: those
    of every MVP kernel first."""
    return [c for group, cs in CHECKS.items() if group == ALL_KERNELS or opcode in group.split(", ")
            for c in cs if NEEDS.get(c, NEEDS_PARAMS) == needs and EFFECT.get(c, REFUSES) == effect]


def first_failure(opcode: str, p, built=None, needs: str = NEEDS_PARAMS, effect: str = REFUSES) -> Refusal | None:
    """The first of `opcode`'s registered checks (needing `needs`, with `effect`) that the layer
    fails, or None. `built` is what those checks need beyond the parameters (programs, paths)."""
    for check in checks_for(opcode, needs, effect):
        r = check(p) if needs == NEEDS_PARAMS else check(p, built)
        if r is not None:
            return Refusal(r.reason, r.limit, check.__name__)
    return None


def supported_operators_markdown() -> str:
    """The supported-operators list, one line per check, from the checks' docstrings."""
    lines = [
        "# Operators the MVP runs",
        "",
        "Generated by `python -m simulator.mvp_checks` from the checks in `simulator/mvp_checks.py`;",
        "do not edit by hand. A layer runs on the MVP when every check of its operator passes;",
        "otherwise it falls back to a CPU kernel and the report shows the failing check's reason (the",
        "vendor's words) and, in the layer's note, the specific limit with its numbers.",
        "Operators without an MVP kernel (softmax, reshape, quantize, ...) always run on the CPU.",
        "",
    ]
    for group, checks in CHECKS.items():
        lines.append(f"## {group}")
        lines.append("")
        for check in checks:
            doc = " ".join(check.__doc__.split())
            lines.append(f"- `{check.__name__}`: {doc}")
        lines.append("")
    return "\n".join(lines)


def write_supported_operators(path: str | Path | None = None) -> Path:
    path = Path(path) if path else Path(__file__).resolve().parent.parent / "docs" / "supported_operators.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(supported_operators_markdown())
    return path


if __name__ == "__main__":
    print(write_supported_operators())
