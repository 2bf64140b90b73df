"""One-time codes and diagnosis keys: forged, reused, expired and misdirected codes; keys that
fail the reference validation; a guessing budget per key."""
from __future__ import annotations

import base64
import os
import time

import pytest
import sqlalchemy as sa

from host_tools.service_client import ServiceClient, ServiceError
from matching_service.settings import normalise_db_url

from .scenario import Device

DAY_S = 86400


@pytest.fixture
def case(service, clinic):
    device = Device()
    clinic.register([device.provisioning()])
    return device


def _keys(device, days):
    return device.diagnosis_keys(days)


def _redeem(clinic, code, device, keys):
    return clinic.report_positive(code, keys, device.upload_body(int(time.time()) - 60))


def _invalid_key_sets(device):
    today = int(time.time()) // DAY_S
    good = _keys(device, [today - 1])[0]
    now_interval = int(time.time()) // 600
    yield "future key", [{**good, "rolling_start_interval": now_interval + 1}]
    yield "16 days old", [{**good, "rolling_start_interval": (today - 17) * 144}]
    yield "period 0", [{**good, "rolling_period": 0}]
    yield "period 145", [{**good, "rolling_period": 145}]
    yield "15-byte key", [{**good, "key": base64.b64encode(os.urandom(15)).decode()}]
    yield "31 keys", [{**good, "key": base64.b64encode(os.urandom(16)).decode(),
                       "rolling_start_interval": today * 144 - 144 - i} for i in range(31)]
    yield "duplicate key", [good, good]
    yield "risk 9", [{**good, "transmission_risk": 9}]


def test_keys_failing_validation_are_refused_and_the_code_survives(service, clinic, official, case):
    code = official.issue_code(case.serial)["code"]
    for name, keys in _invalid_key_sets(case):
        with pytest.raises(ServiceError) as refused:
            _redeem(clinic, code, case, keys)
        assert refused.value.status == 422, name
    # Nothing was consumed: the same code still works with valid keys.
    result = _redeem(clinic, code, case, _keys(case, [int(time.time()) // DAY_S - 1]))
    assert result["keys_stored"] == 1


def test_forged_code_is_refused(service, clinic, case):
    for forged in ("0000-0000-0000", "not a code", "ABCD-EFGH-JKMN"):
        with pytest.raises(ServiceError) as refused:
            _redeem(clinic, forged, case, _keys(case, [int(time.time()) // DAY_S - 1]))
        assert refused.value.status == 403


def test_code_for_another_token_is_refused(service, clinic, official, case):
    other = Device()
    clinic.register([other.provisioning()])
    code = official.issue_code(other.serial)["code"]
    with pytest.raises(ServiceError) as refused:
        _redeem(clinic, code, case, _keys(case, [int(time.time()) // DAY_S - 1]))
    assert refused.value.status == 403
    assert "another token" in str(refused.value)


def test_expired_code_is_refused(service, clinic, official, case):
    issued = official.issue_code(case.serial)
    engine = sa.create_engine(normalise_db_url(service.db_url))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE verification_codes SET expires_at = :t WHERE id = :i"),
                           {"t": int(time.time()) - 1, "i": issued["code_id"]})
    engine.dispose()
    with pytest.raises(ServiceError) as refused:
        _redeem(clinic, issued["code"], case, _keys(case, [int(time.time()) // DAY_S - 1]))
    assert refused.value.status == 410


def test_codes_are_typed_forgivingly(service, clinic, official, case):
    code = official.issue_code(case.serial)["code"]
    sloppy = code.lower().replace("-", " ").replace("0", "o")
    assert _redeem(clinic, sloppy, case, _keys(case, [int(time.time()) // DAY_S - 1]))["case_id"]


def test_guessing_codes_exhausts_the_key_budget(service, case):
    with ServiceClient(service.url, service.new_key("clinic"), retries=0) as guesser:
        statuses = []
        for i in range(12):
            try:
                _redeem(guesser, f"{i:04d}-0000-0000", case, _keys(case, [int(time.time()) // DAY_S - 1]))
            except ServiceError as error:
                statuses.append(error.status)
    assert statuses[:10] == [403] * 10
    assert statuses[10:] == [429, 429]


def test_code_for_unknown_token_or_venue_is_refused(service, clinic, official):
    with pytest.raises(ServiceError) as refused:
        official.issue_code("TT-FFFFFFFF")
    assert refused.value.status == 404
    venue = Device(role="venue", venue_name="Bus station")
    clinic.register([venue.provisioning()])
    with pytest.raises(ServiceError) as refused:
        official.issue_code(venue.serial)
    assert refused.value.status == 422
