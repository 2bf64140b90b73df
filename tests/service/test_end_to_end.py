"""End to end over the real server: two tokens and a venue beacon share a scenario, everyone
syncs and uploads, one wearer tests positive. The case report names the other token and the
venue with the right times, the other token turns exposed, a far-away token stays unexposed."""
from __future__ import annotations

import time

import pytest

from host_tools.service_client import ServiceError

from .scenario import Device

DAY_S = 86400


@pytest.fixture
def scenario(service, clinic):
    now = int(time.time())
    day = now // DAY_S - 2
    meet_start = day * DAY_S + 10 * 3600          # 10:00 UTC two days ago
    meet_end = meet_start + 40 * 60                # 40 minutes together at the market
    case = Device(holder_ref="case holder")
    near = Device(holder_ref="neighbour, +000 111")
    far = Device(holder_ref="someone elsewhere")
    market = Device(role="venue", tx_power_dbm=-4, venue_name="Central market",
                    venue_place="Ward 3")
    # The near token's clock runs 95 s behind: the service must correct it from the sync.
    near_offset = 95
    case.hear(near, meet_start, meet_end, rssi=-62)
    case.hear(market, meet_start - 600, meet_end + 600, rssi=-70)
    near.hear(case, meet_start, meet_end, rssi=-61, clock_offset_s=near_offset)
    near.hear(market, meet_start, meet_end, rssi=-72, clock_offset_s=near_offset)
    far.hear_noise(meet_start, 6)
    registered = clinic.register([d.provisioning() for d in (case, near, far, market)])
    assert len(registered["created"]) == 4
    synced_at = now - 3600
    for device, offset in ((near, near_offset), (far, 0)):
        result = clinic.upload(device.upload_body(synced_at, offset))
        assert result["stored"] == len(device.log)
    return {"case": case, "near": near, "far": far, "market": market, "day": day,
            "meet_start": meet_start, "meet_end": meet_end, "synced_at": synced_at}


def test_positive_case_names_contact_and_venue_and_exposes_only_the_near_token(
        service, clinic, official, scenario):
    case, near, far, market = (scenario[k] for k in ("case", "near", "far", "market"))
    assert clinic.status(near.serial)["status"] == "not_exposed"

    code = official.issue_code(case.serial)["code"]
    redeemed = clinic.report_positive(
        code, case.diagnosis_keys([scenario["day"] - 1, scenario["day"], scenario["day"] + 1]),
        case.upload_body(scenario["synced_at"]))
    assert redeemed["keys_stored"] == 3
    assert redeemed["log"]["stored"] == len(case.log)

    report = official.case_report(redeemed["case_id"])
    assert report["token"] == case.serial
    contacts = {c["serial"]: c for c in report["contacts"]}
    assert set(contacts) == {near.serial}
    contact = contacts[near.serial]
    assert contact["heard_by"] == "both"
    assert contact["exposed"] is True
    assert contact["holder_ref"] == "neighbour, +000 111"
    # Times are true times (the near token's 95 s clock lag corrected), within a record.
    assert abs(contact["first_seen"] - scenario["meet_start"]) <= 60
    assert abs(contact["last_seen"] - scenario["meet_end"]) <= 60
    assert contact["closest_attenuation_db"] <= 60

    venues = report["venues"]
    assert [v["name"] for v in venues] == ["Central market"]
    visit = venues[0]
    assert visit["serial"] == market.serial and visit["place"] == "Ward 3"
    assert abs(visit["start"] - (scenario["meet_start"] - 600)) <= 60
    assert abs(visit["end"] - (scenario["meet_end"] + 600)) <= 60
    assert [v["serial"] for v in visit["visitors"]] == [near.serial]

    assert [e["serial"] for e in report["exposed"]] == [near.serial]
    assert far.serial not in contacts
    assert report["flags"] == []

    near_status = clinic.status(near.serial)
    assert near_status["status"] == "exposed"
    assert "EXPOSED" in near_status["message"]
    far_status = clinic.status(far.serial)
    assert far_status["status"] == "not_exposed"
    assert far_status["records"] == len(far.log)

    case_status = clinic.status(case.serial)
    assert case_status["status"] == "positive" and "POSITIVE" in case_status["message"]

    exposed = {e["serial"] for e in official.exposed()}
    assert near.serial in exposed and far.serial not in exposed and case.serial not in exposed


def test_token_uploading_after_the_case_is_matched_against_its_keys(service, clinic, official):
    """New logs trigger matching too: a token that syncs only after the case was reported."""
    now = int(time.time())
    day = now // DAY_S - 1
    start = day * DAY_S + 15 * 3600
    case, late = Device(), Device()
    late.hear(case, start, start + 30 * 60, rssi=-58)
    clinic.register([case.provisioning(), late.provisioning()])
    code = official.issue_code(case.serial)["code"]
    clinic.report_positive(code, case.diagnosis_keys([day]), case.upload_body(now - 60))
    assert clinic.status(late.serial)["status"] == "not_exposed"
    clinic.upload(late.upload_body(now - 30))
    status = clinic.status(late.serial)
    assert status["status"] == "exposed"
    assert {e["method"] for e in status["exposures"]} == {"keys"}


def test_exposure_needs_fifteen_weighted_minutes(service, clinic, official):
    """Five minutes near a case is recorded but does not make a token exposed."""
    now = int(time.time())
    day = now // DAY_S - 1
    start = day * DAY_S + 8 * 3600
    case, brief = Device(), Device()
    brief.hear(case, start, start + 4 * 60, rssi=-58)
    clinic.register([case.provisioning(), brief.provisioning()])
    clinic.upload(brief.upload_body(now - 30))
    code = official.issue_code(case.serial)["code"]
    clinic.report_positive(code, case.diagnosis_keys([day]), case.upload_body(now - 60))
    status = clinic.status(brief.serial)
    assert status["status"] == "not_exposed"
    assert status["exposures"] and not any(e["exposed"] for e in status["exposures"])


def test_reused_code_is_refused_and_changes_nothing(service, clinic, official):
    now = int(time.time())
    case = Device()
    clinic.register([case.provisioning()])
    code = official.issue_code(case.serial)["code"]
    first = clinic.report_positive(code, case.diagnosis_keys([now // DAY_S - 1]),
                                   case.upload_body(now - 60))
    with pytest.raises(ServiceError) as refused:
        clinic.report_positive(code, case.diagnosis_keys([now // DAY_S - 2]),
                               case.upload_body(now - 60))
    assert refused.value.status == 409
    assert [c["case_id"] for c in official.cases() if c["token"] == case.serial] == [first["case_id"]]


def test_relayed_identifier_is_flagged_in_the_case_report(service, clinic, official):
    """The case's RPIs heard at the same moment at a market and, through a relay, at a bus
    station across town: the report flags it instead of trusting it silently."""
    now = int(time.time())
    day = now // DAY_S - 1
    start = day * DAY_S + 14 * 3600
    case, near, victim = Device(), Device(), Device()
    market = Device(role="venue", venue_name="Central market", venue_place="Ward 3")
    station = Device(role="venue", venue_name="Bus station", venue_place="Ward 9")
    for listener, venue in ((near, market), (victim, station)):
        listener.hear(case, start, start + 30 * 60, rssi=-60)
        listener.hear(venue, start, start + 30 * 60, rssi=-70)
    case.hear(market, start, start + 30 * 60, rssi=-70)
    clinic.register([d.provisioning() for d in (case, near, victim, market, station)])
    for listener in (near, victim):
        clinic.upload(listener.upload_body(now - 60))
    code = official.issue_code(case.serial)["code"]
    case_id = clinic.report_positive(code, case.diagnosis_keys([day]),
                                     case.upload_body(now - 60))["case_id"]
    report = official.case_report(case_id)
    relay = [f for f in report["flags"] if f["kind"] == "relay"]
    assert relay and {near.serial, victim.serial} <= set(relay[0]["serials"])
    flagged = {c["serial"] for c in report["contacts"] if "relay" in c["flags"]}
    assert victim.serial in flagged


def test_wearer_at_the_cases_venue_uploading_later_turns_exposed(service, clinic, official):
    """Venue co-visit found from a log uploaded after the case: the wearer never heard the
    case itself (other side of the market) but heard the same beacon at the same time."""
    now = int(time.time())
    day = now // DAY_S - 1
    start = day * DAY_S + 11 * 3600
    case, shopper = Device(), Device()
    market = Device(role="venue", venue_name="Fish market", venue_place="Harbour")
    case.hear(market, start, start + 40 * 60, rssi=-70)
    shopper.hear(market, start + 10 * 60, start + 50 * 60, rssi=-75)
    clinic.register([d.provisioning() for d in (case, shopper, market)])
    code = official.issue_code(case.serial)["code"]
    case_id = clinic.report_positive(code, case.diagnosis_keys([day]),
                                     case.upload_body(now - 60))["case_id"]
    assert clinic.status(shopper.serial)["status"] == "not_exposed"
    clinic.upload(shopper.upload_body(now - 30))
    status = clinic.status(shopper.serial)
    assert status["status"] == "exposed"
    assert {(e["method"], e["case_id"]) for e in status["exposures"]} == {("venue", case_id)}
    venue = official.case_report(case_id)["venues"][0]
    assert venue["name"] == "Fish market"
    assert [v["serial"] for v in venue["visitors"]] == [shopper.serial]
