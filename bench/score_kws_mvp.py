"""CPU time of scoring 1,000 validation-sized samples of a DS-CNN (the zoo's keyword_spotting) in
MVP mode with `emulate_batch` (issue 9's goal: under 10 s on one core).

    .venv/bin/python bench/score_kws_mvp.py [--samples 1000] [--model tests/data/zoo/keyword_spotting.tflite]

Prints the CPU seconds of the timing process (`time.process_time`, after a warm-up on 8 samples)
and the load average at the start and end of the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.emulator import draw_inputs, emulate_batch  # noqa: E402
from simulator.tflite_reader import read_model_file  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--model", default=str(ROOT / "tests/data/zoo/keyword_spotting.tflite"))
    ap.add_argument("--accelerator", default="mvp")
    args = ap.parse_args(argv)
    path = Path(args.model)
    g = read_model_file(path)
    xs = np.stack(draw_inputs(g, 0, args.samples))
    data = path.read_bytes()
    emulate_batch(data, xs[:8], args.accelerator)          # warm-up: JIT and compile caches
    load0 = os.getloadavg()[0]
    t = time.process_time()
    emulate_batch(data, xs, args.accelerator)
    cpu_s = time.process_time() - t
    print(f"{path.name} {args.accelerator}: {args.samples} samples in {cpu_s:.2f} CPU s "
          f"({cpu_s / args.samples * 1e3:.2f} ms per sample); load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
