# Sync protocol framing: byte stuffing, CRC, and the frame reader's handling of noise.
import os

from mptest import raises  # noqa: F401  (shared helpers)
from tokenfw.sync import framing


def _all_bytes():
    return bytes(range(256)) * 3


def test_round_trip_of_every_byte_value():
    body = _all_bytes()
    wire = framing.encode(body)
    assert wire[0] == framing.END and wire[-1] == framing.END
    assert framing.decode(wire[1:-1]) == body


def test_no_console_control_byte_is_ever_on_the_wire():
    for _ in range(20):
        wire = framing.encode(os.urandom(300) + b"\x03\x04\x11\x13\x1a\x1c\xc0\xdb\xdb\xdd")
        for byte in framing.FORBIDDEN_ON_WIRE:
            assert byte not in wire
        assert framing.END not in wire[1:-1]


def test_escape_sequences_next_to_each_other_survive():
    body = b"\xdb\xdd\xdb\xdc\xc0\xdb\xde\x03\xdb"
    assert framing.decode(framing.encode(body)[1:-1]) == body


def test_a_flipped_byte_fails_the_check():
    wire = bytearray(framing.encode(b"hello sync"))
    wire[4] ^= 0x01
    assert framing.decode(bytes(wire[1:-1])) is None


def test_reader_finds_frames_among_repl_text_and_split_reads():
    got = []
    reader = framing.FrameReader(200)
    stream = b">>> print(1)\r\n1\r\n" + framing.encode(b"one") + b"garbage" + framing.encode(b"two")
    for i in range(len(stream)):
        reader.feed(stream[i:i + 1], got.append)
    assert got == [b"one", b"two"]
    assert reader.bad >= 1  # the text between two frames was looked at and rejected


def test_reader_drops_an_oversized_frame_and_keeps_the_next():
    got = []
    reader = framing.FrameReader(64)
    reader.feed(framing.encode(b"x" * 200) + framing.encode(b"small"), got.append)
    assert got == [b"small"]
    assert reader.overflows == 1


def test_truncated_frame_is_dropped_not_merged():
    got = []
    reader = framing.FrameReader(200)
    first = framing.encode(b"first frame")
    reader.feed(first[:6], got.append)  # the cable was pulled mid-frame, then a new request
    reader.feed(framing.encode(b"second"), got.append)
    assert got == [b"second"]


def test_minimal_stuffing_of_answers_decodes_with_the_same_decoder():
    body = _all_bytes()
    wire = framing.encode(body, False)
    assert b"\x03" in wire  # answers may carry control bytes: the host acts on none of them
    assert framing.END not in wire[1:-1]
    assert framing.decode(wire[1:-1]) == body
    pieces = []
    framing.write_frame(pieces.append, body, 100, False)
    assert b"".join(pieces) == wire
