"""Measure the bracket of the vendor's RAM for the models whose number depends on its heap leftovers.

A depthwise layer that only the optimized MVP path can run is loaded on the MVP or on the CMSIS-NN path depending on
stale bytes in each freshly malloc'd arena of the vendor's size search (simulator/memory.py, VENDOR_HEAP_WORST_CASE).
glibc's MALLOC_PERTURB_ fixes those bytes: 255 fills every allocation with 0x00 (null, aligned pointers: the MVP path in
every probe), 254 with 0x01 (odd pointers: the CMSIS-NN path in every probe). For every model of a data set with such
a layer, this runs ../shared/oracle/mltk_profile.py (MVP build) under both and writes DATA_SET/mltk_heap_bracket.jsonl.
MLTK_PY: the oracle venv's python (default ~/.cache/mltk-oracle/bin/python).

Usage (project venv):
    .venv/bin/python tests/corpus/heap_bracket.py tests/data/corpus2 [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simulator.mvp_plan import depthwise_paths, layer_params  # noqa: E402
from simulator.tflite_reader import read_model_file  # noqa: E402

ORACLE = ROOT.parent / "shared" / "oracle" / "mltk_profile.py"
PERTURB = {"ram_zeroed_heap": "255", "ram_worst_heap": "254"}


def depends_on_heap(path: Path) -> bool:
    g = read_model_file(path)
    return any(op.opcode == "depthwise_conv_2d" and depthwise_paths(layer_params(g, op)).prepare_depends_on_alignment
               for op in g.operators)


def measure(path: Path, perturb: str) -> int:
    py = os.environ.get("MLTK_PY", os.path.expanduser("~/.cache/mltk-oracle/bin/python"))
    env = dict(os.environ, MALLOC_PERTURB_=perturb)
    p = subprocess.run([py, str(ORACLE), str(path), "mvp"], capture_output=True, text=True, timeout=2400, env=env)
    return json.loads(p.stdout.strip().splitlines()[-1])["summary"]["runtime_memory_size"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_set", type=Path)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    out = args.data_set / "mltk_heap_bracket.jsonl"
    old = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    recs = {r["model"]: r for r in old}
    for path in sorted(args.data_set.glob("*.tflite")):
        if (args.only and path.stem not in args.only) or not depends_on_heap(path):
            continue
        recs[path.stem] = {"model": path.stem, "accelerator": "mvp",
                           **{key: measure(path, perturb) for key, perturb in PERTURB.items()}}
        print(json.dumps(recs[path.stem]), flush=True)
    out.write_text("".join(json.dumps(recs[k]) + "\n" for k in sorted(recs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
