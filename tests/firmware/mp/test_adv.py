# The GAEN advertising payload: the exact bytes we send, and a parser that finds the RPI/AEM in
# anything the air delivers without ever raising.
import gc

from mptest import raises
from tokenfw import adv

RPI = bytes(range(0x10, 0x20))
AEM = b"\xa1\xb2\xc3\xd4"
SERVICE_DATA = bytes((0x17, 0x16, 0x6F, 0xFD)) + RPI + AEM
FLAGS = bytes((0x02, 0x01, 0x1A))
UUIDS = bytes((0x03, 0x03, 0x6F, 0xFD))


def test_payload_is_the_exact_31_bytes_of_the_reference():
    payload = adv.gaen_payload(RPI, AEM)
    assert len(payload) == 31
    assert payload == bytes.fromhex("02011a03036ffd17166ffd") + RPI + AEM
    raises(ValueError, adv.gaen_payload, RPI[:15], AEM)
    raises(ValueError, adv.gaen_payload, RPI, AEM + b"x")


def test_parse_round_trips_our_payload_from_any_buffer_type():
    payload = adv.gaen_payload(RPI, AEM)
    for data in (payload, bytearray(payload), memoryview(payload)):
        rpi, aem = adv.parse_gaen(data)
        assert (rpi, aem) == (RPI, AEM)
        assert type(rpi) is bytes and type(aem) is bytes


def test_parse_tolerates_missing_flags_reordering_and_extra_structures():
    name = bytes((0x05, 0x09)) + b"band"
    manufacturer = bytes((0x05, 0xFF, 0x4C, 0x00, 0x02, 0x15))
    other_service = bytes((0x05, 0x16, 0x0A, 0x18, 0x01, 0x02))
    for data in (
        SERVICE_DATA,  # no flags, no UUID list
        SERVICE_DATA + FLAGS,
        UUIDS + SERVICE_DATA + FLAGS,
        name + other_service + SERVICE_DATA + manufacturer,
        FLAGS + SERVICE_DATA + bytes(6),  # zero padding after the data (early end marker)
    ):
        assert adv.parse_gaen(data) == (RPI, AEM), data


def test_parse_rejects_what_is_not_one_well_formed_gaen_identifier():
    cases = (
        b"",
        b"\x00" * 31,  # all padding
        FLAGS + UUIDS,  # no service data
        FLAGS + bytes((0x17, 0x16, 0x0A, 0x18)) + RPI + AEM,  # service data of another UUID
        FLAGS + SERVICE_DATA[:-1],  # truncated: length byte says 23, data ends early
        FLAGS + bytes((0x16, 0x16, 0x6F, 0xFD)) + RPI + AEM[:3],  # GAEN service data too short
        FLAGS + bytes((0x18, 0x16, 0x6F, 0xFD)) + RPI + AEM + b"\x00",  # too long
        FLAGS + bytes((0x02, 0x16, 0x6F)),  # service data shorter than its UUID
        SERVICE_DATA + SERVICE_DATA,  # duplicated identifier: ambiguous
        SERVICE_DATA + bytes((0xFF,)),  # trailing length byte pointing past the end
        bytes((0x00,)) + SERVICE_DATA,  # early end before the identifier
        SERVICE_DATA + bytes(300),  # larger than any advertising report
        bytes((0xFF,)) * 31,
        bytes((0x01,)),  # a structure with a length but no type
    )
    for data in cases:
        assert adv.parse_gaen(data) is None, data
    for not_bytes in (None, 42, "text", [1, 2, 3]):
        assert adv.parse_gaen(not_bytes) is None


def test_parse_never_raises_on_every_truncation_and_bit_flip():
    payload = adv.gaen_payload(RPI, AEM)
    for cut in range(len(payload)):
        result = adv.parse_gaen(payload[:cut])
        assert result is None or result == (RPI, AEM)
    flipped = bytearray(payload)
    for i in range(len(payload)):
        for bit in range(8):
            flipped[i] ^= 1 << bit
            result = adv.parse_gaen(flipped)
            if result is not None:
                assert len(result[0]) == 16 and len(result[1]) == 4
            flipped[i] ^= 1 << bit


def _allocated_by(fn, arg, times):
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(times):
            fn(arg)
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def test_parse_allocates_nothing_for_other_reports_and_only_the_result_for_gaen():
    if not hasattr(gc, "mem_alloc"):
        return  # CPython has no allocation counter; this check is MicroPython's
    other = bytearray(FLAGS + bytes((0x1B, 0xFF)) + bytes(26))
    gaen_report = adv.gaen_payload(RPI, AEM)
    adv.parse_gaen(other)  # warm up
    assert _allocated_by(adv.parse_gaen, other, 100) == 0
    # a GAEN report: the two result bytes objects, their tuple and two slice objects (224
    # bytes on the 64-bit unix port, half that on an ESP32)
    per_call = _allocated_by(adv.parse_gaen, gaen_report, 100) // 100
    assert 0 < per_call <= 256, per_call


def test_parse_never_raises_on_random_reports():
    import os

    payload = adv.gaen_payload(RPI, AEM)
    for n in range(1500):
        size = n % 64
        noise = os.urandom(size)
        for data in (noise, payload[: n % 32] + noise, noise + payload):
            result = adv.parse_gaen(data)
            assert result is None or (len(result[0]) == 16 and len(result[1]) == 4)
