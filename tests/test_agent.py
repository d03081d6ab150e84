"""The board agent against virtual boards on real ptys: measuring, refusing, recovering, quarantine."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_agents import protocol as P
from device_agents.agent import (FAILED, IDLE, MEASURED, QUARANTINED, RETRY_ELSEWHERE, AgentConfig,
                                 BoardAgent, PortBusy, probe)
from device_agents.virtual_board import Faults, VirtualBoard


@pytest.fixture
def config(tmp_path):
    return AgentConfig(exchange_timeout_s=0.5, profile_timeout_s=1.0, boot_timeout_s=0.5,
                       lock_dir=str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def kws(zoo_dir):
    return (zoo_dir / "keyword_spotting.tflite").read_bytes()


def test_a_job_is_measured_into_a_device_record(config, kws, zoo_dir):
    with VirtualBoard(board_id="vb-a", seed=1) as vb:
        agent = BoardAgent(vb.port, config)
        out = agent.run_job("j1", kws, "keyword_spotting")
        agent.close()
    assert out.status == MEASURED and out.board.state == IDLE and out.board.jobs_measured == 1
    rec = out.record
    assert (rec.target.source, rec.target.board, rec.target.timing) == ("device", "vb-a", "measured")
    assert rec.model.name == "keyword_spotting" and rec.summary.n_layers == 15
    assert rec.summary.ram_bytes == 37600                        # the board's arena, not the estimate
    assert rec.summary.accelerator_cycles == pytest.approx(2_500_000, rel=0.01)   # published
    assert all(L.latency_s == max(L.cpu_cycles, L.accelerator_cycles) / 78e6 for L in rec.layers)
    assert vb.stats.profiles_completed == 1


def test_oversize_models_are_refused_before_upload(config, zoo_dir):
    rps = (zoo_dir / "rock_paper_scissors.tflite").read_bytes()        # ~213 KB arena estimate
    anomaly = (zoo_dir / "anomaly_detection.tflite").read_bytes()      # 280,280 B of flash
    with VirtualBoard(board_id="vb-small", seed=1, arena_max_bytes=128 * 1024,
                      model_max_bytes=256 * 1024) as vb:
        agent = BoardAgent(vb.port, config)
        ram = agent.run_job("r", rps, "rock_paper_scissors")
        flash = agent.run_job("f", anomaly, "anomaly_detection")
        agent.close()
    assert ram.status == FAILED and flash.status == FAILED
    assert "refused before upload" in ram.reason and "131,072 B of RAM" in ram.reason
    assert "refused before upload" in flash.reason and "280,280 B" in flash.reason \
        and "262,144 B of flash" in flash.reason
    assert vb.stats.uploads_begun == 0                  # not one byte went to the board
    assert ram.board.state == IDLE                      # the board is fine


def test_a_port_has_one_owner(config):
    with VirtualBoard(seed=1) as vb:
        agent = BoardAgent(vb.port, config)
        with pytest.raises(PortBusy, match="owned by mvpfarm agent"):
            BoardAgent(vb.port, config)
        with pytest.raises(PortBusy):
            probe(vb.port, 0.5, config.lock_dir)
        agent.close()
        assert probe(vb.port, 0.5, config.lock_dir).board_id == vb.board_id


def test_a_hanging_board_is_quarantined_and_hands_the_job_back(config, kws):
    with VirtualBoard(board_id="vb-hang", seed=1, faults=Faults(hang=0)) as vb:
        agent = BoardAgent(vb.port, config)
        out = agent.run_job("j", kws, "kws")
        agent.close()
    assert out.status == RETRY_ELSEWHERE
    assert out.board.state == QUARANTINED
    assert "no reply to Profile" in out.board.reason and "RESET" in out.board.reason


def test_reboots_mid_job_are_recovered_by_reset_and_retry(config, kws):
    with VirtualBoard(board_id="vb-reboot", seed=11, faults=Faults(reboot=0.6)) as vb:
        agent = BoardAgent(vb.port, config)
        outs = [agent.run_job(f"j{i}", kws, "kws") for i in range(4)]
        agent.close()
    assert vb.stats.reboots >= 1
    assert sum(o.status == MEASURED for o in outs) >= 2
    assert any("rebooted" in f for f in outs[-1].board.faults)


def test_unplugged_board_is_quarantined_with_the_reason(config, kws):
    with VirtualBoard(seed=1, faults=Faults(unplug=0)) as vb:
        agent = BoardAgent(vb.port, config)
        out = agent.run_job("j", kws, "kws")
        agent.close()
    assert out.status == RETRY_ELSEWHERE and out.board.state == QUARANTINED
    assert out.board.reason.startswith("port gone")


@pytest.fixture(scope="module")
def tamper_board():
    with VirtualBoard(board_id="vb-fuzz", seed=1) as vb:
        yield vb


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(1, 14), junk=st.one_of(
    st.binary(max_size=64),
    st.tuples(st.integers(0, 255), st.binary(max_size=100)).map(lambda x: x)))
def test_fuzzed_board_replies_never_crash_or_hang_the_agent(tamper_board, tmp_path_factory, kws, at, junk):
    """One reply of a job (chosen by `at`) is replaced by fuzz: random bytes, or a valid frame
    with the request's seq but an arbitrary type and payload."""
    def tamper(request_no, raw):
        if request_no - base != at:
            return raw
        if isinstance(junk, bytes):
            return junk
        seq = raw[3]
        return P.Frame(junk[0], seq, junk[1]).encode()
    cfg = AgentConfig(exchange_timeout_s=0.2, profile_timeout_s=0.5, boot_timeout_s=0.3, retries=1,
                      lock_dir=str(tmp_path_factory.mktemp("locks")))
    base = tamper_board.stats.requests
    tamper_board.tamper = tamper
    try:
        agent = BoardAgent(tamper_board.port, cfg)
        out = agent.run_job("fz", kws, "kws")
        agent.close()
    finally:
        tamper_board.tamper = None
    assert out.status in (MEASURED, RETRY_ELSEWHERE)
    if out.status == MEASURED:
        assert out.record.summary.n_layers == 15
