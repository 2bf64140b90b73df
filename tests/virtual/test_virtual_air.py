"""The whole chain on virtual tokens: two tokens running the real firmware share an air and a
scenario; each logs the other's rotating identifiers (and a foreign phone) as encounter records
that littlefs-python reads from its flash image and the host codec decodes."""
from __future__ import annotations

import json
import time

import pytest

from virtual_token import logged_encounters, running_token

pytestmark = pytest.mark.timeout(120)

PHONE_RPI = bytes(range(0x40, 0x50))
PHONE_ADV = bytes.fromhex("02011a03036ffd17166ffd") + PHONE_RPI + b"\x01\x02\x03\x04"


def test_two_virtual_tokens_log_each_others_identifiers_from_a_shared_scenario(tmp_path):
    scenario = tmp_path / "meet.jsonl"
    scenario.write_text(
        '{"start": "2026-03-02T08:00:00Z", "time_scale": 120}\n'
        '{"contact": ["alice", "bob"], "from": 0, "to": 3600, "rssi": -60}\n'
        f'{{"hear": "bob", "at": 0, "adv": "{PHONE_ADV.hex()}", "rssi": -80}}\n')
    air = tmp_path / "air"
    advertised: dict[str, set[bytes]] = {"alice": set(), "bob": set()}
    with running_token(tmp_path / "alice", name="alice", scenario=scenario, air=air) as alice, \
            running_token(tmp_path / "bob", name="bob", air=air) as bob:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            for name in advertised:
                adv = json.loads((air / "tokens" / f"{name}.json").read_text())["adv"]
                if adv:
                    advertised[name].add(bytes.fromhex(adv)[11:27])  # the RPI in the payload
            try:
                bob_heard = {e.rpi for e in logged_encounters(bob.flash)}
                alice_heard = {e.rpi for e in logged_encounters(alice.flash)}
            except Exception:  # the image is being written right now: look again
                continue
            if bob_heard & advertised["alice"] and PHONE_RPI in bob_heard and alice_heard & advertised["bob"]:
                break
        alice.stop()
        bob.stop()
    bob_log = logged_encounters(bob.flash)
    from_alice = [e for e in bob_log if e.rpi in advertised["alice"]]
    from_phone = [e for e in bob_log if e.rpi == PHONE_RPI]
    assert from_alice, f"bob logged {bob_log}"
    start = 1772438400  # the scenario start, shared world clock
    for encounter in from_alice:
        assert -75 <= encounter.rssi_max <= -45 and -75 <= encounter.rssi_mean <= -45
        assert encounter.scans >= 1
        assert start <= encounter.first_seen < start + 7200
    assert len(from_phone) == 1 and from_phone[0].aem == b"\x01\x02\x03\x04"
    alice_log = logged_encounters(alice.flash)
    assert {e.rpi for e in alice_log} & advertised["bob"], f"alice logged {alice_log}"
    assert all(e.rpi != PHONE_RPI for e in alice_log)  # the phone was only near bob
