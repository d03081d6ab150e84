"""Per-inference time of the emulator against its peers, in one run, after warm-up.

    .venv/bin/python bench/emulate_speed.py [MODEL_DIR ...] [--repeat N] [--no-oracle]

Peers: TensorFlow's TFLite interpreter (XNNPACK, 1 thread), TFLite Micro's reference kernels
(the `tflite-micro` PyPI package, optional extra `bench`) and the vendor's simulator (MLTK, in
its own venv at $MLTK_PY, timed inside that process). Prints one row per model and the ratios:
emulator `none` vs TFLM and XNNPACK, emulator `mvp` vs the oracle's `mvp`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.emulator import compile_model, draw_inputs  # noqa: E402
from simulator.tflite_reader import read_model_file  # noqa: E402

ORACLE_TIMER = r"""
import sys, time, json, os
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np
from mltk.core.tflite_micro import TfliteMicro
from mltk.core import TfliteModel
path, acc, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tm = TfliteModel.load_flatbuffer_file(path)
m = TfliteMicro.load_tflite_model(tm, accelerator=None if acc == 'none' else acc)
inp = tm.inputs[0]
rng = np.random.default_rng(0)
x = rng.integers(-128, 128, size=inp.shape, dtype=np.int8) if inp.dtype == np.int8 else rng.random(inp.shape, dtype=np.float32)
m.input(0, value=x); m.invoke()
t = time.perf_counter()
for _ in range(n):
    m.input(0, value=x); m.invoke()
print(json.dumps({'s': (time.perf_counter() - t) / n}))
"""


def per_inference_s(fn, repeat: int) -> float:
    fn()  # warm-up (JIT compilation, allocation)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def time_emulator(path: Path, accelerator: str, repeat: int) -> float:
    g = read_model_file(path)
    cm = compile_model(g, accelerator)
    x = draw_inputs(g, 0, 1)[0]
    return per_inference_s(lambda: cm.run([x]), repeat)


def xnnpack_interpreter(path: Path):
    """TensorFlow Lite's interpreter (its default XNNPACK delegate, one thread) and its input's
    details; None without TensorFlow."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp, interp.get_input_details()[0]


def time_xnnpack(path: Path, repeat: int) -> float | None:
    found = xnnpack_interpreter(path)
    if found is None:
        return None
    interp, d = found
    x = draw_inputs(read_model_file(path), 0, 1)[0].astype(d["dtype"])

    def run():
        interp.set_tensor(d["index"], x)
        interp.invoke()
    return per_inference_s(run, repeat)


def time_tflm(path: Path, repeat: int) -> float | None:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    interp = runtime.Interpreter.from_bytes(path.read_bytes())
    x = draw_inputs(read_model_file(path), 0, 1)[0]

    def run():
        interp.set_input(x, 0)
        interp.invoke()
    return per_inference_s(run, max(1, repeat // 4))


def time_oracle(path: Path, accelerator: str, repeat: int) -> float | None:
    py = os.environ.get("MLTK_PY", str(Path.home() / ".cache/mltk-oracle/bin/python"))
    if not Path(py).exists():
        return None
    try:
        out = subprocess.run([py, "-c", ORACLE_TIMER, str(path), accelerator, str(max(1, repeat // 4))],
                             capture_output=True, text=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])["s"]
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=[str(ROOT / "tests/data/corpus")])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    paths = sorted(p for d in args.dirs for p in Path(d).glob("*.tflite"))
    rows = []
    ms = lambda s: "-" if s is None else f"{s * 1e3:8.3f}"  # noqa: E731
    ratio = lambda a, b: "-" if a is None or b is None or b == 0 else f"{a / b:6.2f}x"  # noqa: E731
    print(f"{'model':34s} {'emu none':>9s} {'TFLM ref':>9s} {'XNNPACK':>9s} {'emu mvp':>9s} "
          f"{'oracle mvp':>10s} | {'TFLM/none':>9s} {'none/XNN':>9s} {'oracle/mvp':>10s}   (ms/inference)")
    for path in paths:
        r = {"model": path.name,
             "emulator_none_s": time_emulator(path, "none", args.repeat),
             "tflm_reference_s": time_tflm(path, args.repeat),
             "xnnpack_s": time_xnnpack(path, args.repeat),
             "emulator_mvp_s": time_emulator(path, "mvp", args.repeat),
             "oracle_mvp_s": None if args.no_oracle else time_oracle(path, "mvp", args.repeat)}
        rows.append(r)
        print(f"{path.name[:34]:34s} {ms(r['emulator_none_s'])} {ms(r['tflm_reference_s'])} "
              f"{ms(r['xnnpack_s'])} {ms(r['emulator_mvp_s'])} {ms(r['oracle_mvp_s']):>10s} | "
              f"{ratio(r['tflm_reference_s'], r['emulator_none_s']):>9s} "
              f"{ratio(r['emulator_none_s'], r['xnnpack_s']):>9s} "
              f"{ratio(r['oracle_mvp_s'], r['emulator_mvp_s']):>10s}", flush=True)

    def gmean(key_a, key_b):
        v = [r[key_a] / r[key_b] for r in rows if r[key_a] and r[key_b]]
        return float(np.exp(np.mean(np.log(v)))) if v else None
    print(f"geometric means: TFLM/emu-none {gmean('tflm_reference_s', 'emulator_none_s')}, "
          f"emu-none/XNNPACK {gmean('emulator_none_s', 'xnnpack_s')}, "
          f"oracle/emu-mvp {gmean('oracle_mvp_s', 'emulator_mvp_s')}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
