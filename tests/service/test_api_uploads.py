"""Uploads: idempotent by (token, sequence), drift-corrected, and every bad input refused with a
clear error and nothing stored."""
from __future__ import annotations

import base64
import time

import pytest
import sqlalchemy as sa

from host_tools.service_client import ServiceError
from matching_service.settings import normalise_db_url

from .scenario import Device


@pytest.fixture
def token(service, clinic):
    device, other = Device(), Device()
    start = int(time.time()) - 86400
    device.hear(other, start, start + 1800)
    clinic.register([device.provisioning(), other.provisioning()])
    return device


def stored(service, serial):
    engine = sa.create_engine(normalise_db_url(service.db_url))
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT seq, first_seen, first_seen_token FROM encounters WHERE serial = :s ORDER BY seq"),
            {"s": serial}).all()
    engine.dispose()
    return rows


def test_replayed_upload_stores_nothing_twice(service, clinic, token):
    body = token.upload_body(int(time.time()) - 60)
    first = clinic.upload(body)
    again = clinic.upload(body)
    assert first["stored"] == len(token.log) and first["duplicates"] == 0
    assert again["stored"] == 0 and again["duplicates"] == len(token.log)
    assert again["syncs_stored"] == 0
    assert len(stored(service, token.serial)) == len(token.log)


def test_resumed_upload_in_two_batches_equals_one(service, clinic, token):
    now = int(time.time())
    half = len(token.log) // 2
    body = token.upload_body(now - 60)
    sync = body["syncs"][0]
    first = {"token": token.serial, "records": body["records"][:half], "syncs": [sync]}
    second = {"token": token.serial, "records": body["records"][half - 1:], "syncs": [sync]}
    assert clinic.upload(first)["stored"] == half
    result = clinic.upload(second)
    assert result["stored"] == len(token.log) - half and result["duplicates"] == 1
    assert [r[0] for r in stored(service, token.serial)] == list(range(1, len(token.log) + 1))


def test_differing_record_at_a_stored_sequence_is_a_conflict_not_an_overwrite(service, clinic, token):
    now = int(time.time())
    clinic.upload(token.upload_body(now - 60))
    before = stored(service, token.serial)
    forged = Device()
    forged.serial = token.serial
    aligned = (now - 7200) // 600 * 600
    forged.hear(Device(), aligned, aligned + 300)  # one record, seq 1
    result = clinic.upload(forged.upload_body(now - 30))
    assert result["stored"] == 0 and result["conflicts"] == [1]
    assert stored(service, token.serial) == before


def test_clock_correction_interpolates_drift_since_the_previous_sync(service, clinic):
    now = int(time.time())
    device = Device()
    clinic.register([device.provisioning()])
    first_sync = now - 10 * 3600
    clinic.upload({"token": device.serial, "records": [], "syncs": [{
        "synced_at": first_sync, "token_time": first_sync, "correction_s": 0,
        "clock_was_set": True, "first_seq": 0, "last_seq": 0}]})
    # Heard halfway between the syncs; by the second sync the clock is 100 s behind.
    midway = (first_sync + 5 * 3600) // 600 * 600
    device.hear(Device(), midway, midway + 300, clock_offset_s=50)
    body = device.upload_body(now, clock_offset_s=100)
    clinic.upload(body)
    (seq, first_seen, token_time), = stored(service, device.serial)
    assert token_time == midway - 50
    assert abs(first_seen - midway) <= 2


def _raw(service, clinic_key, body, content_type="application/json"):
    with service.http(clinic_key) as http:
        return http.post("/v1/uploads", content=body, headers={"Content-Type": content_type})


@pytest.fixture
def clinic_key(service):
    return service.new_key("clinic")


@pytest.mark.parametrize("body", [b"{", b"", b"[]", b"null", b'{"token": 5}', b"\xff\xfe"])
def test_malformed_json_is_refused_with_one_clear_line(service, clinic_key, body):
    reply = _raw(service, clinic_key, body)
    assert reply.status_code == 422
    assert reply.json()["error"].startswith("invalid request: ")
    assert "\n" not in reply.json()["error"]


def _mutations(token: Device, now: int):
    good = token.upload_body(now - 60)
    rec = good["records"][0]
    corrupt = bytearray(base64.b64decode(rec["data"]))
    corrupt[5] ^= 0x40
    yield "seq as string", {**good, "records": [{**rec, "seq": str(rec["seq"])}]}
    yield "negative seq", {**good, "records": [{**rec, "seq": -1}]}
    yield "data not base64", {**good, "records": [{**rec, "data": "not base64!"}]}
    yield "short record", {**good, "records": [{**rec, "data": base64.b64encode(b"x" * 31).decode()}]}
    yield "failed check", {**good, "records": [{**rec, "data": base64.b64encode(bytes(corrupt)).decode()}]}
    yield "record at the wrong seq", {**good, "records": [{**rec, "seq": rec["seq"] + 1}]}
    yield "seq outside syncs", {**good, "syncs": [{**good["syncs"][0], "first_seq": 100, "last_seq": 200}]}
    yield "no syncs", {**good, "syncs": []}
    yield "repeated seq", {**good, "records": [rec, rec]}
    yield "bool as int", {**good, "syncs": [{**good["syncs"][0], "clock_was_set": 1}]}
    yield "extra field", {**good, "comment": "hello"}
    yield "backwards sync", {**good, "syncs": [{**good["syncs"][0], "first_seq": 5, "last_seq": 1}]}
    yield "bad serial", {**good, "token": "../../etc"}
    yield "sync in the future", {**good, "syncs": [{**good["syncs"][0], "synced_at": now + 86400}]}


def test_every_malformed_upload_is_refused_and_stores_nothing(service, clinic, token):
    now = int(time.time())
    for name, body in _mutations(token, now):
        with pytest.raises(ServiceError) as refused:
            clinic.upload(body)
        assert refused.value.status in (404, 422), name
        assert "\n" not in str(refused.value), name
    assert stored(service, token.serial) == []


def test_unknown_token_is_refused(service, clinic):
    device = Device()
    device.hear(Device(), int(time.time()) - 3600, int(time.time()) - 3000)
    with pytest.raises(ServiceError) as refused:
        clinic.upload(device.upload_body(int(time.time())))
    assert refused.value.status == 404
    assert device.serial in str(refused.value)


def test_oversized_body_is_refused_with_413(service, clinic_key):
    reply = _raw(service, clinic_key, b'{"token": "' + b"A" * (2 * 1024 * 1024) + b'"}')
    assert reply.status_code == 413
    assert reply.json()["code"] == "too_large"


def test_oversized_chunked_body_without_length_is_refused(service, clinic_key):
    def chunks():
        yield b'{"token": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'
    with service.http(clinic_key) as http:
        reply = http.post("/v1/uploads", content=chunks(),
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 413


def test_too_many_records_in_one_upload(service, clinic):
    device = Device()
    clinic.register([device.provisioning()])
    device.hear_noise(int(time.time()) - 86400, 2001)
    with pytest.raises(ServiceError) as refused:
        clinic.upload(device.upload_body(int(time.time())))
    assert refused.value.status == 413
    assert "2000" in str(refused.value)
    assert stored(service, device.serial) == []


def test_concurrent_replays_store_each_record_once(service, clinic, token):
    from concurrent.futures import ThreadPoolExecutor

    body = token.upload_body(int(time.time()) - 60)
    key = service.new_key("clinic")

    def send(_):
        with service.http(key) as http:
            return http.post("/v1/uploads", json=body)

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(send, range(6)))
    assert {r.status_code for r in replies} <= {200, 409}
    assert sum(r.json().get("stored", 0) for r in replies if r.status_code == 200) == len(token.log)
    assert [r[0] for r in stored(service, token.serial)] == [s for s, _ in token.log]


def test_deeply_nested_json_is_a_clean_error(service, clinic_key):
    reply = _raw(service, clinic_key, b"[" * 200_000 + b"]" * 200_000)
    assert reply.status_code == 422
    assert reply.json()["code"] == "invalid_input"
