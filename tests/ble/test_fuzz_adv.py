"""Fuzzed advertisements: into the payload parser (against bumble's AD parser as oracle) and
into a live virtual token listening in the virtual air (reports injected at the token's own
bumble controller, so they reach the firmware exactly as a scan would deliver them)."""
from __future__ import annotations

import json
import select
import subprocess
import time

import pytest
from bumble.core import AdvertisingData
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlab import AirProcess, compile_tree
from host_tools import micropython
from tokenfw import adv

GAEN_UUID = b"\x6f\xfd"


def ad(ad_type: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, ad_type]) + value


def gaen_service_data(rpi: bytes, aem: bytes) -> bytes:
    return ad(0x16, GAEN_UUID + rpi + aem)


ad_structures = st.one_of(
    st.builds(ad, st.integers(0, 255), st.binary(max_size=29)),  # any type, any value
    st.builds(gaen_service_data, st.binary(min_size=16, max_size=16), st.binary(min_size=4, max_size=4)),
    st.builds(lambda v: ad(0x16, GAEN_UUID + v), st.binary(max_size=24)),  # wrong-length GAEN data
    st.builds(lambda v: ad(0x16, v), st.binary(min_size=2, max_size=22)),  # other service data
    st.just(ad(0x01, b"\x1a")),
    st.just(ad(0x03, GAEN_UUID)),
)
well_formed = st.lists(ad_structures, max_size=6).map(b"".join)
# Truncated, padded, zero-terminated, or plain noise.
mangled = st.one_of(
    st.binary(max_size=300),
    st.tuples(well_formed, st.integers(0, 40)).map(lambda t: t[0][: max(0, len(t[0]) - t[1])]),
    st.tuples(well_formed, st.binary(max_size=8)).map(lambda t: t[0] + b"\x00" + t[1]),
    st.tuples(well_formed, st.integers(0, 255)).map(lambda t: t[0] + bytes([t[1]])),
)


def oracle(data: bytes):
    """What a GAEN receiver must find, according to bumble's AD structure parser."""
    found = [
        value
        for ad_type, value in AdvertisingData.from_bytes(data).ad_structures
        if ad_type == 0x16 and bytes(value[:2]) == GAEN_UUID
    ]
    if len(found) != 1 or len(found[0]) != 22:
        return None
    return bytes(found[0][2:18]), bytes(found[0][18:22])


@settings(max_examples=600, deadline=None)
@given(well_formed)
def test_parser_agrees_with_bumble_on_well_formed_reports(data):
    if len(data) > adv.MAX_ADV_DATA:
        assert adv.parse_gaen(data) is None
        return
    assert adv.parse_gaen(data) == oracle(data)
    assert adv.parse_gaen(memoryview(data)) == oracle(data)


@settings(max_examples=600, deadline=None)
@given(mangled)
def test_parser_never_raises_and_only_returns_identifiers(data):
    result = adv.parse_gaen(data)
    assert result is None or (len(result[0]), len(result[1])) == (16, 4)
    if result is not None:
        assert gaen_service_data(*result) in data


# -- a live token ---------------------------------------------------------------------------------
class LiveToken:
    def __init__(self, work):
        tree = compile_tree(work / "tree")
        self.air = AirProcess(work / "air.sock", time_scale=1.0, seed=3, log_path=work / "air.log")
        env = dict(micropython.environment())
        env["MICROPYPATH"] = str(tree)
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", "heapsize=100K", "-m", "fuzz_token", "victim", self.air.socket_path],
            env=env, cwd=str(tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.line(20) == {"ready": True}
        self.lost_markers = 0

    def line(self, timeout_s: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                raw = self.proc.stdout.readline()
                if not raw:
                    break
                if raw.startswith(b"{"):
                    return json.loads(raw)
        raise AssertionError(f"live token said nothing (exit code {self.proc.poll()})")

    def inject(self, data: bytes, count: int = 1) -> None:
        self.air.control({"op": "inject", "to": "victim", "data": data.hex(), "count": count, "rssi": -55})

    def mark(self) -> dict:
        """The token's counters once it has taken everything sent so far. A marker that meets a
        full ring is dropped like any report, so markers are repeated until one is answered, and
        the dropped ones are taken out of the counters."""
        sent = printed = 0
        answer = None
        for _ in range(30):
            time.sleep(0.2)
            self.inject(adv.gaen_payload(b"\xff" * 16, b"\x00" * 4))
            sent += 1
            try:
                answer = self.line(1.0)
            except AssertionError:
                continue
            printed += 1
            break
        assert answer is not None, f"live token answered no marker (exit code {self.proc.poll()})"
        while True:  # late answers to earlier markers
            try:
                answer = self.line(0.3)
                printed += 1
            except AssertionError:
                break
        self.lost_markers += sent - printed
        answer["dropped"] -= self.lost_markers
        return answer

    def close(self) -> None:
        try:
            self.inject(adv.gaen_payload(b"\xfe" * 16, b"\x00" * 4))
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - cleanup goes on
            self.proc.kill()
        self.air.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    token = LiveToken(tmp_path_factory.mktemp("fuzzlive"))
    yield token
    token.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(well_formed, mangled.filter(lambda d: len(d) <= 240)), min_size=1, max_size=40))
def test_a_live_token_survives_fuzzed_reports_and_keeps_only_gaen(live, reports):
    before = live.mark()
    for data in reports:
        live.inject(data)
    after = live.mark()
    assert live.proc.poll() is None, "the virtual token crashed"
    kept = sum(1 for d in reports if len(d) <= 31 and adv.find_gaen(d) >= 0)
    assert after["parsed"] - before["parsed"] + after["dropped"] - before["dropped"] == kept
    # every report a scan delivered was either kept for parsing or ignored, none lost silently
    assert after["ignored"] - before["ignored"] == len(reports) - kept


def test_a_burst_of_thousands_of_advertisements_drops_the_excess_and_keeps_the_heap(live):
    before = live.mark()
    live.inject(adv.gaen_payload(b"\x42" * 16, b"\x01\x02\x03\x04"), count=5000)
    after = live.mark()
    assert live.proc.poll() is None
    got = after["parsed"] - before["parsed"]
    dropped = after["dropped"] - before["dropped"]
    assert got + dropped == 5000
    assert dropped > 0 and got >= 64  # the ring filled at least once, the excess was counted
    # nothing grows with the traffic: the heap after a 5000-report burst is where it was
    assert abs(after["mem_free"] - before["mem_free"]) < 2048


def test_host_scanner_survives_fuzzed_reports_and_still_finds_the_token(tmp_path, caplog):
    """`tokentool scan`'s bleak path (virtual air backend) hears garbage from other advertisers
    (names that are not UTF-8, truncated UUID lists, ...) and still lists the token."""
    import asyncio
    import logging
    import random

    from host_tools.air.client import control, open_air_device
    from host_tools.transport.ble import find_sync_windows
    from tokenfw.ble_sync import sync_advertisement

    rng = random.Random(17)
    garbage = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(200)]
    garbage += [ad(0x09, b"\xdc\xff\xfe"), ad(0x07, b"\x01\x02\x03"), ad(0x03, b"\x6f"), ad(0x16, b"")]

    async def scenario():
        with AirProcess(tmp_path / "air.sock", time_scale=1.0, log_path=tmp_path / "air.log") as air:
            token, link = await open_air_device(air.socket_path, "fake-token")
            adv_data, resp_data = sync_advertisement("TT-FAKE")
            await token.start_advertising(advertising_data=adv_data, scan_response_data=resp_data)

            def spam():
                deadline = time.monotonic() + 10
                while not any(d["name"] == "bleak-scanner" for d in control(air.socket_path, {"op": "status"})["devices"]):
                    assert time.monotonic() < deadline, "the scanner never joined the air"
                    time.sleep(0.05)
                for data in garbage:
                    control(air.socket_path, {"op": "inject", "to": "bleak-scanner", "data": data.hex()})

            spammer = asyncio.create_task(asyncio.to_thread(spam))
            found = await find_sync_windows(3.0, air.socket_path)
            await spammer
            await link.close()
            return found

    with caplog.at_level(logging.ERROR):
        found = asyncio.run(scenario())
    assert [name for _, name, _ in found] == ["TT-FAKE"]
    assert not [r for r in caplog.records if r.exc_info], "a fuzzed report raised inside the scanner"
