"""Property-based fuzzing of the API over the real server: whatever JSON arrives, the service
answers with a clear 4xx error (never a 500, never a traceback), and valid random uploads are
idempotent."""
from __future__ import annotations

import base64
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from tokenfw import records

from .scenario import Device

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25)

FIELD_NAMES = ["token", "records", "syncs", "seq", "data", "synced_at", "token_time",
               "correction_s", "clock_was_set", "first_seq", "last_seq", "code", "keys", "log",
               "key", "rolling_start_interval", "rolling_period", "tokens", "serial", "role",
               "identity", "seed", "report_type"]
# Bodies shaped like ours (our field names, random values) reach deeper validation paths.
SHAPED = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=6)),
    max_leaves=30)

ENDPOINTS = [("POST", "/v1/uploads", "clinic"), ("POST", "/v1/registry", "clinic"),
             ("POST", "/v1/cases", "clinic"), ("POST", "/v1/codes", "official"),
             ("POST", "/v1/keys", "admin")]
FUZZ = settings(max_examples=35, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _keys(service):
    if not hasattr(service, "fuzz_keys"):
        service.fuzz_keys = {"clinic": service.new_key("clinic"),
                             "official": service.new_key("official"), "admin": service.admin_key}
    return service.fuzz_keys


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=st.one_of(JSON, SHAPED))
def test_any_json_body_gets_a_clear_client_error(service, endpoint, body):
    method, path, role = endpoint
    with service.http(_keys(service)[role]) as http:
        reply = http.request(method, path, json=body)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        error = reply.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_bytes_get_a_clear_client_error(service, raw):
    with service.http(_keys(service)["clinic"]) as http:
        reply = http.post("/v1/uploads", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= reply.status_code < 500
    assert reply.json()["code"] in ("invalid_input", "not_found")


ENCOUNTERS = st.builds(
    records.Encounter, st.binary(min_size=16, max_size=16), st.binary(min_size=4, max_size=4),
    st.integers(1_600_000_000, 1_900_000_000), st.integers(0, 65535), st.integers(0, 255),
    st.integers(-128, 127), st.integers(-128, 127), st.integers(0, 255))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(encounters=st.lists(ENCOUNTERS, min_size=1, max_size=30), first_seq=st.integers(0, 10**6),
       correction=st.integers(-10**6, 10**6))
def test_random_valid_uploads_are_stored_once(service, encounters, first_seq, correction):
    device = Device()
    with service.http(_keys(service)["clinic"]) as http:
        assert http.post("/v1/registry", json={"tokens": [device.provisioning()]}).status_code == 200
        seqs = range(first_seq, first_seq + len(encounters))
        body = {"token": device.serial,
                "records": [{"seq": s, "data": base64.b64encode(records.encode(s, e)).decode()}
                            for s, e in zip(seqs, encounters)],
                "syncs": [{"synced_at": int(time.time()), "token_time": int(time.time()) - correction,
                           "correction_s": correction, "clock_was_set": True,
                           "first_seq": first_seq, "last_seq": seqs[-1]}]}
        first = http.post("/v1/uploads", json=body)
        second = http.post("/v1/uploads", json=body)
        status = http.get(f"/v1/tokens/{device.serial}/status").json()
    assert first.status_code == 200 and first.json()["stored"] == len(encounters)
    assert second.json() == {**first.json(), "stored": 0, "duplicates": len(encounters),
                             "syncs_stored": 0}
    assert status["records"] == len(encounters)
