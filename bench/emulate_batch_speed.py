"""Per-sample time of `emulate_batch` against TensorFlow Lite's interpreter and one-at-a-time
emulation, in one run.

    .venv/bin/python bench/emulate_batch_speed.py [MODEL_DIR ...] [--batch 256] [--mvp-batch 64]
        [--trials 2] [--modes none,mvp] [--only NAME ...] [--baseline REV] [--json FILE]

For every model of the directories (default: the zoo, corpus and corpus2 under tests/data), or
those whose file name contains an `--only` string: `emulate_batch` on `--batch` seeded inputs in
`none` mode and on the first `--mvp-batch` of them in `mvp` mode (the MVP interpreter costs
~100x more per sample; its per-sample time barely moves past 64); TensorFlow Lite's interpreter
(XNNPACK, one thread) on the `--batch` inputs one invoke each (a batch-1 model takes no batch);
one-at-a-time emulation with this checkout (`CompiledModel.run` per sample) and,
with `--baseline`, with the emulator of git revision REV (extracted with `git archive`, timed in a
subprocess: "today's" emulator before the batch path). Times are CPU seconds of the timing
process (`time.process_time`: the machine's other load does not count), after a warm-up; the
trials of all peers are interleaved and the median taken. BLAS runs one thread (the emulator
limits it; OPENBLAS_NUM_THREADS=1 here too), and so do ONNX Runtime's int8 products
(`simulator.int_matmul`: intra_op_num_threads=1), as XNNPACK does. The batch outputs are checked
against one-at-a-time outputs (same bits) on the first samples: a difference stops the run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["OPENBLAS_NUM_THREADS"] = "1"      # before numpy loads BLAS: one thread, as XNNPACK's

from simulator.emulator import compile_model, draw_inputs, emulate_batch  # noqa: E402
from simulator.tflite_reader import read_model_file  # noqa: E402
from bench.emulate_speed import xnnpack_interpreter  # noqa: E402

BASELINE_TIMER = r"""
import sys, time, json
import numpy as np
sys.path.insert(0, sys.argv[1])
from simulator.emulator import compile_model, draw_inputs
from simulator.tflite_reader import read_model_file
g = read_model_file(sys.argv[2]); acc = sys.argv[3]; n = int(sys.argv[4]); trials = int(sys.argv[5])
cm = compile_model(g, acc)
xs = draw_inputs(g, 0, n)
cm.run([xs[0]])
out = []
for _ in range(trials):
    t = time.process_time()
    for x in xs:
        cm.run([x])
    out.append((time.process_time() - t) / n)
print(json.dumps(out))
"""


def cpu_per_sample(fn, n: int) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) / n


def baseline_tree(rev: str) -> Path:
    """The simulator package of git revision `rev`, extracted into a temporary directory."""
    tmp = Path(tempfile.mkdtemp(prefix="emu-baseline-"))
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "simulator"], check=True,
                          capture_output=True).stdout
    tar = tmp / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as tf:
        tf.extractall(tmp, filter="data")
    return tmp


def time_baseline(tree: Path, path: Path, accelerator: str, n: int, trials: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", BASELINE_TIMER, str(tree), str(path), accelerator, str(n),
                          str(trials)], capture_output=True, text=True, timeout=3600)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return []


def xnnpack(path: Path):
    found = xnnpack_interpreter(path)
    if found is None:
        return None
    interp, d = found

    def run(xs):
        for x in xs:
            interp.set_tensor(d["index"], x.reshape(d["shape"]).astype(d["dtype"]))
            interp.invoke()
    return run


def bench_model(path: Path, batches: dict[str, int], trials: int, one_at_a_time_n: int,
                tree: Path | None) -> dict:
    g = read_model_file(path)
    data = path.read_bytes()
    batch = batches.get("none", max(batches.values()))
    xs = np.stack(draw_inputs(g, 0, max(batch, *batches.values())))
    row: dict = {"model": path.name, "dir": path.parent.name}
    runs = {}
    for acc, n in batches.items():
        cm = compile_model(g, acc)
        few = xs[:one_at_a_time_n]
        got = emulate_batch(data, xs[:n], acc)
        for k in range(len(few)):   # the batch path's promise, checked on the timed inputs
            one = cm.run([few[k]])
            for y, y1 in zip(got if isinstance(got, list) else [got], one):
                assert y[k].tobytes() == y1.reshape(y[k].shape).tobytes(), (path.name, acc, k)
        runs[f"batch_{acc}"] = (lambda acc=acc, n=n: emulate_batch(data, xs[:n], acc), n)
        runs[f"one_{acc}"] = (lambda cm=cm, few=few: [cm.run([x]) for x in few], len(few))
    interp = xnnpack(path)
    if interp is not None:
        interp(xs[:2])
        runs["xnnpack"] = (lambda: interp(xs[:batch]), batch)
    for fn, _ in runs.values():                 # warm-up: per-batch-size buffers, JIT, caches
        fn()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(trials):                     # interleaved trials
        for k, (fn, n) in runs.items():
            samples[k].append(cpu_per_sample(fn, n))
    for k, v in samples.items():
        row[f"{k}_s"] = statistics.median(v)
    if tree is not None:
        for acc in batches:
            v = time_baseline(tree, path, acc, one_at_a_time_n, trials)
            row[f"baseline_one_{acc}_s"] = statistics.median(v) if v else None
    return row


def gmean(values) -> float | None:
    v = [x for x in values if x]
    return float(np.exp(np.mean(np.log(v)))) if v else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=[str(ROOT / "tests/data" / d) for d in ("zoo", "corpus", "corpus2")])
    ap.add_argument("--batch", type=int, default=256, help="samples per emulate_batch call in none mode")
    ap.add_argument("--mvp-batch", type=int, default=64, help="samples per emulate_batch call in mvp mode")
    ap.add_argument("--modes", default="none,mvp", help="emulator modes, comma separated")
    ap.add_argument("--only", nargs="*", help="only models whose file name contains one of these")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--one-at-a-time", type=int, default=4, help="samples for the one-at-a-time peers")
    ap.add_argument("--baseline", help="git revision of 'today's' emulator, timed one sample at a time")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    tree = baseline_tree(args.baseline) if args.baseline else None
    paths = [p for d in args.dirs for p in sorted(Path(d).glob("*.tflite"))
             if not args.only or any(o in p.name for o in args.only)]
    batches = {m: (args.mvp_batch if m == "mvp" else args.batch) for m in args.modes.split(",")}
    ms = lambda s: "         -" if s is None else f"{s * 1e3:10.3f}"  # noqa: E731
    cols = {"batch_none_s": "batch-none", "xnnpack_s": "XNNPACK", "one_none_s": "1by1-none",
            "baseline_one_none_s": "base-none", "batch_mvp_s": "batch-mvp", "one_mvp_s": "1by1-mvp",
            "baseline_one_mvp_s": "base-mvp"}
    print(f"{'model':30s} " + " ".join(f"{c:>10s}" for c in cols.values()) + "   (CPU ms per sample)")
    rows = []
    load_start = os.getloadavg()[0]
    t_start = time.time()
    for path in paths:
        r = bench_model(path, batches, args.trials, args.one_at_a_time, tree)
        rows.append(r)
        print(f"{path.name[:30]:30s} " + " ".join(ms(r.get(c)) for c in cols), flush=True)
    started = time.time() - t_start

    def ratio(a, b, d=None):
        return gmean([r[a] / r[b] for r in rows if r.get(a) and r.get(b) and d in (None, r["dir"])])
    summary = {
        "models": len(rows), "batch": batches, "wall_s": round(started, 1),
        "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "xnnpack_over_batch_none": ratio("xnnpack_s", "batch_none_s"),
        "one_none_over_batch_none": ratio("one_none_s", "batch_none_s"),
        "one_mvp_over_batch_mvp": ratio("one_mvp_s", "batch_mvp_s"),
        "baseline_one_none_over_batch_none": ratio("baseline_one_none_s", "batch_none_s"),
        "baseline_one_mvp_over_batch_mvp": ratio("baseline_one_mvp_s", "batch_mvp_s"),
        "models_none_at_least_xnnpack": sum(1 for r in rows if r.get("xnnpack_s") and r.get("batch_none_s")
                                            and r["batch_none_s"] <= r["xnnpack_s"]),
        "xnnpack_over_batch_none_per_dir": {d: ratio("xnnpack_s", "batch_none_s", d)
                                            for d in dict.fromkeys(r["dir"] for r in rows)},
    }
    print("geometric means (>1: batch faster):", json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
