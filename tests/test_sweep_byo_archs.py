"""Bring your own model, end to end on every architecture the tips are checked on (the GRU has its
own test, tests/test_sweep_byo.py): Keras's MobileNet, MobileNetV2 and MobileNetV3Small at
96x96x3, a 3-block ResNet, the built-in resnet8, a Conv1D keyword spotter, a SeparableConv2D model
with Rescaling and Dropout and an LSTM keyword spotter, one sweep file each with all seven tips at
one level each (strides at two where the second is the one a model cannot take), run as a user
runs them: `mvpfarm sweep run` with every file on one command line (one Ray connection, TensorFlow
imported once per build worker). Every variant is measured or not applicable with the reason in the
model's own terms; none changes the model's output shape; every run has its report."""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

TIPS = {"input_size": [0.5], "input_dtype": ["float32"], "filters": [0.5], "strides": [1], "kernel_size": [1],
        "dense_units": [0.5], "pooling": ["max"]}
# arch -> (base table, strides levels, {variant: the not-applicable reason's gist}, output shape)
ARCHS = {
    "mobilenet_v1": ('{ builder = "byo_models:mobilenet_v1" }', [1, 2], {
        "strides=2": r"doubling the stride of 'conv_dw_1' \(after 'conv1'\): depthwise convolution 'conv_dw_12': "
                     r"its 2x2 input is smaller than its 3x3 window",
        "dense_units=0.5": r"the model has no Dense layers \(it has 15 Conv2D, 13 DepthwiseConv2D\)"}, [1, 2]),
    "mobilenet_v2": ('{ builder = "byo_models:mobilenet_v2" }', [1, 2], {
        "strides=2": r"'block_13_depthwise': its 2x2 input is smaller than its 3x3 window",
        "dense_units=0.5": r"no hidden Dense layers \(only the output layer 'predictions'\)"}, [1, 2]),
    "mobilenet_v3_small": ('{ builder = "byo_models:mobilenet_v3_small" }', [1, 2], {
        "strides=2": r"'expanded_conv_8_depthwise': its 2x2 input is smaller than its 3x3 window",
        "dense_units=0.5": r"the model has no Dense layers \(it has 25 Conv2D, 11 DepthwiseConv2D\)"}, [1, 2]),
    "resnet3": ('{ builder = "byo_models:resnet3" }', [2], {
        "dense_units=0.5": r"no hidden Dense layers \(only the output layer 'dense'\)"}, [1, 10]),
    "resnet8": ('{ builtin = "resnet8" }', [2], {
        "dense_units=0.5": r"no hidden Dense layers \(only the output layer 'dense'\)"}, [1, 10]),
    "conv1d_kws": ('{ builder = "byo_models:conv1d_kws" }', [2], {}, [1, 12]),
    "sepconv": ('{ builder = "byo_models:sepconv" }', [2], {
        "dense_units=0.5": r"no hidden Dense layers \(only the output layer 'dense'\)"}, [1, 4]),
    "lstm_kws": ('{ builder = "byo_models:lstm_kws" }', [1, 2], {
        "strides=2": r"only 1 place where a stride can double on every path \('conv1d'\), fewer than 2"}, [1, 4]),
}


def sweep_file(arch: str) -> str:
    base, strides, _, _ = ARCHS[arch]
    tips = "\n".join(f"{tip} = {json.dumps(strides if tip == 'strides' else levels)}" for tip, levels in TIPS.items())
    return (f'name = "byo-{arch}"\nbase = {base}\nmode = "one-at-a-time"\n[tips]\n{tips}\n'
            '[[targets]]\nkind = "simulator"\naccelerator = "mvp"\n')


def test_every_architecture_sweeps_with_every_tip(tmp_path):
    shutil.copy(ROOT / "examples" / "byo_models.py", tmp_path)      # the sweep files' folder is searched first
    files = []
    for arch in ARCHS:
        files.append(tmp_path / f"{arch}.toml")
        files[-1].write_text(sweep_file(arch))
    results = tmp_path / "results"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", *map(str, files),
                        "--results", str(results), "--num-cpus", "2"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    con = sqlite3.connect(results / "mvpfarm.sqlite")
    con.row_factory = sqlite3.Row
    for arch, (_, strides, not_applicable, output) in ARCHS.items():
        rows = {r["variant"]: dict(r) for r in con.execute(
            "SELECT m.* FROM measurements m JOIN runs r ON r.run_id = m.run_id WHERE r.name = ?", (f"byo-{arch}",))}
        expected = {"base"} | {f"{t}={lv}" for t, levels in TIPS.items() if t != "strides" for lv in levels} \
            | {f"strides={s}" for s in strides}
        assert set(rows) == expected, arch
        failed = {v: r["error"] for v, r in rows.items() if r["status"] != "measured"}
        assert set(failed) == set(not_applicable), (arch, failed)
        for v, gist in not_applicable.items():
            assert failed[v].startswith("not applicable: ") and re.search(gist, failed[v]), (arch, v, failed[v])
        base = rows["base"]
        for v, r in rows.items():
            if r["status"] != "measured":
                continue
            record = json.loads(r["record_json"])
            assert [o["shape"] for o in record["model"]["outputs"]] == [output], (arch, v)
            assert 0 < r["ram_bytes"] <= 262144 and r["latency_s"] > 0, (arch, v)
        # what the tips are for, measured: half the input shrinks the arena and the time
        assert rows["input_size=0.5"]["ram_bytes"] < base["ram_bytes"], arch
        assert rows["input_size=0.5"]["latency_s"] < 0.8 * base["latency_s"], arch
        run_id = base["run_id"]
        report = (results / run_id / "report.md").read_text()
        assert f"{len(expected) - len(not_applicable)} measured" in p.stdout.split(f"run {run_id}:")[1].splitlines()[0]
        pngs = re.findall(r"\(([\w.-]+\.png)\)", report)
        assert len(pngs) == 3, (arch, pngs)
        for png in pngs:
            assert (results / run_id / png).stat().st_size > 1000, (arch, png)
    # the LSTM went through the unrolled conversion: plain int8 ops over its frames, no fused LSTM
    (record_json,) = con.execute("SELECT m.record_json FROM measurements m JOIN runs r ON r.run_id = m.run_id "
                                 "WHERE r.name = 'byo-lstm_kws' AND m.variant = 'base'").fetchone()
    opcodes = [L["opcode"] for L in json.loads(record_json)["layers"]]
    assert "unidirectional_sequence_lstm" not in opcodes and opcodes.count("fully_connected") > 8
