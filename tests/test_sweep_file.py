"""Sweep files: the example runs as it is; mistakes get one line naming the key, exit 2, no work."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cli, sweep_file
from orchestrator.variants import expand

ROOT = Path(__file__).resolve().parents[1]
GOOD = """
name = "t"
base = { builtin = "ds_cnn", kwargs = { filters = 8 } }
mode = "one-at-a-time"
[tips]
filters = [0.5]
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""


def test_example_sweep_parses_and_expands():
    sweep = sweep_file.load(ROOT / "examples" / "kws-tips.toml")
    assert sweep.name == "kws-tips" and sweep.base["builtin"] == "ds_cnn"
    assert [t.key for t in sweep.targets] == ["simulator/mvp/board"]
    ids = [v.id for v in expand(sweep.tips, sweep.mode)]
    assert ids == ["base", "input_size=0.75", "input_size=0.5", "input_dtype=float32", "filters=0.5",
                   "strides=2", "kernel_size=1", "dense_units=0.5", "pooling=max"]
    assert sweep.run_id == f"kws-tips-{sweep.sha256[:10]}"


def test_grid_expands_every_combination():
    vs = expand({"filters": [0.5, 0.25], "pooling": ["max"]}, "grid")
    assert [v.id for v in vs] == ["base", "pooling=max", "filters=0.5", "filters=0.5+pooling=max",
                                  "filters=0.25", "filters=0.25+pooling=max"]
    assert vs[3].tip == "filters+pooling" and vs[3].level == "0.5+max"


@pytest.mark.parametrize("text, key, words", [
    (GOOD.replace("filters = [0.5]", "shrink = [0.5]"), "tips.shrink", "unknown tip"),
    (GOOD.replace("filters = [0.5]", "filters = [0.5, 0]"), "tips.filters[1]", "impossible level"),
    (GOOD.replace("filters = [0.5]", "strides = [1.5]"), "tips.strides[0]", "impossible level"),
    (GOOD.replace("filters = [0.5]", 'pooling = ["median"]'), "tips.pooling[0]", "impossible level"),
    (GOOD.replace('base = { builtin = "ds_cnn", kwargs = { filters = 8 } }', ""), "base", "missing"),
    (GOOD.replace('"ds_cnn"', '"vgg16"'), "base.builtin", "unknown base"),
    (GOOD.replace("filters = 8", "width = 8"), "base.kwargs.width", "not a parameter of ds_cnn"),
    (GOOD.replace('kind = "simulator"', 'kind = "fpga"'), "targets[0].kind", "unknown target"),
    (GOOD.replace('accelerator = "mvp"', 'accelerator = "npu"'), "targets[0].accelerator", "unknown accelerator"),
    (GOOD.replace('mode = "one-at-a-time"', 'mode = "random"'), "mode", "not a mode"),
    ("extra = 1\n" + GOOD, "extra", "unknown key"),
    (GOOD.replace("[tips]", "[tips"), None, "not valid TOML"),
])
def test_bad_sweep_file_gets_one_line_and_exit_2_before_any_work(tmp_path, capsys, text, key, words):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    results = tmp_path / "results"
    with pytest.raises(sweep_file.SweepFileError) as e:
        sweep_file.load(f)
    assert words in str(e.value) and "\n" not in str(e.value)
    if key:
        assert f": {key}: " in str(e.value)

    assert cli.main(["sweep", "run", str(f), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mvpfarm: error: ") and words in err
    assert not results.exists()          # nothing started: no table, no Ray, no build


def test_cli_exit_status_and_no_traceback_in_a_real_process(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("filters = [0.5]", "dropout = [0.5]"))
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(f), "--results",
                        str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"mvpfarm: error: {f}: tips.dropout: unknown tip (known: input_size, input_dtype, filters, strides, "
        "kernel_size, dense_units, pooling)"]
    assert p.stdout == ""


def test_missing_file_and_builder_module(tmp_path):
    with pytest.raises(sweep_file.SweepFileError, match="cannot read"):
        sweep_file.load(tmp_path / "nope.toml")
    f = tmp_path / "b.toml"
    f.write_text('base = { builder = "no_such_pkg.models:make" }\n')
    with pytest.raises(sweep_file.SweepFileError, match=r"base.builder: module 'no_such_pkg.models' not found"):
        sweep_file.load(f)
    (tmp_path / "mymodels.py").write_text("def make(width=4):\n    pass\n")
    f.write_text('base = { builder = "mymodels:make", kwargs = { width = 2 } }\n[tips]\nfilters = [0.5]\n')
    sweep = sweep_file.load(f)
    assert sweep.base["builder"] == "mymodels:make" and sweep.base["search_path"] == [str(tmp_path.resolve())]
