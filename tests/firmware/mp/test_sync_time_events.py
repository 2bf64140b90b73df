# The token's sync server: clock setting, retries, the event log and bad input.
import json
import struct

from sync_standin import KEY, IDENTITY, Host, done, new_token, to_hex
from tokenfw import records
from tokenfw.sync import auth, framing
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m


def test_time_set_reports_the_correction_and_the_boundary():
    token = new_token(3)
    host = Host(token)
    host.greet()
    t = hc.parse_time_response(host.ok(m.TIME))
    assert t["token_time"] == 1000 and not t["clock_was_set"] and not t["did_set"]
    t = hc.parse_time_response(host.ok(m.TIME, struct.pack("<I", 1750000000)))
    assert t["did_set"] and t["correction_s"] == 1750000000 - 1000
    assert t["boundary_seq"] == 4
    assert token.clock.now() == 1750000000 and token.clock.is_set()
    kind, answer = host.ask(m.TIME, struct.pack("<I", 12))
    assert kind == m.ERROR and answer[0] == m.E_BAD_REQUEST
    assert token.clock.now() == 1750000000
    done(token)


def test_a_retried_time_set_is_not_applied_twice():
    token = new_token()
    host = Host(token)
    host.greet()
    request = framing.encode(m.body(m.TIME, 77, struct.pack("<I", 1750000000)))
    first = host.raw(request)
    token.rtc.now += 30  # the answer was lost; the host retries a little later
    second = host.raw(request)
    assert first == second
    assert hc.parse_time_response(first[0][2:])["correction_s"] == 1750000000 - 1000
    assert token.clock.now() == 1750000030
    done(token)


def test_events_pages_through_the_log():
    token = new_token()
    for i in range(20):
        token.events.log("test", "event %d" % i, now=i)
    host = Host(token)
    host.greet()
    page = json.loads(host.ok(m.EVENTS, hc.events_request(1, 255)))
    assert len(page) == 16 and page[0][2] == "test" and page[0][3] == "event 0"
    page = json.loads(host.ok(m.EVENTS, hc.events_request(page[-1][0] + 1, 255)))
    assert len(page) == 4 and page[-1][3] == "event 19"
    done(token)


def test_garbage_oversized_and_unknown_requests_get_answers_or_silence_never_a_crash():
    token = new_token(2)
    host = Host(token)
    assert host.raw(b"\x00\xff" * 600 + b"\xc0") == []  # oversized junk: dropped
    assert host.raw(b"\xc0\xc0\xc0") == []
    host.greet()
    kind, answer = host.ask(0x55)
    assert kind == m.ERROR and answer[0] == m.E_UNKNOWN_COMMAND
    kind, answer = host.ask(m.DUMP, b"\x01")
    assert kind == m.ERROR and answer[0] == m.E_BAD_REQUEST
    assert token.store.pending() == 2
    done(token)
