"""The wire protocol: exact bytes, every message round-trips, resynchronisation, fuzzing."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agents import protocol as P


def test_hello_frame_bytes_match_the_spec_example():
    # docs/protocol.md, "Example"
    assert P.Frame(0x01, 1, b"\x01\x00").encode() == bytes.fromhex("a55a01010200 26a3 0100 d2574b05")


MESSAGES = [
    P.Hello(), P.Info(1, "brd2601b", "fw 1.0", "EUI64-0011223344", 78_000_000, 262144, 1572864,
                      245760, 1310720, 1024, 1),
    P.UploadBegin(1234, bytes(range(32))), P.UploadChunk(1024, b"\x00\xff" * 100), P.UploadEnd(),
    P.Reset(), P.Profile(2, 5, False), P.ReadLayer(7), P.ReadOutput(16, 512), P.Ack(99),
    P.ModelOk(85400, 10, 3), P.ProfileDone(10, 5, 85400, 0),
    P.Layer(3, 3, P.LAYER_ON_MVP, [100, 101, 99], [902900, 902901, 902899], ""),
    P.Layer(4, 4, P.LAYER_FELL_BACK, [5], [0], "Hardware limits exceeded"),
    P.Output(0, b"\x01\x02\x03"), P.Boot(P.BootCause.WATCHDOG), P.Error(9, 300000, "arena too small"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_frame(msg):
    raw = P.to_frame(msg, 42).encode()
    frames = P.FrameDecoder().feed(raw)
    assert len(frames) == 1 and frames[0].seq == 42 and frames[0].type == msg.TYPE
    assert P.decode_message(frames[0]) == msg


def test_info_layout_is_82_bytes_as_documented():
    assert len(MESSAGES[1].encode()) == 82


def test_decoder_finds_frames_behind_garbage_false_syncs_and_split_reads():
    good = [P.to_frame(P.Ack(i), i + 1).encode() for i in range(3)]
    corrupt = bytearray(P.to_frame(P.Ack(7), 9).encode())
    corrupt[-6] ^= 0x10          # a flipped payload bit: header fine, CRC-32 fails
    stream = b"\x00garbage\xa5\x5a\xff\xff\xff\xff\xff\xff" + good[0] + bytes(corrupt) + b"\xa5" + good[1] + \
        b"\xa5\x5a" + good[2]
    dec = P.FrameDecoder()
    frames = []
    for i in range(0, len(stream), 5):            # arrives in small pieces, as from a UART
        frames += dec.feed(stream[i:i + 5])
    assert [P.decode_message(f).value for f in frames] == [0, 1, 2]
    assert dec.crc_errors == 1
    assert dec.false_syncs >= 1
    assert dec.discarded_bytes >= len(b"\x00garbage") + len(corrupt)


def test_malformed_payloads_are_protocol_errors():
    with pytest.raises(P.ProtocolError, match="LAYER claims 1000 repeats"):
        P.decode_message(P.Frame(P.MsgType.LAYER, 1, struct.pack("<HHBBH", 0, 3, 1, 0, 1000)))
    with pytest.raises(P.ProtocolError, match="unknown message type 0x42"):
        P.decode_message(P.Frame(0x42, 1, b""))
    with pytest.raises(P.ProtocolError, match="CRC-32"):
        P.UploadChunk.decode(struct.pack("<II", 0, 1234) + b"data")
    with pytest.raises(P.ProtocolError, match="repeats 0"):
        P.Profile.decode(struct.pack("<HHBB", 0, 0, 1, 0))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_fuzzed_bytes_never_crash_the_decoder_and_never_yield_a_bad_frame(data, piece):
    dec = P.FrameDecoder()
    for i in range(0, len(data), piece):
        for f in dec.feed(data[i:i + piece]):
            # whatever it yields re-encodes to a frame that passes both checks
            assert P.FrameDecoder().feed(f.encode()) == [f]
    assert len(dec._buf) < P.HEADER_BYTES + P.MAX_PAYLOAD_BYTES + P.CRC_BYTES


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(P.MESSAGES)), st.binary(max_size=300))
def test_fuzzed_payloads_in_valid_frames_raise_only_protocol_errors(type_, payload):
    try:
        msg = P.decode_message(P.Frame(type_, 1, payload))
    except P.ProtocolError:
        return
    assert msg.TYPE == type_


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_a_frame_between_any_garbage_is_recovered(before, after):
    frame = P.to_frame(P.Ack(0xC0FFEE), 5)
    frames = P.FrameDecoder().feed(before + frame.encode() + after)
    assert frame in frames
