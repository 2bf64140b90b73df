"""Case reports: who the case was near, where it went, who else was there, what looks forged."""
import os

import pytest

from matching_service.matching import (FLAG_IMPLAUSIBLE_ENCOUNTERS, FLAG_RELAY, HEARD_BY_BOTH,
                                       HEARD_BY_CONTACT, abuse_flags, case_report,
                                       resolve_escrowed, venue_visits)
from matching_scenario import DAY0, NOW, Emitter, Log

H = 3600
DAY = DAY0 // 86400


def at(hour, minute=0):
    return DAY0 + hour * H + minute * 60


@pytest.fixture(scope="module")
def town():
    """A case wearer A, a close contact B, a market and a bus station with beacons, C at the
    market while A was there, D at the market later, E who passed A at a distance."""
    t = {name: Emitter("TT-" + name, tx_power_dbm=-10) for name in "ABCDE"}
    t["V"] = Emitter("TT-V-MARKET", role="venue", venue_name="Central Market",
                     venue_place="Kampala/Central", tx_power_dbm=0)
    t["W"] = Emitter("TT-W-BUS", role="venue", venue_name="Bus Station",
                     venue_place="Kampala/North", tx_power_dbm=0)
    logs = {name: Log("TT-" + name) for name in "ABCDE"}
    logs["A"].hear(t["B"], at(9), at(9, 30), rssi=-60)          # A and B side by side
    logs["B"].hear(t["A"], at(9), at(9, 30), rssi=-62)
    logs["A"].hear(t["V"], at(10), at(10, 45), rssi=-70)        # A at the market 10:00-10:45
    logs["C"].hear(t["V"], at(10, 30), at(11), rssi=-75)       # C there 10:30-11:00
    logs["C"].hear(t["A"], at(10, 30), at(10, 40), rssi=-100)  # ... never close to A
    logs["D"].hear(t["V"], at(12), at(13), rssi=-70)            # D there after A left
    logs["E"].hear(t["A"], at(16), at(16, 5), rssi=-95)         # E passed A at a distance
    devices = [e.device() for e in t.values()]
    sightings = [s for log in logs.values() for s in log.sightings]
    return t, logs, devices, sightings


def test_case_report_names_contacts_venue_and_wearers_to_call(town):
    t, logs, devices, sightings = town
    report = case_report("TT-A", sightings, devices, now_s=NOW)
    contacts = {c.serial: c for c in report.contacts}
    assert sorted(contacts) == ["TT-B", "TT-C", "TT-E"]

    b = contacts["TT-B"]
    assert b.heard_by == HEARD_BY_BOTH and b.exposed
    assert (b.first_seen, b.last_seen) == (at(9), at(9, 30))
    assert b.min_attenuation_db == 50 and b.weighted_s >= 900
    assert [d.day for d in b.days] == [DAY]

    e = contacts["TT-E"]
    assert e.heard_by == HEARD_BY_CONTACT and not e.exposed
    assert e.min_attenuation_db == 85 and e.weighted_s == 0
    assert not contacts["TT-C"].exposed

    [visit] = report.venues
    assert (visit.venue_serial, visit.venue_name, visit.venue_place) == \
        ("TT-V-MARKET", "Central Market", "Kampala/Central")
    assert (visit.start, visit.end) == (at(10), at(10, 45))
    [c] = visit.visitors      # D came after A left: not a visitor
    assert (c.serial, c.first_seen, c.last_seen, c.overlap_s, c.exposed) == \
        ("TT-C", at(10, 30), at(11), 15 * 60, True)

    assert report.exposed_serials == ("TT-B", "TT-C")
    assert report.flags == () and report.unresolved_rpis == 0


def test_case_report_with_uploaded_keys_instead_of_the_escrowed_seed(town):
    t, logs, devices, sightings = town
    keys = t["A"].keys(DAY - 13, DAY, source="upload-42")
    private_devices = [d for d in devices if d.serial != "TT-A"]   # A's seed is not escrowed
    report = case_report("TT-A", sightings, private_devices, case_keys=keys, now_s=NOW)
    assert report.exposed_serials == ("TT-B", "TT-C")
    assert {c.serial: c.heard_by for c in report.contacts}["TT-B"] == HEARD_BY_BOTH


def test_venue_visits_merge_sightings_into_windows(town):
    t, logs, devices, sightings = town
    case = Log("TT-A")
    case.hear(t["V"], at(8), at(8, 20)).hear(t["V"], at(8, 40), at(9))    # 20 min gap: one visit
    case.hear(t["V"], at(14), at(14, 10))                                  # later: another visit
    matches = resolve_escrowed(case.sightings, devices).matches
    visits = venue_visits(matches, devices, sightings)
    assert [(v.start, v.end) for v in visits] == [(at(8), at(9)), (at(14), at(14, 10))]
    assert all(v.visitors == () for v in visits)


def test_identifier_heard_at_two_venues_at_once_is_flagged_as_relay(town):
    t, logs, devices, sightings = town
    extra = {name: Log("TT-" + name) for name in ("F", "R")}
    # A is at the bus station 15:00-15:20 (more of A's log: sequence numbers go on).
    a_bus = Log("TT-A", first_seq=1000).hear(t["W"], at(15), at(15, 20))
    extra["F"].hear(t["W"], at(15), at(15, 20)).hear(t["A"], at(15, 5), at(15, 10), rssi=-60)
    # R is at the market, hearing A's identifiers relayed from the bus station at the same time.
    extra["R"].hear(t["V"], at(15), at(15, 20)).hear(t["A"], at(15, 5), at(15, 10), rssi=-60)
    all_sightings = sightings + a_bus.sightings + extra["F"].sightings + extra["R"].sightings
    report = case_report("TT-A", all_sightings, devices, now_s=NOW)
    relays = [f for f in report.flags if f.kind == FLAG_RELAY]
    # One flag per identifier: A's RPI of 15:00-15:10 and the one from 15:10.
    assert len(relays) == 2 and len({f.rpi for f in relays}) == 2
    for flag in relays:
        assert set(flag.serials) == {"TT-F", "TT-R"}
        assert "Bus Station" in flag.detail and "Central Market" in flag.detail
        assert at(15, 5) <= flag.at <= at(15, 10)
    contacts = {c.serial: c for c in report.contacts}
    assert contacts["TT-R"].flags == (FLAG_RELAY,) and contacts["TT-F"].flags == (FLAG_RELAY,)
    assert contacts["TT-B"].flags == ()


def test_same_identifier_at_two_beacons_of_one_place_is_not_relay(town):
    t, logs, devices, sightings = town
    gate = Emitter("TT-V-GATE", role="venue", venue_name="Central Market gate",
                   venue_place="Kampala/Central")
    f = Log("TT-F").hear(t["V"], at(15), at(15, 20)).hear(t["A"], at(15, 5), at(15, 10))
    g = Log("TT-G").hear(gate, at(15), at(15, 20)).hear(t["A"], at(15, 5), at(15, 10))
    venue_devices = devices + [gate.device()]
    presence = []
    for log in (f, g):
        presence += resolve_escrowed(log.sightings, venue_devices).matches
    presence = [m for m in presence if m.sender.startswith("TT-V")]
    assert abuse_flags(f.sightings + g.sightings, presence, venue_devices) == []


def test_token_hearing_an_implausible_crowd_is_flagged(town):
    t, logs, devices, sightings = town
    flood = Log("TT-G").hear(t["A"], at(17), at(17, 20), rssi=-60)
    for _ in range(250):
        flood.add(os.urandom(16), os.urandom(4), at(17, 1), 0, 1, -60, -60)
    report = case_report("TT-A", sightings + flood.sightings, devices, now_s=NOW)
    [flag] = [f for f in report.flags if f.kind == FLAG_IMPLAUSIBLE_ENCOUNTERS]
    assert flag.serials == ("TT-G",) and "251 different identifiers" in flag.detail
    assert {c.serial: c.flags for c in report.contacts}["TT-G"] == (FLAG_IMPLAUSIBLE_ENCOUNTERS,)
    assert report.unresolved_rpis == 0   # the flood is in G's log, not in the case's


def test_case_log_older_than_the_key_window_is_left_unresolved(town):
    t, logs, devices, sightings = town
    old = Log("TT-A", first_seq=5000).hear(t["D"], at(9) - 20 * 86400, at(9, 20) - 20 * 86400)
    report = case_report("TT-A", sightings + old.sightings, devices, now_s=NOW)
    assert "TT-D" not in {c.serial for c in report.contacts}
    assert report.unresolved_rpis == len(old.sightings)


def test_venue_lookup_for_many_beacons_at_once_equals_one_at_a_time(town):
    from matching_service.matching import RiskConfig, SightingIndex
    from matching_service.matching.engine import device_sightings, devices_sightings, interval_plan
    t, logs, devices, sightings = town
    index, config = SightingIndex(sightings), RiskConfig()
    venues = [t["V"].device(), t["W"].device()]
    lo, hi = at(0) // 600 - 5, at(23) // 600
    together = devices_sightings(venues, interval_plan(lo, hi), index, config).matches
    apart = [m for v in venues for m in device_sightings(v, lo, hi, index, config).matches]
    key = lambda m: (m.observer, m.seq, m.sender, m.enin)  # noqa: E731
    assert sorted(together, key=key) == sorted(apart, key=key)
    assert {m.observer for m in together} == {"TT-A", "TT-C", "TT-D"}
    # Asking only for some tokens' logs gives exactly their part of the answer.
    only = devices_sightings(venues, interval_plan(lo, hi), index, config, observers={"TT-C", "TT-X"}).matches
    assert sorted(only, key=key) == sorted([m for m in together if m.observer == "TT-C"], key=key)
    assert index.scan_gaps({"TT-A", "TT-NONE"}).keys() <= {"TT-A"}
