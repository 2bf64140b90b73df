"""Decentralized matching: stored logs against published diagnosis keys."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.matching import (DiagnosisKey, RiskConfig, Sighting, match_keys,
                                       score_exposures)
from matching_service.matching.engine import REASON_AEM, REASON_TIME, REASON_TX
from matching_scenario import DAY0, NOW, Emitter, Log

DAY = DAY0 // 86400
TEN_AM = DAY0 + 10 * 3600


def test_log_near_a_case_for_20_minutes_matches_with_times_and_attenuation():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    near = Log("TT-NEAR").hear(case, TEN_AM, TEN_AM + 1200, every_s=60, rssi=-60)
    result = match_keys(near.sightings, case.keys(DAY, DAY), now_s=NOW)
    assert result.rejections == []
    # 21 scans over three 10-minute intervals: 10 + 10 + 1 scans, one record per RPI.
    assert [(m.first_seen - TEN_AM, m.duration_s) for m in result.matches] == \
        [(0, 540), (600, 540), (1200, 0)]
    assert {m.sender for m in result.matches} == {"TT-CASE"}
    assert {m.observer for m in result.matches} == {"TT-NEAR"}
    assert {(m.attenuation_db, m.min_attenuation_db, m.tx_power_dbm) for m in result.matches} \
        == {(50, 50, -10)}
    [day] = score_exposures(result.matches)
    # The last interval's single scan counts this observer's usual 60 s between scans.
    assert day.weighted_s == pytest.approx(600 + 600 + 60)
    assert day.exposed and day.first_seen == TEN_AM and day.last_seen == TEN_AM + 1200


def test_other_logs_and_other_keys_do_not_match():
    case, stranger = Emitter("TT-CASE"), Emitter("TT-STRANGER")
    log = Log("TT-OBS").hear(stranger, TEN_AM, TEN_AM + 3600)
    result = match_keys(log.sightings, case.keys(DAY - 3, DAY), now_s=NOW)
    assert result.matches == [] and result.rejections == []


def test_phone_keys_match_like_token_keys():
    phone = Emitter("phone-key-server-batch-7", escrowed=False, tx_power_dbm=-20)
    log = Log("TT-OBS").hear(phone, TEN_AM, TEN_AM + 900, rssi=-70)
    result = match_keys(log.sightings, phone.keys(DAY, DAY, source="import:export-7.zip"),
                        now_s=NOW)
    assert len(result.matches) == 2
    assert {m.sender for m in result.matches} == {"import:export-7.zip"}
    assert {m.attenuation_db for m in result.matches} == {50}


def test_every_observer_of_the_same_identifier_is_matched():
    case = Emitter("TT-CASE")
    logs = [Log(serial).hear(case, TEN_AM, TEN_AM + 300) for serial in ("TT-A", "TT-B")]
    result = match_keys(logs[0].sightings + logs[1].sightings, case.keys(DAY, DAY), now_s=NOW)
    assert sorted(m.observer for m in result.matches) == ["TT-A", "TT-B"]


@pytest.mark.parametrize("clock_error_s, matched", [
    (0, True), (90 * 60, True), (7200, True), (-7200, True),
    (7200 + 600, False), (-7200 - 600, False), (5 * 3600, False)])
def test_sender_clock_error_is_tolerated_up_to_two_hours(clock_error_s, matched):
    case = Emitter("TT-CASE", clock_error_s=clock_error_s)
    log = Log("TT-OBS").hear(case, TEN_AM + 60, TEN_AM + 60)   # one scan, inside one interval
    result = match_keys(log.sightings, case.keys(DAY - 1, DAY + 1), now_s=NOW)
    assert bool(result.matches) is matched
    if not matched:
        assert [r.reason for r in result.rejections] == [REASON_TIME]


def test_tolerance_is_configurable_and_a_record_spanning_a_boundary_covers_both_intervals():
    case = Emitter("TT-CASE", clock_error_s=1)   # sender one second ahead
    strict = RiskConfig(interval_tolerance=0)
    # Heard at the last second of an interval by the observer: the sender already rolled over.
    single = Log("TT-OBS").hear(case, TEN_AM + 599, TEN_AM + 599)
    assert match_keys(single.sightings, case.keys(DAY, DAY), strict, now_s=NOW).matches == []
    # The same RPI in a record that runs into the next interval is within the record's span.
    spanning = Log("TT-OBS")
    s = single.sightings[0]
    spanning.add(s.rpi, s.aem, s.first_seen, 2, 2, s.rssi_max, s.rssi_mean)
    assert len(match_keys(spanning.sightings, case.keys(DAY, DAY), strict, now_s=NOW).matches) == 1


def test_observer_clock_hours_off_matches_only_after_correction():
    case = Emitter("TT-CASE")
    corrected = Log("TT-OBS").hear(case, TEN_AM, TEN_AM + 600)
    uncorrected = Log("TT-OBS").hear(case, TEN_AM, TEN_AM + 600, time_shift_s=-5 * 3600)
    keys = case.keys(DAY, DAY)
    assert len(match_keys(corrected.sightings, keys, now_s=NOW).matches) == 2
    result = match_keys(uncorrected.sightings, keys, now_s=NOW)
    assert result.matches == [] and {r.reason for r in result.rejections} == {REASON_TIME}


def test_record_made_with_an_unset_clock_matches_at_the_senders_interval():
    case = Emitter("TT-CASE")
    log = Log("TT-OBS").hear(case, TEN_AM, TEN_AM + 300, flags=0x01, time_shift_s=1000 - TEN_AM)
    [m] = match_keys(log.sightings, case.keys(DAY, DAY), now_s=NOW).matches
    assert m.clock_unset and m.first_seen == TEN_AM and m.duration_s == 300


@pytest.mark.parametrize("change, reason", [
    (dict(tek=bytes(15)), "key is not 16 bytes"),
    (dict(rolling_period=0), "rolling period is not 1..144"),
    (dict(rolling_period=145), "rolling period is not 1..144"),
    (dict(rolling_start_interval=(DAY + 3) * 144), "key starts in the future"),
    (dict(rolling_start_interval=(DAY - 16) * 144), "key is more than 15 days old"),
    (dict(report_type=5), "key was revoked"),
    (dict(report_type=9), "report type 9 is not matched"),
])
def test_keys_that_fail_validation_are_not_matched(change, reason):
    from dataclasses import replace
    case = Emitter("TT-CASE")
    good = case.keys(DAY, DAY)[0]
    bad = replace(good, **change)
    # The log really heard the RPIs the bad key would produce.
    day = bad.rolling_start_interval // 144
    log = Log("TT-OBS").hear(case, day * 86400 + 36000, day * 86400 + 37200)
    if len(bad.tek) == 16 and bad.rolling_period == 144:
        bad = replace(bad, tek=case.tek(day))
    result = match_keys(log.sightings, [bad], now_s=NOW)
    assert result.matches == []
    assert [(r.seq, r.reason) for r in result.rejections] == [(-1, reason)]


def test_a_key_covers_only_its_rolling_period():
    case = Emitter("TT-CASE")
    log = Log("TT-OBS").hear(case, TEN_AM, TEN_AM + 1200)       # intervals 60, 61, 62 of the day
    key = DiagnosisKey(case.tek(DAY), DAY * 144, 61, source="TT-CASE")   # intervals 0..60
    result = match_keys(log.sightings, [key], now_s=NOW)
    assert [m.enin - DAY * 144 for m in result.matches] == [60]


def test_aem_with_implausible_tx_power_or_garbage_is_rejected():
    loud = Emitter("TT-LOUD", tx_power_dbm=40)
    log = Log("TT-OBS").hear(loud, TEN_AM, TEN_AM + 60)
    result = match_keys(log.sightings, loud.keys(DAY, DAY), now_s=NOW)
    assert result.matches == [] and [r.reason for r in result.rejections] == [REASON_TX]

    case = Emitter("TT-CASE")
    s = Log("TT-OBS").hear(case, TEN_AM, TEN_AM + 60).sightings[0]
    forged = Log("TT-OBS").add(s.rpi, bytes([s.aem[0] ^ 0x80]) + s.aem[1:], s.first_seen,
                               s.duration_s, s.scans, s.rssi_max, s.rssi_mean)
    result = match_keys(forged.sightings, case.keys(DAY, DAY), now_s=NOW)
    assert result.matches == [] and [r.reason for r in result.rejections] == [REASON_AEM]


def test_malformed_sighting_is_refused_with_a_clear_error():
    bad = Sighting("TT-OBS", 7, b"short", bytes(4), TEN_AM, 0, 1, -60, -60)
    with pytest.raises(ValueError, match="TT-OBS/7 has an RPI of 5 bytes"):
        match_keys([bad], [], now_s=NOW)


@settings(max_examples=60, deadline=None)
@given(clock_error_s=st.integers(-5 * 3600, 5 * 3600), heard_at=st.integers(0, 86399),
       tolerance=st.integers(0, 18))
def test_match_exactly_when_the_senders_interval_is_within_tolerance(clock_error_s, heard_at,
                                                                      tolerance):
    case = Emitter("TT-CASE", clock_error_s=clock_error_s)
    t = DAY0 + heard_at
    log = Log("TT-OBS").hear(case, t, t)
    sent_enin = (t + clock_error_s) // 600
    within = abs(sent_enin - t // 600) <= tolerance
    result = match_keys(log.sightings, case.keys(DAY - 1, DAY + 1),
                        RiskConfig(interval_tolerance=tolerance), now_s=NOW)
    assert [m.enin for m in result.matches] == ([sent_enin] if within else [])
    assert len(result.rejections) == (0 if within else 1)
