"""Battery life from a token's own event log (host_tools.power, shown by `tokentool events`)."""
from __future__ import annotations

import json

from host_tools import micropython as mp
from host_tools import power

DEVKITC = json.loads((mp.BOARDS_DIR / "esp32-devkitc" / "board.json").read_text())
T0 = 1_767_225_600


def test_a_continuous_token_idles_between_its_radio_work():
    events = [(T0, "boot", "firmware 0.1.0 role wearable"), (T0, "radio", "continuous scan 0 adv 0 ms"),
              (T0 + 3600, "radio", "continuous scan 57800 adv 19800 ms"),
              (T0 + 7200, "radio", "continuous scan 57800 adv 19800 ms")]
    found = power.estimate(events, DEVKITC)
    p = DEVKITC["power"]
    expected = (57.8 * p["rx_ma"] + 19.8 * p["tx_ma"] + (3600 - 77.6) * p["idle_ma"]) / 3600
    assert found.hours == 2 and found.scan_s_per_h == 57.8 and found.awake_share == 1
    assert abs(found.mean_ma - expected) < 0.01
    assert found.battery_days == round(p["battery_mah"] / found.mean_ma / 24, 1)


def test_a_burst_token_pays_its_wakes_and_little_else():
    events = [(T0, "radio", "burst scan 0 adv 0 ms"), (T0, "sleep", "awake 0 asleep 0 s wakes 0"),
              (T0 + 3600, "radio", "burst scan 120000 adv 2200 ms"),
              (T0 + 3600, "sleep", "awake 120 asleep 3480 s wakes 60")]
    found = power.estimate(events, DEVKITC)
    p = DEVKITC["power"]
    boots = 60 * p["wake_boot_ms"] / 1000
    expected = (120 * p["rx_ma"] + 2.2 * p["tx_ma"] + 0 * p["idle_ma"] + 3480 * p["deep_sleep_ua"] / 1000
                + boots * (p["wake_boot_ma"] - p["deep_sleep_ua"] / 1000)) / 3600
    assert abs(found.mean_ma - expected) < 0.01 and found.wakes_per_h == 60
    assert found.battery_days > 5 * power.estimate(
        [(T0, "radio", "continuous scan 0 adv 0 ms"), (T0 + 3600, "radio", "continuous scan 57800 adv 19800 ms")],
        DEVKITC).battery_days


def test_a_reset_loses_only_the_hour_it_interrupted_and_nothing_means_no_estimate():
    events = [(T0, "radio", "continuous scan 0 adv 0 ms"), (T0 + 3600, "radio", "continuous scan 60000 adv 20000 ms"),
              (T0 + 5000, "boot", "firmware 0.1.0 role wearable"), (T0 + 5000, "radio", "continuous scan 0 adv 0 ms"),
              (T0 + 8600, "radio", "continuous scan 60000 adv 20000 ms"), (T0 + 8600, "radio", "garbage")]
    found = power.estimate(events, DEVKITC)
    assert found.hours == 2 and found.scan_s_per_h == 60
    assert power.estimate(events[:1], DEVKITC) is None
    assert power.estimate([(T0, "store", "commit failed")], DEVKITC) is None


def test_the_estimate_from_a_burst_firmware_run_matches_its_schedule(tmp_path):
    """The real main loop (tests/firmware/burst_hours.py) logs its hours; the estimate from
    those lines sees the wakes, the awake share and the listening the profile schedules."""
    from test_firmware_burst import run_hours
    from tokenfw import scheduler

    prof = scheduler.profile("burst")
    run = run_hours(tmp_path, "2.5")
    found = power.estimate([tuple(e) for e in run["events"]], DEVKITC)
    assert found.profile == "burst" and found.hours == 2  # two whole hours logged
    assert found.wakes_per_h == 59  # 58 in the first hour (two minutes awake after power-on), then 60
    assert abs(found.scan_s_per_h - 3600 / prof["wake_every_s"] * prof["scan_window_ms"] / 1000) <= 2
    awake = prof["awake_s"] / prof["wake_every_s"]
    assert awake <= found.awake_share <= awake + 120 / 7200 + 0.005  # plus the power-on minutes
    assert 2 < found.mean_ma < 9
