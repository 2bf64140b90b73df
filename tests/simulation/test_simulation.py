"""The community simulation: reproducible, its ground truth right on hand-made scenarios, its
radio schedule the firmware's own, and a small community run end to end finds known contacts."""
from __future__ import annotations

import sys

import pytest

import numpy as np

from host_tools.simulation import clocks, contacts, tokens
from matching_service.matching import RiskConfig
from host_tools.simulation.community import SLOT_S, CommunityConfig, build
from host_tools.simulation.runner import (SimulationConfig, SimulationError, battery_days, simulate,
                                          wearable_profiles)
from host_tools.simulation.runner import boards as runner_boards
from tokenfw import app, scheduler

SMALL = SimulationConfig(population=120, days=2, seed=7, processes=1, clinic_path="codec")


def _strip_timings(results: dict) -> dict:
    results = dict(results)
    for key in ("seconds", "shared_timings_s"):
        results.pop(key)
    results["profiles"] = {k: {x: y for x, y in v.items() if x != "timings_s"}
                           for k, v in results["profiles"].items()}
    return results


# -- reproducibility ---------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_community_and_the_same_result():
    first = simulate(SMALL)
    again = simulate(SMALL)
    assert _strip_timings(first) == _strip_timings(again)
    other = simulate(SimulationConfig(**{**SMALL.__dict__, "seed": 8}))
    assert _strip_timings(other) != _strip_timings(first)


def test_the_community_depends_only_on_its_seed():
    a = build(CommunityConfig(population=300, days=2, seed=3))
    b = build(CommunityConfig(population=300, days=2, seed=3))
    assert (a.location == b.location).all() and (a.household == b.household).all()
    assert a.outings == b.outings
    # Nights at home, and nobody in a venue outside its opening hours.
    night = [s for s in range(a.slots) if (s % (86400 // SLOT_S)) * SLOT_S < 4 * 3600]
    assert (a.location[:, night] == -1).all()


# -- ground truth on hand-made scenarios -------------------------------------------------------
def _track(place, x, slots, y=0.0):
    return [(s, place, x, y) for s in slots]


def test_fifteen_minutes_within_two_metres_is_a_close_contact():
    found = contacts.close_contacts({0: _track("market", 0.0, range(3)), 1: _track("market", 1.5, range(3))})
    assert found == {(0, 1, 0): 900}


def test_ten_minutes_or_two_and_a_half_metres_is_not():
    assert contacts.close_contacts({0: _track("bus", 0.0, range(2)), 1: _track("bus", 1.0, range(2))}) == {}
    assert contacts.close_contacts({0: _track("bus", 0.0, range(6)), 1: _track("bus", 2.5, range(6))}) == {}


def test_minutes_add_up_over_a_day_but_not_across_midnight():
    per_day = 86400 // SLOT_S
    # Morning and evening of the same day: 2 + 1 slots add up to 15 minutes.
    same_day = [0, 1, 100]
    assert contacts.close_contacts({0: _track("home", 0.0, same_day), 1: _track("home", 1.0, same_day)}) \
        == {(0, 1, 0): 900}
    # Two slots before midnight and one after: neither day reaches 15 minutes.
    across = [per_day - 2, per_day - 1, per_day]
    assert contacts.close_contacts({0: _track("home", 0.0, across), 1: _track("home", 1.0, across)}) == {}


def test_a_wall_between_neighbours_is_no_close_contact():
    tracks = {0: _track("home A", 11.5, range(12)), 1: _track("home B", 12.5, range(12))}
    assert contacts.close_contacts(tracks) == {}


def test_the_simulated_terrace_separates_neighbours_by_a_wall():
    c = build(CommunityConfig(population=400, days=1, seed=5))
    tx = contacts.tx_radiated(c, 0, 5)
    links, truth = contacts.compute(c, tx, 1)
    pairs = set(zip(truth.a.tolist(), truth.b.tolist()))
    # Linked through a party wall, never counted as a contact unless they also met elsewhere.
    for a, b in truth.wall_pairs:
        if (a, b) in pairs:
            assert (c.location[a] == c.location[b]).any() and (c.location[a] >= 0).any()
    # A couple sharing a bedroom is a close contact every night.
    couples = [(a, b) for a in range(c.n) for b in range(a + 1, min(a + 3, c.n))
               if c.household[a] == c.household[b] and c.bedroom[a] == c.bedroom[b] == 0]
    assert couples
    for a, b in couples:
        seconds = truth.seconds[(truth.a == a) & (truth.b == b)]
        assert seconds.sum() >= 6 * 3600


# -- the radio schedule is the firmware's ------------------------------------------------------
@pytest.mark.parametrize("profile", wearable_profiles())
def test_scan_windows_are_the_ones_the_firmware_main_loop_opens(tmp_path, monkeypatch, profile):
    """The firmware's own main loop (tokenfw.app.Token on the simulated-time board) opens its
    scan windows exactly when the simulation says that token listens."""
    sys.path.insert(0, str(tokens.__file__).rsplit("/host_tools/", 1)[0] + "/boards/virtual")
    try:
        import hal_simulated
    finally:
        sys.path.pop(0)
    seed = tokens.schedule_seed(7, 42)

    class Token(app.Token):
        def _rng_seed(self):
            return seed

    start = 1772323200 + 7 * 3600
    board = hal_simulated.open_board({"name": "simulated"}, start_s=start)
    opened = []

    class WatchedRadio(hal_simulated.SimRadio):  # a deep sleep gives the board a fresh radio
        def start_scan(self, duration_ms):
            opened.append((board.rtc.now_s, duration_ms))
            super().start_scan(duration_ms)

    board.radio = WatchedRadio(board.rtc, board.radio.crowd)
    monkeypatch.setattr(hal_simulated, "SimRadio", WatchedRadio)
    (tmp_path / "log").mkdir()
    token = Token(board, root=str(tmp_path))
    token.reconfigure({**token.config, "profile": profile})
    while (sleep_ms := token.run(until=start + 3600)) is not None:  # as main.py: burst deep-sleeps
        board.deep_sleep(sleep_ms)
        token = Token(board, root=str(tmp_path))
    expected = tokens.scan_windows(start, start + 3600, profile, seed)
    window_ms = scheduler.profile(profile)["scan_window_ms"]
    assert len(opened) == len(expected) > 10
    for (at, duration_ms), (w_start, w_end) in zip(opened, expected):
        assert duration_ms == window_ms == round((w_end - w_start) * 1000)
        assert 0 <= at - w_start < 1.0  # the loop wakes within a second of the due time


def test_a_burst_token_wakes_when_the_firmware_scheduler_says_on_its_own_clock():
    """Burst windows are whole minutes of the token's clock (one schedule, computed once), the
    same the scheduler gives that token from its boot; a perfect clock leaves them there."""
    start, end = 1772323200, 1772323200 + 6 * 3600
    prof = scheduler.profile("burst")
    for token in (0, 5, 99):
        own = tokens.scan_windows(tokens.boot_time(7, token, start), end, "burst", tokens.schedule_seed(7, token))
        own = own[own[:, 0] >= start]
        assert (tokens.token_windows(start, end, "burst", 7, token) == own).all()
        assert (own[:, 0] % prof["wake_every_s"] == 0).all()


def test_a_token_clock_is_set_to_the_cable_trip_and_its_firmware_clock_corrects_most_drift():
    start, end = 1772323200, 1772323200 + 14 * 86400
    week = 7 * 86400
    c = clocks.draw(7, 500, start, end, drift_ppm=20, sync_every_s=week)
    syncs = c.first_sync_s[:, None] + week * np.arange(3)[None, :]
    after = np.array([c.error_s(np.arange(500), syncs[:, k] + 1e-3) for k in range(3)])
    assert (after < 0).all() and (after > -0.06).all()      # set at the top of a second, a trip late
    # Between syncs the error grows at the rate tokenfw.clock.Clock leaves uncorrected: the
    # crystal's +-20 ppm (12 s a week) shrinks to a few ppm (its whole-second learning and the
    # week's temperature).
    before = np.array([c.error_s(np.arange(500), syncs[:, k] - 1e-3) for k in (1, 2)])
    assert np.abs(before - after[:2]).max() < 0.4 * 20e-6 * week
    assert np.abs(c.rate).max() < 8e-6
    # A token's windows move with its clock: the same minute marks, shifted by minus the error.
    w = tokens.token_windows(start, start + 3600, "burst", 7, 3, c)
    assert np.allclose(w[:, 0] + c.error_s(3, w[:, 0]), np.round(w[:, 0] + c.error_s(3, w[:, 0])))


def test_the_simulated_rtc_drives_the_firmware_clock_like_a_crystal():
    rtc = clocks.SimulatedRtc(1772323200.0, raw_s=1772323200.0, rate=10e-6)
    rtc.true_s += 86400
    assert rtc.seconds() - 1772323200.0 == pytest.approx(86400 * (1 + 10e-6))
    rtc.set_seconds(1772409600)
    rtc.true_s += 10
    assert rtc.seconds() == pytest.approx(1772409610 + 10e-5)


def test_two_burst_tokens_share_as_much_of_a_window_as_their_clocks_agree():
    window = np.array([600.0, 600.0, 600.0, 600.0, 660.0])
    error = np.array([0.0, 1.5, -3.0, 30.0, 59.0])
    assert tokens.shared_awake_s(window, error, 60, 4).tolist() == [4.0, 2.5, 1.0, 0.0, 3.0]


def test_burst_battery_pays_for_booting_at_every_wake():
    prof = scheduler.profile("burst")
    boards = runner_boards()
    with_boot = battery_days(prof, 5760 * 1000, boards)
    no_boot = battery_days(prof, 5760 * 1000,
                           {k: {**b, "power": {**b["power"], "wake_boot_ms": 0}} for k, b in boards.items()})
    for name, b in boards.items():
        p = b["power"]
        extra_ma = p["wake_boot_ma"] * p["wake_boot_ms"] / 1000 / prof["wake_every_s"]
        assert with_boot[name]["mean_ma"] == pytest.approx(no_boot[name]["mean_ma"] + extra_ma, abs=2e-3)
        assert with_boot[name]["firmware_as_is"] < no_boot[name]["firmware_as_is"]


# -- end to end -----------------------------------------------------------------------------------
def test_a_small_community_run_end_to_end_finds_the_known_contacts(tmp_path):
    seen = {}
    config = SimulationConfig(population=150, days=2, seed=11, processes=1, positive_share=0.03,
                              clinic_path="outbox")
    results = simulate(config, inspect=lambda profile, state: seen.update(state))
    p = results["profiles"]["continuous"]
    c, cases, outcome, serials = seen["community"], seen["cases"], seen["outcome"], seen["serials"]
    assert p["clinic_path"] == "outbox"
    # Known contacts: a case's bedroom partner shares a room with it every night.
    partners = {b for a in cases.tolist() for b in range(c.n)
                if b != a and b not in cases and c.household[b] == c.household[a]
                and c.bedroom[a] == c.bedroom[b] == 0}
    assert partners
    for b in partners:
        assert serials[b] in outcome.escrowed_exposed or serials[b] in outcome.decentralized_exposed
        if c.escrowed[b]:
            assert serials[b] in outcome.escrowed_exposed
    assert p["truth_exposed"] >= len(partners)
    assert p["recall"] >= 0.8
    assert p["venue_recall"] >= 0.8
    # Every case had a full case report here: the engine calls the simulation composes name
    # exactly the wearers the case reports named.
    assert p["case_reports"] == len(cases)
    case_serials = {serials[k] for k in cases.tolist()}
    assert outcome.report_exposed - case_serials == outcome.escrowed_exposed
    # The risk calibration re-derives the same answer for the service's defaults.
    default = next(cal for cal in p["calibration"]
                   if cal["attenuation_thresholds_db"] == list(RiskConfig().attenuation_thresholds_db)
                   and cal["bucket_weights"] == list(RiskConfig().bucket_weights))
    at_default = next(r for r in default["by_threshold"] if r["threshold_s"] == RiskConfig().exposure_threshold_s)
    assert (at_default["recall"], at_default["precision"]) == (p["recall"], p["precision"])
    assert p["flash_bytes_per_day"] > 0 and p["battery_days"]["esp32-devkitc"] > 0

    # The same run through the record codec alone gives the same outcome.
    codec = simulate(SimulationConfig(**{**config.__dict__, "clinic_path": "codec"}))["profiles"]["continuous"]
    for key in ("recall", "precision", "decentralized", "escrowed_with_venue_covisitors", "venue_recall",
                "false_alarms", "thresholds", "calibration"):
        assert codec[key] == p[key], key


def test_bad_parameters_are_refused_with_one_sentence():
    for config, words in ((SimulationConfig(population=1), "population"),
                          (SimulationConfig(days=0), "days"),
                          (SimulationConfig(profile="turbo"), "power profile"),
                          (SimulationConfig(board="esp8266"), "board"),
                          (SimulationConfig(escrowed_share=1.5), "escrowed share")):
        with pytest.raises(SimulationError, match=words):
            simulate(config)
