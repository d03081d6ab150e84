"""The whole profile path on mutated real models: a record or one ModelError, never a crash or hang."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from simulator.errors import ModelError
from simulator.profiler import profile_model
from tests.conftest import DATA

MODELS = sorted((DATA / "zoo").glob("*.tflite"))
BYTES = {p: p.read_bytes() for p in MODELS}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), seed=st.integers(0, 2**32 - 1), n_flips=st.integers(1, 16),
       accelerator=st.sampled_from(["mvp", "none"]))
def test_mutated_models_profile_or_fail_cleanly(model, seed, n_flips, accelerator):
    rnd = random.Random(seed)
    b = bytearray(BYTES[model])
    for _ in range(n_flips):
        b[rnd.randrange(8, len(b))] = rnd.randrange(256)
    try:
        rec = profile_model(bytes(b), accelerator=accelerator, name="fuzz")
    except ModelError as e:
        assert str(e).startswith("fuzz")
        return
    assert rec.summary.n_layers == len(rec.layers)
    assert rec.summary.ram_bytes >= 0 and rec.summary.latency_s >= 0
