# The 32-byte encounter record: the contract layout (docs/records.md), its integrity check
# bound to the sequence number, and saturation of out-of-range counters.
import struct
from binascii import crc32

from mptest import raises
from tokenfw import records
from tokenfw.records import FLAG_CLOCK_UNSET, FLAG_EVICTED, CorruptRecord, Encounter

RPI = bytes(range(0xA0, 0xB0))
AEM = b"\xde\xad\xbe\xef"
ENC = Encounter(RPI, AEM, 1767225610, 250, 4, -48, -63, FLAG_CLOCK_UNSET)


def test_layout_is_the_shared_contract():
    buf = records.encode(7, ENC)
    assert records.RECORD_SIZE == 32 and len(buf) == 32
    # built independently from the contract: offsets, little-endian, check = CRC-32 low 16 bits
    body = RPI + AEM + struct.pack("<IHBbbB", 1767225610, 250, 4, -48, -63, 1)
    check = crc32(body, crc32(struct.pack("<I", 7))) & 0xFFFF
    assert buf == body + struct.pack("<H", check)
    assert buf[0:16] == RPI and buf[16:20] == AEM
    assert struct.unpack("<I", buf[20:24])[0] == 1767225610
    assert struct.unpack("<H", buf[24:26])[0] == 250
    assert buf[26] == 4 and buf[27] == 256 - 48 and buf[28] == 256 - 63 and buf[29] == 1


def test_pinned_record_bytes_never_change():
    # The host, the service and old flash images all rely on these exact bytes.
    assert records.encode(7, ENC) == bytes.fromhex(
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" "deadbeef" "0ab95569" "fa00" "04" "d0" "c1" "01" "2e13")
    assert FLAG_CLOCK_UNSET == 1 and FLAG_EVICTED == 2


def test_round_trip_from_any_buffer_type():
    buf = records.encode(123456, ENC)
    for data in (buf, bytearray(buf), memoryview(buf)):
        assert records.decode(123456, data) == ENC
    assert records.is_intact(123456, buf)


def test_check_binds_the_sequence_number():
    buf = records.encode(41, ENC)
    assert not records.is_intact(42, buf)
    error = raises(CorruptRecord, records.decode, 42, buf)
    assert "42" in str(error)
    assert records.decode(41 + (1 << 32), buf) == ENC  # seq is u32 on flash: it wraps


def test_every_single_bit_error_is_detected():
    buf = bytearray(records.encode(9, ENC))
    for i in range(32):
        for bit in range(8):
            buf[i] ^= 1 << bit
            assert not records.is_intact(9, buf), (i, bit)
            buf[i] ^= 1 << bit
    assert records.is_intact(9, buf)


def test_erased_and_zeroed_flash_is_not_a_record():
    # A 16-bit check lets one random block in 65536 pass (erased flash passes at seq 18534):
    # the store finds the end of its log by file length, never by probing with the check.
    for seq in range(2000):
        assert not records.is_intact(seq, b"\xff" * 32), seq
        assert not records.is_intact(seq, bytes(32)), seq
    raises(CorruptRecord, records.decode, 0, b"\xff" * 32)


def test_wrong_sizes_are_corrupt():
    buf = records.encode(1, ENC)
    for data in (b"", buf[:31], buf + b"\x00"):
        assert not records.is_intact(1, data)
        raises(CorruptRecord, records.decode, 1, data)


def test_out_of_range_values_saturate_instead_of_wrapping():
    long_loud = Encounter(RPI, AEM, 1767225610, 70000, 300, 200, -200, 0x1FF)
    got = records.decode(3, records.encode(3, long_loud))
    assert (got.duration_s, got.scans, got.rssi_max, got.rssi_mean, got.flags) == (65535, 255, 127, -128, 0xFF)
    negative = Encounter(RPI, AEM, 1767225610, -5, -1, -128, 127, 0)
    got = records.decode(3, records.encode(3, negative))
    assert (got.duration_s, got.scans, got.rssi_max, got.rssi_mean) == (0, 0, -128, 127)


def test_pure_python_crc_fallback_matches_binascii():
    saved = records.crc32
    try:
        records.crc32 = None  # a port built without binascii.crc32
        fallback = records.encode(77, ENC)
    finally:
        records.crc32 = saved
    assert fallback == records.encode(77, ENC)
