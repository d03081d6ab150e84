"""One meaning of "unsupported" for every source: a layer the MVP's kernels refuse, so that it falls
back to the CPU. Not an op without an MVP kernel (softmax), and not a layer the vendor's simulator
flags while its programs run on the MVP (its words stay in the note). The simulator and a board
count the same layers."""
from __future__ import annotations

from pathlib import Path

import pytest

from device_agents.agent import AgentConfig, BoardAgent
from device_agents.virtual_board import VirtualBoard
from simulator.profile_table import mvp_cell
from simulator.profiler import profile_model

DATA = Path(__file__).parent / "data"


def test_a_layer_the_vendor_flags_but_runs_on_the_mvp_is_supported_with_the_vendors_words_in_its_note():
    rec = profile_model((DATA / "zoo" / "tflite_micro_speech.tflite").read_bytes())
    fc, softmax = rec.layers[2], rec.layers[3]
    assert (fc.supported, fc.reason, mvp_cell(fc)) == (True, None, "yes") and fc.accelerator_cycles > 0
    assert '"weights_shape[1] (4000) > 2048"' in fc.note
    assert (softmax.supported, softmax.reason, mvp_cell(softmax)) == (False, None, "cpu")
    assert rec.summary.n_unsupported == 0
    # the depthwise layers the vendor's simulator rejects at random run on the MVP: not unsupported
    mnv2 = profile_model((DATA / "zoo" / "keyword_spotting_mobilenetv2.tflite").read_bytes())
    flagged = [L for L in mnv2.layers if L.note and "Hardware limits exceeded" in L.note]
    assert len(flagged) == 9 and all(L.supported and L.reason is None for L in flagged)
    assert mnv2.summary.n_unsupported == 0


@pytest.mark.parametrize("model", ["zoo/tflite_micro_speech", "zoo/keyword_spotting_mobilenetv2",
                                   "corpus/conv_dilation2", "corpus/fc_units1100"])
def test_the_simulator_and_a_board_count_the_same_unsupported_layers(model, tmp_path):
    data = (DATA / f"{model}.tflite").read_bytes()
    sim = profile_model(data, name=model)
    config = AgentConfig(exchange_timeout_s=5.0, profile_timeout_s=60.0, lock_dir=str(tmp_path / "locks"))
    with VirtualBoard(board_id="vb-u", seed=2) as vb:
        agent = BoardAgent(vb.port, config)
        out = agent.run_job("u1", data, model)
        agent.close()
    dev = out.record
    assert dev.target.source == "device"
    assert dev.summary.n_unsupported == sim.summary.n_unsupported
    assert [L.index for L in dev.layers if L.reason] == [L.index for L in sim.layers if L.reason]
    assert [L.supported for L in dev.layers] == [L.supported for L in sim.layers]
