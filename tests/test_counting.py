"""Ops and MACs equal the vendor profiler's, layer for layer, on every model with oracle numbers."""
from __future__ import annotations

import pytest

from simulator.counting import count_ops_macs
from simulator.tflite_reader import read_model_file
from tests.conftest import oracle_ids, oracle_profiles

CASES = oracle_profiles()


@pytest.mark.parametrize("path,acc,oracle", CASES, ids=oracle_ids(CASES))
def test_ops_macs_match_oracle(path, acc, oracle):
    g = read_model_file(path)
    assert len(g.operators) == oracle["summary"]["n_layers"]
    got = [count_ops_macs(g, op) for op in g.operators]
    want = [(L["ops"], L["macs"]) for L in oracle["layers"]]
    assert got == want
