"""The wheel is the product: built with `python -m build`, installed (not editable) into a fresh
venv outside the checkout, it profiles a model, emulates one, and runs a small sweep on the
simulator and a virtual board that writes its report, reading only the data inside the wheel.

The fresh venv gets mvpfarm from the wheel alone (`pip install --no-deps`); its third-party
dependencies (TensorFlow, Ray, ...) are borrowed from the test's own environment through a path
entry (.pth) rather than installed again, which would cost minutes of unpacking in CI. A path
entry is not a site directory: the checkout's editable-install hook in that environment is never
run, so no module can come from the checkout (checked: the modules' files are the venv's).
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from simulator.emulator import emulate_file
from simulator.profiler import profile_file

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "zoo" / "tflite_micro_speech.tflite"
RUNTIME_DATA = ["simulator/hardware/efr32xg24.json", "simulator/hardware/cortex_m33_cpu.json",
                "simulator/timing_models/board.json", "simulator/timing_models/vendor-sim.json",
                "device_agents/data/device_reports.json"]
SWEEP = """
name = "wheel-check"
base = { builtin = "ds_cnn", kwargs = { input_shape = [25, 10, 1], filters = 16, n_blocks = 2 } }
[tips]
filters = [0.5]
[[targets]]
kind = "simulator"
[[targets]]
kind = "board"
virtual = 1
repeats = 1
warmup = 0
"""


def _run(cmd, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_the_wheel_works_installed_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    src = tmp_path / "src"          # built from a copy: the build writes build/ and *.egg-info beside its source
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name if src.exists() else (src.mkdir() or src / name))
    for package in ("simulator", "device_agents", "orchestrator"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", src],
         tmp_path, env)
    wheel, = (tmp_path / "dist").glob("mvpfarm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(RUNTIME_DATA) <= names
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert "License-Expression: Apache-2.0" in metadata.decode().splitlines()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)
    venv_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                          env).stdout.strip())
    (venv_site / "_mvpfarm_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = _run([py, "-c", "import simulator, device_agents, orchestrator; print(simulator.__file__, "
                  "device_agents.__file__, orchestrator.__file__)"], tmp_path, env).stdout.split()
    assert all(Path(w).is_relative_to(venv_site) for w in where), where

    mvpfarm = venv / "bin" / "mvpfarm"
    record = json.loads(_run([mvpfarm, "profile", MODEL, "--format", "json"], tmp_path, env).stdout)
    here = profile_file(MODEL)
    assert (record["summary"]["ram_bytes"], record["summary"]["latency_s"]) == \
        (here.summary.ram_bytes, here.summary.latency_s)
    emulated = json.loads(_run([mvpfarm, "emulate", MODEL, "--count", "1", "--format", "json"], tmp_path,
                               env).stdout)
    assert emulated["results"] == emulate_file(MODEL, accelerator="mvp", seed=0, count=1)["results"]

    (tmp_path / "sweep.toml").write_text(SWEEP)
    _run([mvpfarm, "sweep", "run", "sweep.toml", "--results", "results", "--num-cpus", "2", "--quiet"],
         tmp_path, env)
    report, = (tmp_path / "results").glob("wheel-check-*/report.md")
    text = report.read_text()
    assert "filters=0.5" in text and (report.parent / "report.html").is_file()
    export = _run([mvpfarm, "results", "export", "latest", "--format", "json", "--results", "results",
                   "--output", "-"], tmp_path, env).stdout
    rows = json.loads(export)
    assert {(r["variant"], r["source"], r["status"]) for r in rows} == \
        {(v, s, "measured") for v in ("base", "filters=0.5") for s in ("simulator", "device")}
