# The token's sync server, driven by request frames as a host would send them.
import json
import struct

from sync_standin import KEY, IDENTITY, Host, done, new_token, to_hex
from tokenfw import records
from tokenfw.sync import auth, framing
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m


def test_hello_first_and_version_handshake():
    token = new_token()
    host = Host(token)
    kind, answer = host.ask(m.INFO)
    assert kind == m.ERROR and answer[0] == m.E_HELLO_FIRST
    version, accepted, max_records, firmware = host.greet()
    assert (version, accepted, firmware) == (1, True, "test-1")
    assert max_records == m.MAX_DUMP_RECORDS
    done(token)


def test_incompatible_host_is_refused_and_stays_locked_out():
    token = new_token()
    host = Host(token)
    version, accepted, _, _ = hc.parse_hello_response(host.ok(m.HELLO, hc.hello_request(2, 3)))
    assert version == 1 and not accepted
    kind, answer = host.ask(m.DUMP, hc.dump_request(1, 10))
    assert kind == m.ERROR and answer[0] == m.E_HELLO_FIRST
    done(token)


def test_info_reports_identity_clock_and_log():
    token = new_token(5)
    host = Host(token)
    host.greet()
    info = json.loads(host.ok(m.INFO))
    assert info["next_seq"] == 6 and info["pending"] == 5 and info["oldest_seq"] == 1
    assert info["clock_set"] is False and info["provisioned"] is False
    assert info["battery_percent"] == 67
    assert info["oldest_time"] == 1000 and info["newest_time"] == 1004
    done(token)


def test_dump_returns_intact_records_in_chunks_and_resumes_anywhere():
    token = new_token(100)
    host = Host(token)
    host.greet()
    seen = []
    seq = 1
    while True:
        oldest, next_seq, acked, got = hc.parse_dump_response(host.ok(m.DUMP, hc.dump_request(seq, 16)))
        assert len(got) <= 16
        if not got:
            break
        for s, rec in got:
            records.decode(s, rec)  # raises if a record was damaged on the way
            seen.append(s)
        seq = got[-1][0] + 1
    assert seen == list(range(1, 101))
    _, _, _, got = hc.parse_dump_response(host.ok(m.DUMP, hc.dump_request(90, 500)))
    assert [s for s, _ in got] == list(range(90, 101))  # the tail only, though 500 were asked
    done(token)


def test_ack_moves_the_cursor_only_forward_and_never_past_the_log():
    token = new_token(20)
    host = Host(token)
    host.greet()
    assert hc.parse_seq(host.ok(m.ACK, hc.ack_request(10))) == 10
    assert token.store.pending() == 10
    assert hc.parse_seq(host.ok(m.ACK, hc.ack_request(5))) == 10
    kind, answer = host.ask(m.ACK, hc.ack_request(21))
    assert kind == m.ERROR and answer[0] == m.E_REFUSED
    assert token.store.acked_seq == 10
    assert token.last_sync_at is not None
    done(token)




def test_a_record_corrupt_on_flash_ends_the_run_and_the_next_request_skips_it():
    token = new_token(40)
    path = token.root + "/log/0000000001.seg"
    with open(path, "r+b") as f:
        f.seek(9 * 32 + 3)  # seq 10
        byte = f.read(1)
        f.seek(9 * 32 + 3)
        f.write(bytes((byte[0] ^ 0xFF,)))
    host = Host(token)
    host.greet()
    _, _, _, got = hc.parse_dump_response(host.ok(m.DUMP, hc.dump_request(1, 16)))
    assert [s for s, _ in got] == list(range(1, 10))
    _, _, _, got = hc.parse_dump_response(host.ok(m.DUMP, hc.dump_request(10, 16)))
    assert [s for s, _ in got] == list(range(11, 27))
    for s, rec in got:
        records.decode(s, rec)
    done(token)
