"""The serial transport on real pseudo-terminals with real pyserial."""
from __future__ import annotations

import os
import threading
import tty

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_agents import protocol as P
from device_agents.transport import BoardError, LinkTimeout, PortGone, Transport, TransportError
from device_agents.virtual_board import Faults, VirtualBoard


@pytest.fixture
def board(request):
    faults = getattr(request, "param", Faults())
    with VirtualBoard(board_id="vb-transport", seed=3, faults=faults) as vb:
        yield vb


def test_hello_gets_the_boards_info_over_a_pty(board):
    with Transport(board.port) as t:
        info = t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
    assert (info.board_kind, info.board_id, info.clock_hz) == ("brd2601b", "vb-transport", 78_000_000)
    assert (info.ram_bytes, info.flash_bytes) == (262144, 1572864)
    assert info.arena_max_bytes == 262144 - 16 * 1024 and info.chunk_max_bytes == 1024


def test_pyserial_urls_work_too():
    # loop:// echoes what is written: the request comes back as a (non-reply) frame of its own seq
    with Transport("loop://") as t:
        reply = t.exchange(P.Ack(5), 0.5)
    assert reply == P.Ack(5)


@pytest.mark.parametrize("board", [Faults(garbage=1.0)], indirect=True)
def test_garbage_before_every_reply_is_skipped(board):
    with Transport(board.port) as t:
        infos = [t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True) for _ in range(5)]
        assert all(i.board_id == "vb-transport" for i in infos)
        assert t.stats.garbage_bytes >= 5 * 8
    assert board.stats.garbage_bytes_sent == t.stats.garbage_bytes


@pytest.mark.parametrize("board", [Faults(crc=1.0)], indirect=True)
def test_a_corrupted_reply_is_a_link_timeout_reported_before_the_deadline(board):
    with Transport(board.port) as t:
        t.discard_input()
        failures = 0
        for _ in range(4):
            try:
                t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
            except LinkTimeout as e:
                failures += 1
                assert "reply lost" in str(e) or "within" in str(e)
        assert failures == 4
        # header corruption hides the frame (then only the deadline ends the wait), payload
        # corruption is detected at once; at least one must have been a CRC-32 detection
        assert t.stats.crc_errors >= 1


def test_board_errors_carry_code_and_message(board):
    with Transport(board.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)   # past the board's power-on BOOT
        with pytest.raises(BoardError, match="BAD_STATE: no model loaded") as e:
            t.exchange(P.Profile(), 1.0, P.ProfileDone)
        assert e.value.code == P.ErrorCode.BAD_STATE


def test_unplugging_the_board_is_port_gone(board):
    with Transport(board.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        board.unplug()
        with pytest.raises(PortGone):
            t.exchange(P.Hello(), 1.0, P.Info)


def test_a_missing_port_is_port_gone_with_its_name():
    with pytest.raises(PortGone, match="/dev/does-not-exist"):
        Transport("/dev/does-not-exist")


class _FuzzBoard:
    """A pty whose 'board' answers every write with the bytes the test chose."""

    def __init__(self):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        self.reply = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import select
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if r:
                try:
                    os.read(self.master, 4096)
                    os.write(self.master, self.reply)
                except OSError:
                    return

    def close(self):
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def fuzz_board():
    fb = _FuzzBoard()
    yield fb
    fb.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=st.one_of(
    st.binary(max_size=300),
    # valid frames (right CRCs, the request's seq) carrying arbitrary types and payloads
    st.builds(lambda t, p: P.Frame(t, 1, p).encode(), st.integers(0, 255), st.binary(max_size=120)),
))
def test_fuzzed_replies_end_in_a_transport_error_or_a_message_never_a_crash(fuzz_board, reply):
    fuzz_board.reply = reply
    with Transport(fuzz_board.port) as t:
        try:
            msg = t.exchange(P.Hello(), 0.15, P.Info)
        except (TransportError, P.ProtocolError):
            return
    assert isinstance(msg, P.Info)
