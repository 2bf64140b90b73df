"""Roles, hashed keys, per-key rate limits and the audit log, over the real server."""
from __future__ import annotations

import sqlalchemy as sa

from matching_service.settings import normalise_db_url

from .scenario import Device


def test_requests_without_a_valid_key_are_refused(service):
    with service.http() as http:
        assert http.get("/v1/tokens/TT-00000000/status").status_code == 401
    for key in ("nonsense", "ms_aaaaaaaaaaaa_" + "A" * 43):
        with service.http(key) as http:
            reply = http.get("/v1/tokens/TT-00000000/status")
            assert reply.status_code == 401
            assert reply.json()["code"] == "unauthorized"


def test_wrong_role_is_forbidden_and_audited(service):
    official_key = service.new_key("official")
    clinic_key = service.new_key("clinic")
    with service.http(official_key) as http:
        reply = http.post("/v1/uploads", json={"token": "TT-00000000", "records": [], "syncs": []})
        assert reply.status_code == 403
        assert "clinic" in reply.json()["error"]
    with service.http(clinic_key) as http:
        assert http.post("/v1/codes", json={"token": "TT-00000000"}).status_code == 403
        assert http.get("/v1/cases/1/report").status_code == 403
        assert http.post("/v1/keys", json={"role": "admin"}).status_code == 403
    with service.http(service.admin_key) as http:
        entries = http.get("/v1/audit", params={"key_id": official_key.split("_")[1]}).json()["entries"]
    assert any(e["outcome"] == "denied" and e["action"] == "POST /v1/uploads" for e in entries)


def test_keys_are_stored_hashed(service):
    key = service.new_key("clinic")
    secret = key.split("_", 2)[2]
    engine = sa.create_engine(normalise_db_url(service.db_url))
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT key_id, secret_hash FROM api_keys")).all()
    engine.dispose()
    assert key.split("_")[1] in {r[0] for r in rows}
    assert all(secret.encode() not in bytes(r[1]) for r in rows)


def test_revoked_key_stops_working(service):
    key = service.new_key("clinic")
    key_id = key.split("_")[1]
    with service.http(service.admin_key) as admin:
        assert admin.delete(f"/v1/keys/{key_id}").status_code == 200
        assert admin.delete(f"/v1/keys/{key_id}").status_code == 404
    with service.http(key) as http:
        assert http.get("/v1/tokens/TT-00000000/status").status_code == 401


def test_per_key_rate_limit_answers_429_with_retry_after(service):
    key = service.new_key("clinic", rate_limit_per_min=3)
    other = service.new_key("clinic")
    with service.http(key) as http:
        codes = [http.get("/v1/tokens/TT-00000000/status").status_code for _ in range(5)]
        assert codes[:3] == [404, 404, 404]
        limited = http.get("/v1/tokens/TT-00000000/status")
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
    with service.http(other) as http:  # the limit is per key
        assert http.get("/v1/tokens/TT-00000000/status").status_code == 404


def test_actions_are_audited_with_who_and_what(service, clinic):
    device = Device()
    clinic.register([device.provisioning()])
    clinic.upload(device.upload_body(0))
    with service.http(service.admin_key) as http:
        entries = http.get("/v1/audit", params={"limit": 1000}).json()["entries"]
    mine = [e for e in entries if e["target"] == device.serial and e["action"] == "upload"]
    assert mine and mine[0]["role"] == "clinic" and mine[0]["outcome"] == "ok"


def test_secrets_are_never_returned_and_seeds_sealed_at_rest(service, clinic):
    device = Device()
    clinic.register([device.provisioning()])
    with service.http(service.new_key("official")) as http:
        public = http.get(f"/v1/registry/{device.serial}").json()
    assert "seed" not in public and "auth_key" not in public
    assert public["holder_ref"] == device.holder_ref
    engine = sa.create_engine(normalise_db_url(service.db_url))
    with engine.connect() as connection:
        sealed = connection.execute(sa.text("SELECT seed_encrypted FROM devices WHERE serial = :s"),
                                    {"s": device.serial}).scalar()
    engine.dispose()
    assert device.seed not in bytes(sealed)
    assert clinic.auth_key(device.serial) == device.auth_key


def test_registration_conflicts_are_refused_and_change_nothing(service, clinic):
    device = Device()
    clinic.register([device.provisioning()])
    assert clinic.register([device.provisioning()])["unchanged"] == [device.serial]
    changed = device.provisioning()
    changed["seed"] = Device().provisioning()["seed"]
    newcomer = Device()
    with service.http(service.new_key("clinic")) as http:
        reply = http.post("/v1/registry", json={"tokens": [newcomer.provisioning(), changed]})
        assert reply.status_code == 409
        assert http.get(f"/v1/registry/{newcomer.serial}").status_code == 404
        bad = {**Device().provisioning(), "identity": "private"}
        assert http.post("/v1/registry", json={"tokens": [bad]}).status_code == 422
        venue = {**Device(role="venue").provisioning()}
        venue.pop("venue_name", None)
        assert http.post("/v1/registry", json={"tokens": [venue]}).status_code == 422


PUBLIC = {("get", "/v1/health"), ("get", "/v1/exports/latest.zip"),
          ("get", "/v1/exports/public-key.pem")}


def test_every_documented_operation_needs_a_key_except_the_public_ones(service):
    """Schema-driven: walk the OpenAPI document; nothing private answers without a key."""
    with service.http() as http:
        document = http.get("/openapi.json").json()
        for path, operations in document["paths"].items():
            concrete = (path.replace("{serial}", "TT-00000001").replace("{case_id}", "1")
                        .replace("{key_id}", "abcdefghijkl"))
            for method in operations:
                reply = http.request(method.upper(), concrete, json={} if method == "post" else None)
                if (method, path) in PUBLIC:
                    assert reply.status_code == 200, (method, path)
                else:
                    assert reply.status_code == 401, (method, path, reply.status_code)
