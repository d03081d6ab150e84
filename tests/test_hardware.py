"""The hardware data has one home (simulator/hardware/*.json, read by simulator/hardware.py) and
every module reads it there: no literal copy of the board's numbers in package code."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from simulator import hardware
from simulator.hardware import DEVICE, MVP

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("simulator", "device_agents", "orchestrator")

# The numbers a module would have to copy to know the board (tests may state them, code may not).
BOARD_NUMBERS = {78_000_000: "the clock", 262_144: "RAM bytes", 1_572_864: "flash bytes",
                 65504: "the fp16 maximum", 2047: "the MVP stride maximum"}


def test_the_loader_reads_the_json():
    raw = json.loads((ROOT / "simulator" / "hardware" / "efr32xg24.json").read_text())
    assert (DEVICE.clock_hz, DEVICE.ram_bytes, DEVICE.flash_bytes) == (78_000_000, 262_144, 1_572_864)
    assert (DEVICE.clock_hz, DEVICE.ram_bytes, DEVICE.flash_bytes) == (
        raw["clock_hz"], raw["ram_bytes"], raw["flash_bytes"])
    assert (MVP.dim_size_max, MVP.dim_stride_min, MVP.dim_stride_max, MVP.loop_iterations_max) == (
        1024, -2048, 2047, 1024)
    assert (MVP.n_arrays, MVP.n_loops, MVP.n_instructions, MVP.n_registers, MVP.fp16_max) == (5, 8, 8, 8, 65504.0)
    assert MVP.basetypes == ("uint8", "int8", "binary16") == tuple(raw["mvp"]["basetypes"])
    assert hardware.ACCELERATORS == ("mvp", "none")


def test_every_module_takes_the_numbers_from_the_loader():
    from device_agents.virtual_board import BOARD_KINDS
    from orchestrator import board
    from orchestrator.cli import build_parser
    from orchestrator.sweep_file import TargetSpec
    from simulator import fp16, mvp_checks, mvp_program, record

    assert record.CLOCK_HZ_DEFAULT == TargetSpec().clock_hz == DEVICE.clock_hz
    assert build_parser().parse_args(["profile", "m.tflite"]).clock_hz == DEVICE.clock_hz
    for kind in BOARD_KINDS.values():
        assert (kind.clock_hz, kind.ram_bytes, kind.flash_bytes) == (
            DEVICE.clock_hz, DEVICE.ram_bytes, DEVICE.flash_bytes)
    assert board.too_large(DEVICE.flash_bytes, DEVICE.ram_bytes) is None
    assert board.too_large(DEVICE.flash_bytes + 1, DEVICE.ram_bytes + 1) == (
        "too large for the board: RAM 262145 B > 262144 B (256 KB), flash 1572865 B > 1572864 B (1536 KB)")
    assert fp16.F16_MAX == mvp_checks.FP16_MAX == MVP.fp16_max
    assert (mvp_checks.MAX_COLUMN_LENGTH, mvp_checks.MAX_STRIDE) == (MVP.dim_size_max, MVP.dim_stride_max)
    assert mvp_program.BASETYPES == MVP.basetypes


def _numbers(tree: ast.AST):
    """Every number the source spells, and every product of two spelled numbers (256 * 1024)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            yield node.lineno, node.value
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)
              and all(isinstance(s, ast.Constant) and type(s.value) in (int, float)
                      for s in (node.left, node.right))):
            yield node.lineno, node.left.value * node.right.value


def test_no_package_module_copies_a_board_number():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for line, value in _numbers(tree):
                if value in BOARD_NUMBERS:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {value} ({BOARD_NUMBERS[value]})")
    assert found == [], "read these from simulator.hardware:\n" + "\n".join(found)
