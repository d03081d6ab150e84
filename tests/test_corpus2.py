"""The bring-your-own-model corpus (tests/data/corpus2/, built by tests/corpus/make_corpus2.py) against the oracle.

The generic oracle tests (test_counting, test_memory, test_mvp_cycles, test_mvp_support) cover it too; this file holds
the corpus's own, tighter bounds, per model and for `mvp` and `none`: RAM within 0.5% of the vendor's (or 128
bytes, its search step) and never more than 128 bytes below it; accelerator cycles (`vendor-sim`) within 0.5%;
flash, ops, MACs and layer count equal; emulated outputs identical to the oracle's in reference mode, and in MVP mode
at least 99.9% of elements identical with none more than one step off.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator.emulator import emulate_file
from simulator.profiler import profile_file

CORPUS = Path(__file__).parent / "data" / "corpus2"
sys.path.insert(0, str(Path(__file__).parent / "corpus"))
import make_corpus2  # noqa: E402  (the builder: model list)

RAM_SEARCH_STEP_BYTES = 128


def _jsonl(name: str) -> list[dict]:
    path = CORPUS / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


PROFILES = [(r["model"], r["accelerator"], r["result"]) for r in _jsonl("mltk_sim.jsonl") if "summary" in r["result"]]
OUTPUTS = [r for r in _jsonl("mltk_outputs.jsonl") if "results" in r]


def test_corpus_is_complete():
    """At least 40 models; each one on disk as built, with oracle numbers for both builds, or kept apart with the
    reason the oracle cannot take it."""
    built = {m.name for m in make_corpus2.MODELS if not m.oracle_crash}
    on_disk = {p.stem for p in CORPUS.glob("*.tflite")}
    assert len(built) >= 40 and on_disk == built
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    for p in CORPUS.glob("**/*.tflite"):
        assert manifest["files"][str(p.relative_to(CORPUS))] == hashlib.sha256(p.read_bytes()).hexdigest()
    profiled = {(m, a) for m, a, _ in PROFILES}
    assert profiled == {(n, a) for n in built for a in ("mvp", "none")}
    ran = {(r["model"].removesuffix(".tflite"), r["accelerator"]) for r in OUTPUTS}
    assert ran == {(n, a) for n in built for a in ("mvp", "none")}
    for m in make_corpus2.MODELS:
        assert (CORPUS / make_corpus2.CRASHES_SUBDIR / f"{m.name}.tflite").exists() == bool(m.oracle_crash)


@pytest.mark.parametrize("model,acc,oracle", PROFILES, ids=[f"{m}-{a}" for m, a, _ in PROFILES])
def test_profile_equals_the_oracle(model, acc, oracle):
    record = profile_file(CORPUS / f"{model}.tflite", accelerator=acc, timing="vendor-sim")
    s, want = record.summary, oracle["summary"]
    assert (s.flash_bytes, s.ops, s.macs, s.n_layers) == (want["tflite_size"], want["ops"], want["macs"],
                                                          want["n_layers"])
    ram = want["runtime_memory_size"]
    assert s.ram_bytes >= ram - RAM_SEARCH_STEP_BYTES, (s.ram_bytes, ram)
    assert abs(s.ram_bytes - ram) <= max(RAM_SEARCH_STEP_BYTES, 0.005 * ram), (s.ram_bytes, ram)
    if acc == "mvp":
        cycles = want.get("accelerator_cycles") or 0
        assert abs(s.accelerator_cycles - cycles) <= 0.005 * cycles, (s.accelerator_cycles, cycles)
        # per layer: on the MVP exactly where the oracle counts accelerator cycles
        on_mvp = [L.accelerator_cycles > 0 for L in record.layers]
        assert on_mvp == [L.get("accelerator_cycles", 0) > 0 for L in oracle["layers"]]


@pytest.mark.parametrize("record", OUTPUTS, ids=[f"{r['model']}-{r['accelerator']}" for r in OUTPUTS])
def test_emulated_outputs_match_the_oracle(record):
    mine = emulate_file(CORPUS / record["model"], record["accelerator"], record["seed"], len(record["results"]))
    same = total = 0
    worst = 0.0
    for want, got in zip(record["results"], mine["results"]):
        assert got["input_sha1"] == want["input_sha1"]
        w, g = np.asarray(want["output"], dtype=np.float64), np.asarray(got["output"], dtype=np.float64)
        same, total = same + int((w == g).sum()), total + w.size
        worst = max(worst, float(np.abs(w - g).max())) if w.size else worst
    if record["accelerator"] == "none":
        assert same == total
    else:
        assert same >= 0.999 * total and worst <= 1.0, (same, total, worst)
