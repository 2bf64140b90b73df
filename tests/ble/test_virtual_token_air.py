"""`tokentool virtual start` tokens in the bumble virtual air (TOKENTOOL_AIR set): the whole
virtual token (vboot, littlefs flash image, supervisor, console pty) runs the firmware's radio
adapter over the virtual `bluetooth` module, and two tokens hear each other through bumble."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airlab import AirProcess  # noqa: E402
from virtual_token import logged_encounters, running_token  # noqa: E402

SCALE = 60.0


def test_two_virtual_tokens_hear_each_other_in_the_bumble_air(tmp_path, monkeypatch):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"devices": {"alice": {"at": [0, 0]}, "bob": {"at": [2, 0]}}}))
    with AirProcess(tmp_path / "air.sock", scenario=scenario, time_scale=SCALE, seed=2,
                    log_path=tmp_path / "air.log") as air:
        monkeypatch.setenv("TOKENTOOL_AIR", air.socket_path)
        shared = tmp_path / "world"
        with running_token(tmp_path / "alice", name="alice", air=shared, time_scale=SCALE), \
                running_token(tmp_path / "bob", name="bob", air=shared, time_scale=SCALE):
            deadline = time.monotonic() + 60
            devices = {}
            while time.monotonic() < deadline:
                devices = {d["name"]: d for d in air.control({"op": "status"})["devices"]}
                if all(devices.get(n, {}).get("delivered", 0) > 0 for n in ("alice", "bob")):
                    break
                time.sleep(0.5)
    assert set(devices) >= {"alice", "bob"}, devices
    for name in ("alice", "bob"):
        device = devices[name]
        assert device["advertising"], f"{name} is not advertising"
        assert int(device["address"][:2], 16) >> 6 == 0  # a non-resolvable private address
        assert device["delivered"] > 0, f"{name} heard nothing in a scan window"


def test_plugging_a_token_into_usb_power_opens_its_bluetooth_sync_window(tmp_path, monkeypatch):
    """A host opening the console port is the virtual USB cable: the moment a provisioned token
    is plugged in it offers BLE sync (GAEN advertising resumes when the window closes)."""
    import os
    import subprocess

    tool = Path(sys.executable).with_name("tokentool")
    monkeypatch.setenv("TOKENTOOL_HOME", str(tmp_path / "clinic"))

    def offering(air) -> list[str]:
        found = subprocess.run([str(tool), "scan", "--air", air.socket_path, "--timeout", "2", "--json"],
                               capture_output=True, text=True, timeout=60)
        assert found.returncode == 0, found.stderr
        return [t["serial"] for t in json.loads(found.stdout)]

    with AirProcess(tmp_path / "air.sock", time_scale=1.0, seed=3, log_path=tmp_path / "air.log") as air:
        monkeypatch.setenv("TOKENTOOL_AIR", air.socket_path)
        with running_token(tmp_path / "tok", name="tok", air=tmp_path / "world") as token:
            provisioned = subprocess.run([str(tool), "provision", "--port", token.pty, "--role", "wearable",
                                          "--private", "--json"], capture_output=True, text=True, timeout=120)
            assert provisioned.returncode == 0, provisioned.stderr
            serial = json.loads(provisioned.stdout)["serial"]
            assert offering(air) == []  # unplugged (the port closed): no sync window
            fd = os.open(token.pty, os.O_RDWR | os.O_NOCTTY)  # plugged in again
            try:
                deadline = time.monotonic() + 30
                while serial not in (seen := offering(air)) and time.monotonic() < deadline:
                    pass
            finally:
                os.close(fd)
    assert seen == [serial]


def test_burst_tokens_in_the_bumble_air_leave_it_asleep_and_hear_each_other_at_every_wake(tmp_path, monkeypatch):
    """Deep sleep takes a token's controller off the bumble air and each wake brings a fresh
    one (as NimBLE after a reset); two burst tokens still log each other once a minute."""
    import subprocess

    tool = Path(sys.executable).with_name("tokentool")
    monkeypatch.setenv("TOKENTOOL_HOME", str(tmp_path / "clinic"))
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"devices": {"ann": {"at": [0, 0]}, "ben": {"at": [2, 0]}}}))
    scale = 30.0
    with AirProcess(tmp_path / "air.sock", scenario=scenario, time_scale=scale, seed=2,
                    log_path=tmp_path / "air.log") as air:
        monkeypatch.setenv("TOKENTOOL_AIR", air.socket_path)
        shared = tmp_path / "world"
        with running_token(tmp_path / "ann", name="ann", air=shared, time_scale=scale) as ann, \
                running_token(tmp_path / "ben", name="ben", air=shared, time_scale=scale) as ben:
            for token in (ann, ben):
                done = subprocess.run([str(tool), "provision", "--port", token.pty, "--role", "wearable", "--private",
                                       "--profile", "burst", "--json"], capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
            time.sleep(1500 / scale)  # 25 minutes of token time
            sleeps = {t.name: t.log().count("deep sleep") for t in (ann, ben)}
            ann.stop()
            ben.stop()
    assert all(n >= 15 for n in sleeps.values()), sleeps
    found = logged_encounters(ann.flash)
    # ben heard at the shared wakes of whole intervals, kept across ann's sleeps
    assert any(e.scans >= 6 for e in found), found
