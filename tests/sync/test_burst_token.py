"""Burst tokens as the virtual token runs them (main.py, hal_virtual's deep sleep, the
supervisor's air): two provisioned `--profile burst` wearables deep-sleep between wakes on the
whole minute of their clinic-set clocks, hear each other at every shared wake, and keep each
contact as one record per interval across the sleeps; a host that plugs in wakes the token."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synchelpers import run_tokentool, tokentool_json  # noqa: E402
from virtual_token import logged_encounters, running_token  # noqa: E402

pytestmark = pytest.mark.timeout(300)
TIME_SCALE = 30
START_S = 1772438400  # 2026-03-02T08:00:00Z, the scenario's start


def test_burst_tokens_sleep_between_shared_wakes_and_keep_their_contacts(tmp_path, tokentool_home):
    scenario = tmp_path / "together.jsonl"
    scenario.write_text(f'{{"start": "2026-03-02T08:00:00Z", "time_scale": {TIME_SCALE}}}\n'
                        '{"contact": ["ann", "ben"], "from": 0, "to": 7200, "rssi": -58}\n')
    air = tmp_path / "air"
    with running_token(tmp_path / "ann", name="ann", scenario=scenario, air=air) as ann, \
            running_token(tmp_path / "ben", name="ben", air=air) as ben:
        for token in (ann, ben):
            provisioned = tokentool_json("provision", "--port", token.pty, "--role", "wearable", "--private",
                                         "--profile", "burst")
            assert provisioned["profile"] == "burst"
        time.sleep(2400 / TIME_SCALE)  # 40 minutes of token time
        sleeps = {t.name: t.log().count("deep sleep") for t in (ann, ben)}
        # Unplugged (the port closed), each sleeps after every wake once the host went quiet.
        assert all(n >= 25 for n in sleeps.values()), sleeps
        # Plugging in (opening the port) wakes a sleeping token: it answers at once.
        code, out, err = run_tokentool("info", "--port", ann.pty, "--json")
        assert code == 0, err
        ann.stop()
        ben.stop()
    for me, other in ((ann, ben), (ben, ann)):
        mine = logged_encounters(me.flash)
        assert mine, f"{me.name} logged nothing"
        # The whole intervals after provisioning: ten shared wakes each, kept across nine sleeps.
        full = [e for e in mine if START_S + 600 <= e.first_seen < START_S + 2400 and e.duration_s >= 400]
        assert len(full) >= 2, mine
        assert all(e.scans >= 8 for e in full), full
        assert all(-75 <= e.rssi_mean <= -45 for e in mine)


def test_a_venue_beacon_cannot_be_given_a_wearable_profile(tokentool_home):
    code, _, err = run_tokentool("provision", "--port", "/dev/null", "--role", "venue", "--profile", "burst")
    assert code == 2 and "--profile is for wearables" in err
