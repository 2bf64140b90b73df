"""Faults a clinic sync must survive, each against a virtual token over real ptys."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from tokenfw import records
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m

from host_tools import micropython
from host_tools.outbox import Outbox
from host_tools.serialbridge import Faults, SerialBridge
from host_tools.sync_client import NoAnswer, SyncClient, VersionMismatch, WrongDevice
from host_tools.sync_session import sync_token
from host_tools.transport import SerialTransport
from synchelpers import clinic_identity, run_tokentool, tokentool_json

SERIAL = "TT-00C0FFEE"


def _outbox_seqs(home) -> list[int]:
    with Outbox(home / "outbox.sqlite") as outbox:
        rows = list(outbox.records_of(SERIAL))
    for _, seq, data, _, _ in rows:
        records.decode(seq, data)
    return [seq for _, seq, _, _, _ in rows]


def test_cable_pulled_mid_dump_then_rerun_resumes_without_loss_or_duplicates(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(1500)
    with SerialBridge(token.pty, baud=None, faults=Faults(cut_after_to_host=20_000)) as bridge:
        code, _, err = run_tokentool("sync", "--port", bridge.path, "--timeout", "0.5")
    assert code != 0 and bridge.path in err and "Traceback" not in err
    partial = _outbox_seqs(tokentool_home)
    assert 0 < len(partial) < 1500, "the cable was pulled part way"
    assert tokentool_json("info", "--port", token.pty)["pending"] == 1500  # nothing acknowledged

    result = tokentool_json("sync", "--port", token.pty)
    assert result["new_records"] == 1500 - len(partial)
    assert result["dumped"] == 1500 - len(partial), "the rerun resumed after what the outbox held"
    assert _outbox_seqs(tokentool_home) == list(range(1, 1501))
    assert tokentool_json("info", "--port", token.pty)["pending"] == 0


def test_corrupted_and_dropped_bytes_are_retried_until_the_dump_completes(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(1200)
    # about one 128-record answer in two damaged, one request in twenty
    faults = Faults(corrupt_rate_to_host=1e-4, drop_rate_to_host=1e-4,
                    corrupt_rate_to_token=2e-3, drop_rate_to_token=1e-3, seed=7)
    with SerialBridge(token.pty, baud=None, faults=faults) as bridge:
        result = tokentool_json("sync", "--port", bridge.path, "--timeout", "0.5")
    assert faults.corrupted + faults.dropped > 5, "the line really was noisy"
    assert result["retransmissions"] > 0
    assert result["new_records"] == 1200
    assert _outbox_seqs(tokentool_home) == list(range(1, 1201))


def test_host_crash_between_storing_and_ack_is_deduplicated_by_the_next_sync(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(400)

    class Crash(Exception):
        pass

    transport = SerialTransport(token.pty)
    client = SyncClient(transport)
    client.ack = lambda upto: (_ for _ in ()).throw(Crash())  # the host dies right before ACK
    with Outbox(tokentool_home / "outbox.sqlite") as outbox, pytest.raises(Crash):
        sync_token(transport, outbox, client=client)
    transport.close()
    assert _outbox_seqs(tokentool_home) == list(range(1, 401))
    assert tokentool_json("info", "--port", token.pty)["pending"] == 400  # the token still has them all

    # the token re-sends from its ACK cursor only what the outbox lacks... here: nothing
    result = tokentool_json("sync", "--port", token.pty)
    assert result["new_records"] == 0 and result["acked_seq"] == 400
    assert _outbox_seqs(tokentool_home) == list(range(1, 401))
    assert tokentool_json("info", "--port", token.pty)["pending"] == 0


def test_a_resent_dump_is_stored_once(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(100)
    transport = SerialTransport(token.pty)
    client = SyncClient(transport)
    client.connect()
    with Outbox(tokentool_home / "outbox.sqlite") as outbox:
        session = outbox.begin_sync(SERIAL, port=token.pty, synced_at=int(time.time()), token_time=int(time.time()),
                                    correction_s=0, clock_was_set=True, clock_set=False, boundary_seq=101)
        for _ in range(2):  # the same records twice, as after a lost ACK
            results = [outbox.store_chunk(session, chunk) for chunk in client.dump(1, 101)]
        assert sum(r.new for r in results) == 0 and sum(r.duplicates for r in results) == 100
    transport.close()
    assert _outbox_seqs(tokentool_home) == list(range(1, 101))


def test_clock_unset_is_set_and_recorded_and_records_keep_their_times(virtual_token, tokentool_home):
    token = virtual_token(clock="unset")
    clinic_identity(token, tokentool_home)
    before = tokentool_json("info", "--port", token.pty)
    assert before["clock_set"] is False and before["clock"] < 1_000_000_000  # counting from 2000
    token.fill(10, first_seen=before["clock"])
    result = tokentool_json("sync", "--port", token.pty)
    assert result["clock_was_set"] is False and result["clock_set"] is True
    assert result["correction_s"] > 700_000_000
    with Outbox(tokentool_home / "outbox.sqlite") as outbox:
        batch = next(outbox.upload_batches())
        stored = {seq: data for _, seq, data, _, _ in outbox.records_of(SERIAL)}
    (entry,) = [s for s in batch.payload["syncs"] if s["first_seq"] <= 1 <= s["last_seq"]]
    assert entry["clock_was_set"] is False and entry["correction_s"] == result["correction_s"]
    first_seen = records.decode(1, stored[1]).first_seen
    assert first_seen < 1_000_000_000, "the record keeps the token's original timestamp"
    assert abs(first_seen + entry["correction_s"] - time.time()) < 4000
    after = tokentool_json("info", "--port", token.pty)
    assert after["clock_set"] is True and abs(after["clock"] - time.time()) < 5


def test_clock_hours_off_is_corrected_and_the_drift_recorded(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    transport = SerialTransport(token.pty)
    client = SyncClient(transport)
    client.connect()
    client.set_time(int(time.time()) - 3 * 3600)  # a token whose clock runs three hours late
    transport.close()
    token_now = tokentool_json("info", "--port", token.pty)["clock"]
    token.fill(5, first_seen=token_now - 600, power_cycle=False)
    result = tokentool_json("sync", "--port", token.pty)
    assert abs(result["correction_s"] - 3 * 3600) < 10 and result["clock_was_set"] is True
    code, out, _ = run_tokentool("outbox", "export", "--format", "json")
    exported = __import__("json").loads(out)["records"]
    assert all(abs(r["first_seen_corrected"] - r["first_seen"] - result["correction_s"]) == 0 for r in exported)
    assert all(abs(r["first_seen_corrected"] - time.time()) < 3 * 3600 for r in exported)


def test_wrong_protocol_version_is_refused_and_changes_nothing(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(3)
    before = tokentool_json("info", "--port", token.pty)
    transport = SerialTransport(token.pty)
    try:
        client = SyncClient(transport, versions=(2, 2))
        with pytest.raises(VersionMismatch, match="speaks sync protocol v1.*v2"):
            client.connect()
        with pytest.raises(Exception, match="handshake first"):
            client.call(m.ACK, hc.ack_request(3))  # the token ignores commands after a refused greeting
    finally:
        transport.close()
    after = tokentool_json("info", "--port", token.pty)
    assert (after["pending"], after["acked_seq"], after["clock_set"]) == (3, 0, before["clock_set"])


def test_unresponsive_port_gives_a_clear_error(tmp_path):
    master, slave = os.openpty()  # a port where nothing ever answers
    try:
        started = time.monotonic()
        code, _, err = run_tokentool("info", "--port", os.ttyname(slave), "--timeout", "0.3")
        assert code == 3 and "no token answered" in err and os.ttyname(slave) in err
        assert time.monotonic() - started < 10
    finally:
        os.close(master)
        os.close(slave)


def test_plain_micropython_board_is_recognised_as_the_wrong_device():
    """A board with MicroPython but without the app: the bare REPL of the real interpreter, its
    console on a pty, bridged to the pty the tool opens (as a USB-serial chip would be)."""
    import select
    import threading
    import tty

    console_master, console_slave = os.openpty()
    tty.setraw(console_slave)
    user_master, user_slave = os.openpty()
    tty.setraw(user_slave)
    path = os.ttyname(user_slave)
    repl = subprocess.Popen([micropython.interpreter(), "-i"], stdin=console_slave, stdout=console_slave,
                            stderr=console_slave, start_new_session=True)
    os.close(console_slave)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([console_master, user_master], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(user_master if fd == console_master else console_master, data)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        code, _, err = run_tokentool("info", "--port", path, "--timeout", "0.5")
        assert code == 4 and "plain MicroPython REPL" in err and path in err, err
        assert repl.poll() is None, "the board was not reset or stopped by the probe"
    finally:
        stop.set()
        thread.join()
        repl.kill()
        repl.wait()
        for fd in (console_master, user_master, user_slave):
            os.close(fd)
