"""A build worker process: what its TensorFlow import leaves out and freezes, and that it still
builds and can import what it left out. Each test is a fresh interpreter, as a Ray worker is."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MVPFARM_WORKER"}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_warmed_build_worker_skips_kerass_optional_libraries_freezes_its_imports_and_still_builds(tmp_path):
    out = _run(f"""
        import gc, json, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from orchestrator import build
        build.warm_up()
        after_warm_up = {{m: m in sys.modules for m in build.KERAS_OPTIONAL_IMPORTS}}
        frozen = gc.get_freeze_count()
        spec = build.base_config({{"builtin": "ds_cnn", "kwargs": {{"input_shape": [25, 10, 1], "filters": 8,
                                                                  "n_blocks": 1}}}}, None)
        meta, data = build.build_variant(spec, {{"seed": 0, "n_samples": 2}}, {str(tmp_path / "cache")!r})
        import pandas, sklearn.datasets, matplotlib.pyplot       # a user's builder may want them later
        print(json.dumps({{"after_warm_up": after_warm_up, "frozen": frozen, "ok": meta["ok"],
                          "tfl3": data[4:8] == b"TFL3", "openblas": os.environ.get("OPENBLAS_NUM_THREADS"),
                          "pandas": pandas.DataFrame({{"a": [1, 2]}})["a"].sum().item()}}))
    """, tmp_path)
    assert out["after_warm_up"] == {"sklearn": False, "pandas": False, "matplotlib": False}
    assert out["frozen"] > 100_000          # TensorFlow's and Keras's objects, out of the collector's walks
    assert out["ok"] and out["tfl3"]
    assert out["openblas"] == "1"
    assert out["pandas"] == 3


def test_the_driver_imports_tensorflow_as_usual(tmp_path):
    """Outside a build worker nothing is frozen and nothing is held back after the import."""
    out = _run(f"""
        import gc, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import pandas
        from orchestrator import build
        build._import_tf()
        print(json.dumps({{"frozen": gc.get_freeze_count(), "pandas": sys.modules.get("pandas") is pandas,
                          "sklearn_importable": __import__("importlib").util.find_spec("sklearn") is not None}}))
    """, tmp_path)
    assert out == {"frozen": 0, "pandas": True, "sklearn_importable": True}
