"""`make demo`, shortened: the whole chain on real virtual tokens, and what it must show.

This is also the end-to-end test of the matching service with real tokens: four wearers and a
venue beacon share a scenario; the tokens are provisioned, synced over their ptys, uploaded;
one is reported positive with a one-time code. The case report must name the wearers she was
near and the market with the right times; the household contact must turn exposed and the
neighbour heard faintly through a wall must not.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HOUR = 3600
SLACK_S = 12 * 60  # a contact is seen from the first scan window after it starts (<= 5 min)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "host_tools.demo", "--quick", "--day-seconds", "40",
                           "--workdir", str(workdir)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the demo failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout, json.loads((workdir / "summary.json").read_text())


def test_demo_narrates_every_step(demo):
    out, _ = demo
    for step in ("matching service", "Technician", "The day passes", "Clinic: syncing",
                 "one-time code", "case report", "exposure status", "simulated community"):
        assert step in out
    # one wearer synced over the USB cable, one over Bluetooth after pressing the button
    assert "(USB cable)" in out
    bluetooth = next(line for line in out.splitlines() if "(Bluetooth" in line)
    assert "synced" in bluetooth and "new records" in bluetooth


def test_case_report_names_the_contacts_and_the_market_with_their_times(demo):
    _, summary = demo
    serial = summary["tokens"]
    start = summary["scenario_start"]
    report = summary["case_report"]
    assert report["token"] == serial["amina"]
    contacts = {c["serial"]: c for c in report["contacts"]}
    bakari = contacts[serial["bakari"]]
    assert abs(bakari["first_seen"] - (start + 2 * HOUR)) <= SLACK_S
    assert abs(bakari["last_seen"] - (start + 2 * HOUR + 2400)) <= SLACK_S
    assert bakari["exposed"]
    visit = next(v for v in report["venues"] if v["serial"] == serial["market"])
    assert visit["name"] == "Central market"
    assert abs(visit["start"] - (start + 4 * HOUR)) <= SLACK_S
    assert abs(visit["end"] - (start + 5 * HOUR)) <= SLACK_S
    assert serial["chidi"] in {v["serial"] for v in visit["visitors"]}


def test_exposure_status_follows_distance(demo):
    _, summary = demo
    status = summary["status"]
    assert status["bakari"]["exposed"] is True
    assert status["chidi"]["exposed"] is True
    assert status["dede"]["exposed"] is False  # 40 minutes, but through a wall at -96 dBm
    to_call = {e["serial"] for e in summary["case_report"]["exposed"]}
    assert summary["tokens"]["dede"] not in to_call


def test_a_tokens_own_radio_log_gives_its_battery_life(demo):
    out, summary = demo
    estimate = summary["battery_from_log"]
    # chidi runs the continuous profile for the demo's day: it listens ~4 s every ~4.25 min
    # and idles its CPU in between (no light sleep with BLE on stock MicroPython)
    assert estimate["profile"] == "continuous" and estimate["hours"] >= 6
    assert 40 <= estimate["scan_s_per_h"] <= 80 and estimate["awake_share"] == 1
    assert 1 <= estimate["battery_days"] <= 3
    assert "a charge lasts" in out
