"""The check registry drives planning and the generated list alike; refusals name the specific limit."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import DATA
from simulator import mvp_checks
from simulator.hardware import MVP
from simulator.mvp_plan import LayerParams
from simulator.mvp_plan.pooling import plan_pool
from simulator.profiler import profile_file

PLANNERS = Path(__file__).resolve().parent.parent / "simulator" / "mvp_plan"


def test_planners_ask_the_registry_and_never_a_check_or_the_limits_themselves():
    found = []
    for path in sorted(PLANNERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name.startswith("check_") or name == "violations":
                found.append(f"{path.name}:{node.lineno}: {name}")
            if isinstance(node, ast.Constant) and node.value == mvp_checks.HW_LIMITS:
                found.append(f"{path.name}:{node.lineno}: the vendor's words as a literal")
    assert found == []


def test_docstrings_carry_the_hardware_numbers():
    doc = mvp_checks.check_programs_fit.__doc__
    assert f"1..{MVP.dim_size_max} elements, strides {MVP.dim_stride_min}..{MVP.dim_stride_max}" in doc
    assert all("{" not in c.__doc__ for cs in mvp_checks.CHECKS.values() for c in cs)
    assert [c.__name__ for c in mvp_checks.checks_for("fully_connected")] == [
        "check_int8", "check_fc_weight_zero_point", "check_fc_units", "check_fc_accum_factorizable",
        "check_fc_bias_fp16"]


def test_a_refusal_keeps_the_vendors_words_and_adds_the_limit():
    conv = profile_file(DATA / "corpus" / "conv_wide_row.tflite").layers[0]
    assert conv.reason == "Output vector stride (2560) exceeded (max=2047), Hardware limits exceeded"
    assert conv.note == "output row stride W_out*C_out = 2560 elements > 2047"
    fc = profile_file(DATA / "corpus" / "fc_units1100.tflite").layers[0]
    assert (fc.reason, fc.note) == ("output_shape[1] (1100) > 1024, Hardware limits exceeded", "1100 units > 1024")


def test_a_generic_refusal_names_what_failed_on_each_path():
    p = LayerParams("max_pool_2d", "int8", "int8", (1, 40, 40, 8), output_shape=(1, 1, 1, 8), h_in=40, w_in=40,
                    c_in=8, c_out=8, fh=40, fw=40, stride_h=40, stride_w=40)
    plan = plan_pool(p, is_max=True)
    assert (plan.supported, plan.runs_on_mvp, plan.reason) == (False, False, "Hardware limits exceeded")
    assert plan.limit == ("no pooling path fits: optimized: max pooling has no optimized path; "
                          "generic: window 40x40 = 1600 > 512")
