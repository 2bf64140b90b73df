"""Clinic sync over BLE: bleak (on the virtual air's backend) talks to the token's GATT sync
service, and what it dumps matches a serial sync of the same token record for record."""
from __future__ import annotations

import os
import subprocess
import time
import tty

import pytest

from airlab import AirProcess, compile_tree
from host_tools import micropython
from host_tools.sync_client import SyncClient
from host_tools.transport.ble import BleTransport, find_sync_windows
from host_tools.transport.serial_port import SerialTransport

RECORDS = 5000


class SyncLab:
    def __init__(self, work, name="ada", content="shared"):
        tree = compile_tree(work / "tree")
        # The token's clock starts on the host's (to the minute, as a clinic token would be):
        # a clock months off would make the token's retention drop the log as the sync sets it.
        self.start_s = int(time.time()) // 60 * 60
        self.air = AirProcess(work / "air.sock", time_scale=1.0, seed=5, log_path=work / "air.log")
        master, slave = os.openpty()
        tty.setraw(slave)
        self.pty = os.ttyname(slave)
        self._slave = slave
        env = dict(micropython.environment())
        env["MICROPYPATH"] = str(tree)
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", "heapsize=160K", "-m", "sync_token", name, self.air.socket_path,
             str(work / name), str(RECORDS), str(self.start_s), repr(time.time()), "1.0", content],
            env=env, cwd=str(tree), stdin=master, stdout=master, stderr=open(work / "token.err", "wb"),
        )
        os.close(master)
        self.err = work / "token.err"
        self.serial = "TT-" + name.upper()

    def wait_for_window(self, timeout_s: float = 60.0) -> list:
        import asyncio

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = asyncio.run(find_sync_windows(1.0, self.air.socket_path))
            if found:
                return found
            assert self.proc.poll() is None, self.err.read_text()[-2000:]
        raise AssertionError("the token never opened its sync window: " + self.err.read_text()[-2000:])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._slave)
        self.air.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = SyncLab(tmp_path_factory.mktemp("blesync"))
    yield lab
    lab.close()


def dump_all(transport) -> tuple[list[tuple[int, bytes]], SyncClient]:
    client = SyncClient(transport, timeout_s=2.0)
    client.connect()
    out = []
    for chunk in client.dump(1, RECORDS + 1):
        out.extend(chunk)
    return out, client


def test_scan_finds_the_token_by_its_serial(lab):
    found = lab.wait_for_window()
    assert [name for _, name, _ in found] == ["TT-ADA"]


def test_ble_dump_of_5000_records_matches_a_serial_dump(lab):
    lab.wait_for_window()
    with BleTransport("TT-ADA", air=lab.air.socket_path) as ble:
        started = time.monotonic()
        over_ble, client = dump_all(ble)
        ble_s = time.monotonic() - started
        info = client.info()
        assert ble.mtu > 23  # the MTU exchange happened: answers travel in MTU-3 pieces
    with SerialTransport(lab.pty) as serial:
        over_serial, _ = dump_all(serial)
    assert len(over_ble) == RECORDS
    assert over_ble == over_serial
    assert [seq for seq, _ in over_ble] == list(range(1, RECORDS + 1))
    assert info["serial"] == "TT-ADA"
    print(f"BLE dump: {RECORDS / ble_s:.0f} records/s")


def test_a_dropped_connection_mid_dump_resumes(lab):
    lab.wait_for_window()
    with BleTransport("TT-ADA", air=lab.air.socket_path) as ble:
        client = SyncClient(ble, timeout_s=2.0)
        client.connect()
        got = []
        dropped = False
        for chunk in client.dump(1, RECORDS + 1):
            got.extend(chunk)
            if not dropped and len(got) >= RECORDS // 3:
                answer = lab.air.control({"op": "drop", "name": "ada"})
                assert answer["dropped"] == 1
                dropped = True
        assert dropped and ble.reconnects >= 1
    assert [seq for seq, _ in got] == list(range(1, RECORDS + 1))


def tokentool(*args: str) -> subprocess.CompletedProcess:
    import sys
    from pathlib import Path

    tool = Path(sys.executable).with_name("tokentool")
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=60)


def test_tokentool_scan_lists_the_token_with_its_window_open(lab):
    import json

    lab.wait_for_window()
    result = tokentool("scan", "--air", lab.air.socket_path, "--timeout", "2", "--json")
    assert result.returncode == 0, result.stderr
    tokens = json.loads(result.stdout)
    assert [t["serial"] for t in tokens] == ["TT-ADA"]
    assert tokens[0]["port"] == "ble:TT-ADA" and -100 < tokens[0]["rssi"] < 0
    human = tokentool("scan", "--air", lab.air.socket_path, "--timeout", "2")
    assert "TT-ADA" in human.stdout and "sync window open" in human.stdout


def test_tokentool_scan_rejects_a_bad_timeout_in_one_sentence():
    result = tokentool("scan", "--timeout", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("tokentool: --timeout must be between 0 and 600 seconds")
    assert "Traceback" not in result.stderr


def test_a_missing_token_is_one_clear_sentence(lab):
    from host_tools.errors import TransportError

    with pytest.raises(TransportError, match="TT-NOBODY is not offering Bluetooth sync; press its button"):
        BleTransport("TT-NOBODY", air=lab.air.socket_path, scan_timeout_s=1.5)


def test_a_clinic_sync_over_ble_stores_exactly_what_a_serial_sync_stores(tmp_path):
    """Two tokens with the very same log: one synced by the clinic over BLE, the other over
    its USB console. The outboxes hold the same records, and both tokens end fully acknowledged."""
    from host_tools.outbox import Outbox
    from host_tools.sync_session import sync_token

    over_air = SyncLab(tmp_path / "air", name="eve", content="same")
    over_cable = SyncLab(tmp_path / "cable", name="fay", content="same")
    try:
        over_air.wait_for_window()
        with Outbox(tmp_path / "ble.sqlite") as box, BleTransport("TT-EVE", air=over_air.air.socket_path) as ble:
            ble_report = sync_token(ble, box)
            ble_records = [(seq, bytes(data)) for _, seq, data, *_ in box.records_of("TT-EVE")]
        over_cable.wait_for_window()
        with Outbox(tmp_path / "serial.sqlite") as box, SerialTransport(over_cable.pty) as serial:
            serial_report = sync_token(serial, box)
            serial_records = [(seq, bytes(data)) for _, seq, data, *_ in box.records_of("TT-FAY")]
    finally:
        over_air.close()
        over_cable.close()
    assert ble_report.dumped == serial_report.dumped == RECORDS
    assert ble_report.acked_seq == serial_report.acked_seq == RECORDS
    assert ble_report.pending_on_token == serial_report.pending_on_token == 0
    assert len(ble_records) == RECORDS
    assert ble_records == serial_records


def test_garbage_written_to_the_sync_service_changes_nothing(lab):
    """Random bytes (any length up to the ATT maximum) on the rx characteristic: the token
    skips them, stays up, and answers the next real request with its log intact."""
    import random

    lab.wait_for_window()
    rng = random.Random(9)
    with BleTransport("TT-ADA", air=lab.air.socket_path) as ble:
        for _ in range(60):
            ble.write(bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 7, 20, 244, 509)))))
        ble.write(b"\x03\x03\x04" * 100)  # Ctrl-C and Ctrl-D on the console mean nothing here
        client = SyncClient(ble, timeout_s=2.0)
        client.connect()
        info = client.info()
    assert lab.proc.poll() is None
    assert info["next_seq"] == RECORDS + 1 and info["serial"] == "TT-ADA"


def test_tokentool_sync_over_ble_by_serial(lab, tmp_path):
    """The clinic's own command with `--port ble:SERIAL`: one line, every record in the outbox,
    the token acknowledged (last: it empties the shared token's pending log)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    lab.wait_for_window()
    env = dict(os.environ, TOKENTOOL_AIR=str(lab.air.socket_path),
               TOKENTOOL_OUTBOX=str(tmp_path / "outbox.sqlite"), TOKENTOOL_HOME=str(tmp_path))
    done = subprocess.run([str(Path(sys.executable).with_name("tokentool")), "sync", "--port", "ble:TT-ADA", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    text = json.dumps(report)
    assert "TT-ADA" in text and str(RECORDS) in text
    bad = subprocess.run([str(Path(sys.executable).with_name("tokentool")), "sync", "--port", "ble:not a token"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.startswith("tokentool: ") and "\n" == bad.stderr[-1]
    assert bad.stderr.count("\n") == 1
