"""The real nightly suite (suites/nightly.toml) end to end on the command line: a TensorFlow-built
sweep and the zoo models on the simulator, and virtual boards; accepted once, then passing."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "nightly.toml"


def _nightly(results: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "nightly", "--suite", str(SUITE),
                           "--results", str(results), "--num-cpus", "2", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_real_suite_accepted_then_passes(tmp_path):
    results = tmp_path / "results"
    first = _nightly(results, "--update-baseline", "--junit", str(tmp_path / "ci" / "junit.xml"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "ACCEPTED against no baseline" in first.stdout
    assert "2 virtual board(s)" in first.stdout
    second = _nightly(results)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    line = second.stdout.splitlines()[0]
    assert "PASSED against nightly-" in line and "REGRESSED" not in second.stdout
    night = results / "nightly" / line.split()[1].rstrip(":")
    junit = ET.parse(night / "junit.xml").getroot()
    cases = list(junit.iter("testcase"))
    names = {c.get("name") for c in cases}
    # the sweep's variants on both simulator targets, the zoo on three targets and on the boards
    assert "base/simulator/mvp/board" in names and "filters=0.5/simulator/mvp/vendor-sim" in names
    assert "keyword_spotting/board/brd2601b" in names and "image_example1/simulator/none/board" in names
    assert not any(c.find("failure") is not None for c in cases)
    assert (tmp_path / "ci" / "junit.xml").is_file()
    for family in ("memory", "time", "counts"):
        assert (night / f"trend_{family}.png").read_bytes()[:4] == b"\x89PNG"
    report = (night / "report.md").read_text()
    assert "## Regressed\n\n(none)" in report and "noise" in report
