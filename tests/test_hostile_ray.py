"""Broken parts around Ray: an address nothing answers is one line and exit 2 (not minutes of
Ray's C++ warnings); TensorFlow's temporary files stay in the run's cache and are removed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_answers_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "t.toml").write_text('name = "t"\nbase = { builtin = "fc_autoencoder" }\n')
    port = _free_port()                  # bound and released: nothing listens there
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=str(ROOT))
    env.pop("RAY_ADDRESS", None)
    # the timeout only guards against the old behaviour (ray.init retrying for minutes)
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", "t.toml", "--results",
                           str(tmp_path / "results"), "--address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"mvpfarm: error: --address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} (Connection refused); "
        "start the head there (ray start --head), or leave out --address (and RAY_ADDRESS) for a local Ray"]
    assert proc.stdout == ""


def test_a_malformed_address_is_refused():
    from orchestrator.fanout import SweepError, probe_address
    with pytest.raises(SweepError, match="--address nohost: not HOST:PORT"):
        probe_address("nohost")


@pytest.mark.slow
def test_tensorflow_temporary_files_go_to_the_cache_and_are_removed(tmp_path):
    """A build worker that ends without Python's exit handlers (as Ray's workers do) leaves no
    autograph file behind, neither in the system's temporary folder nor in the cache."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import os, sys, tempfile
        sys.path.insert(0, {str(ROOT)!r})
        from orchestrator import build
        spec = build.base_config({{"builtin": "ds_cnn", "kwargs": {{"input_shape": [25, 10, 1], "filters": 8,
                                                                  "n_blocks": 1}}}}, None)
        seen = []
        real = build.convert
        def convert(spec, settings):       # look inside while TensorFlow is at work
            out = real(spec, settings)
            seen.extend(os.listdir(tempfile.gettempdir()))
            seen.append(tempfile.gettempdir())
            return out
        build.convert = convert
        meta, data = build.build_variant(spec, {{"seed": 0, "n_samples": 2}}, {str(cache)!r})
        assert meta["ok"] and data[4:8] == b"TFL3", meta
        print(repr(seen), flush=True)
        os._exit(0)                         # like a killed worker: no atexit clean-up
    """)
    env = dict(os.environ, TMPDIR=str(system_tmp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = eval(proc.stdout.strip().splitlines()[-1])
    assert seen[-1].startswith(str(cache / "tmp")), seen          # TensorFlow wrote into the cache
    assert any(name.startswith("__autograph_generated") for name in seen[:-1]), seen
    assert list(system_tmp.iterdir()) == []
    assert [p for p in (cache / "tmp").rglob("*") if p.is_file()] == []
