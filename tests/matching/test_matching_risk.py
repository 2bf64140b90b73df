"""Risk scoring: GAEN v2 exposure windows approximated from encounter records."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching_service.matching import RiskConfig, match_keys, score_exposures
from matching_service.matching.risk import (bucket_weight, exposure_seconds, scan_gaps,
                                            weighted_seconds)
from matching_scenario import DAY0, NOW, Emitter, Log

DAY = DAY0 // 86400


def _day_scores(log, case, config=RiskConfig()):
    matches = match_keys(log.sightings, case.keys(DAY - 1, DAY + 1), config, now_s=NOW).matches
    return score_exposures(matches, config)


def test_fifteen_minutes_at_weight_one_scores_900_and_is_an_exposure():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    # Scans once a minute, 15 scan instances -> 15 x 60 s; attenuation 50 dB (IMMEDIATE, 1.0).
    log = Log("TT-OBS").hear(case, DAY0 + 36000 + 60, DAY0 + 36000 + 60 + 14 * 60, rssi=-60)
    [day] = _day_scores(log, case)
    assert day.weighted_s == pytest.approx(900)
    assert day.exposed


def test_nine_minutes_is_not_an_exposure_and_the_threshold_is_configurable():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    log = Log("TT-OBS").hear(case, DAY0 + 36060, DAY0 + 36060 + 8 * 60, rssi=-60)
    [day] = _day_scores(log, case)
    assert day.weighted_s == pytest.approx(540) and not day.exposed   # default: 660 weighted s
    [day] = _day_scores(log, case, RiskConfig(exposure_threshold_s=500))
    assert day.exposed


@pytest.mark.parametrize("rssi, weight", [
    (-65, 1.0),   # 55 dB: IMMEDIATE
    (-70, 1.0),   # 60 dB: IMMEDIATE (threshold inclusive)
    (-71, 0.5),   # 61 dB: NEAR
    (-72, 0.5),   # 62 dB
    (-73, 0.25),  # 63 dB: MEDIUM, a quarter (mostly people 3-5 m away)
    (-78, 0.25),  # 68 dB
    (-79, 0.0),   # 69 dB: OTHER, too far to count
])
def test_attenuation_buckets_weight_the_same_minutes(rssi, weight):
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    # 30 scans a minute apart, ten in each of three intervals: 1800 s of exposure.
    log = Log("TT-OBS").hear(case, DAY0 + 36000, DAY0 + 36000 + 29 * 60, rssi=rssi)
    [day] = _day_scores(log, case)
    assert day.weighted_s == pytest.approx(1800 * weight)
    assert day.exposed is (1800 * weight >= 660)
    assert day.min_attenuation_db == -10 - rssi


def test_typical_attenuation_is_the_mean_and_the_closest_is_reported():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    # Nine scans: five at -62 dBm, four at -78 dBm; mean -69.1 dBm.
    log = Log("TT-OBS").hear(case, DAY0 + 36060, DAY0 + 36060 + 8 * 60, rssi=-70, rssi_spread=8)
    [m] = match_keys(log.sightings, case.keys(DAY, DAY), now_s=NOW).matches
    assert (m.min_attenuation_db, m.attenuation_db) == (52, 59)


def test_contact_across_midnight_counts_on_two_utc_days():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    midnight = DAY0 + 86400
    log = Log("TT-OBS").hear(case, midnight - 480, midnight + 420, rssi=-60)
    days = _day_scores(log, case)
    assert [d.day for d in days] == [DAY, DAY + 1]
    assert [d.weighted_s for d in days] == [pytest.approx(480), pytest.approx(480)]
    assert not any(d.exposed for d in days)   # 16 minutes, but split over two days


def test_gaen_cadence_of_4_minutes_counts_every_scan_instance():
    # Scans every 240 s (the token's profile, like Google's scanner) for 12 minutes: four scan
    # instances, 3 in one interval and 1 in the next; GAEN counts 4 x 240 s.
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    log = Log("TT-OBS").hear(case, DAY0 + 36000, DAY0 + 36000 + 720, every_s=240, rssi=-60)
    assert [s.scans for s in log.sightings] == [3, 1]
    [day] = _day_scores(log, case)
    assert day.weighted_s == pytest.approx(960) and day.exposed


def test_single_scan_of_an_observer_with_no_multi_scan_record_counts_120_s():
    case = Emitter("TT-CASE", tx_power_dbm=-10)
    log = Log("TT-OBS").hear(case, DAY0 + 36000, DAY0 + 36000)
    [day] = _day_scores(log, case)
    assert day.weighted_s == pytest.approx(120)
    assert scan_gaps(log.sightings) == {}
    two = Log("TT-OBS").hear(case, DAY0 + 30000, DAY0 + 30000 + 400, every_s=200)
    assert scan_gaps(two.sightings + log.sightings) == {"TT-OBS": 200}


def test_scan_gaps_are_capped_and_single_scans_count_as_unknown():
    config = RiskConfig()
    assert exposure_seconds(0, 1, config) == 120
    assert exposure_seconds(0, 1, config, scan_gap_s=250) == 250
    assert exposure_seconds(0, 1, config, scan_gap_s=900) == 300
    assert exposure_seconds(540, 10, config) == 600
    assert exposure_seconds(1200, 3, config) == 900      # 600 s gaps capped at 300
    assert weighted_seconds(540, 10, 50, 1, config) == 600
    assert weighted_seconds(540, 10, 50, 5, config) == 0   # revoked report type weighs nothing


def test_config_is_validated():
    with pytest.raises(ValueError, match="increasing"):
        RiskConfig(attenuation_thresholds_db=(60, 50, 70))
    with pytest.raises(ValueError, match="0..2.5"):
        RiskConfig(bucket_weights=(3.0, 1.0, 0.5, 0.0))
    with pytest.raises(ValueError, match="positive"):
        RiskConfig(exposure_threshold_s=0)


@given(duration=st.integers(0, 600), scans=st.integers(1, 255), att=st.integers(0, 120),
       closer=st.integers(0, 120))
def test_score_never_grows_with_distance_nor_beyond_300_s_per_scan(duration, scans, att, closer):
    config = RiskConfig()
    far = weighted_seconds(duration, scans, max(att, closer), 1, config)
    near = weighted_seconds(duration, scans, min(att, closer), 1, config)
    assert 0 <= far <= near <= scans * 300
    assert bucket_weight(att, config) in config.bucket_weights


def test_a_day_heard_from_both_sides_counts_the_mean_of_the_two_measurements():
    from matching_service.matching.risk import both_sides_s
    assert both_sides_s([900.0, 300.0]) == 600.0      # not the larger one: both measure the same contact
    assert both_sides_s([700.0]) == 700.0             # the other side has not synced (or heard) yet
    assert both_sides_s([]) == 0.0
