"""Response models: what each endpoint answers, for the OpenAPI document (docs/openapi.json)
and for client authors. The service builds plain dicts; FastAPI checks them against these."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    schema_revision: str | None


class KeyCreated(BaseModel):
    key: str
    key_id: str
    role: str
    label: str
    rate_limit_per_min: int | None


class KeyRevoked(BaseModel):
    key_id: str
    revoked: bool


class AuditEntry(BaseModel):
    id: int
    at: int
    key_id: str | None
    role: str | None
    action: str
    target: str
    outcome: str
    detail: dict


class AuditLog(BaseModel):
    entries: list[AuditEntry]


class Registered(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class DeviceInfo(BaseModel):
    serial: str
    role: str
    identity: str
    tx_power_dbm: int | None
    board: str
    venue_name: str | None
    venue_place: str | None
    holder_ref: str | None
    registered_at: int


class AuthKey(BaseModel):
    serial: str
    auth_key: str


class UploadResult(BaseModel):
    token: str
    stored: int
    duplicates: int
    conflicts: list[int]
    syncs_stored: int


class CodeIssued(BaseModel):
    code: str
    token: str
    expires_at: int
    code_id: int


class CaseCreated(BaseModel):
    case_id: int
    token: str
    keys_stored: int
    log: UploadResult


class CaseSummary(BaseModel):
    case_id: int
    token: str
    reported_at: int
    report_type: int


class CaseList(BaseModel):
    cases: list[CaseSummary]


class ContactDay(BaseModel):
    day: int
    first_seen: int
    last_seen: int
    duration_s: int
    closest_attenuation_db: int
    weighted_minutes: float
    exposed: bool


class Contact(BaseModel):
    serial: str
    role: str
    holder_ref: str | None
    heard_by: Literal["case", "contact", "both"]
    first_seen: int
    last_seen: int
    duration_s: int
    closest_attenuation_db: int
    weighted_minutes: float
    exposed: bool
    flags: list[str]
    days: list[ContactDay]


class VenueVisitor(BaseModel):
    serial: str
    holder_ref: str | None
    first_seen: int
    last_seen: int
    overlap_s: int
    exposed: bool


class VenueVisit(BaseModel):
    serial: str
    name: str
    place: str
    start: int
    end: int
    visitors: list[VenueVisitor]


class Wearer(BaseModel):
    serial: str
    holder_ref: str | None


class Flag(BaseModel):
    kind: str
    serials: list[str]
    at: int
    detail: str


class CaseReport(BaseModel):
    case_id: int
    token: str
    holder_ref: str | None
    reported_at: int
    report_type: int
    exposure_threshold_s: float
    contacts: list[Contact]
    venues: list[VenueVisit]
    exposed: list[Wearer]
    flags: list[Flag]
    unresolved_rpis: int
    rejected_sightings: int


class Exposure(BaseModel):
    day: int
    source: str
    method: Literal["keys", "case", "venue"]
    case_id: int | None
    first_seen: int
    last_seen: int
    duration_s: int
    closest_attenuation_db: int | None
    weighted_minutes: float
    exposed: bool


class TokenStatus(BaseModel):
    serial: str
    role: str
    status: Literal["exposed", "not_exposed", "positive", "venue"]
    exposed: bool
    message: str
    records: int
    last_sync: int | None
    exposures: list[Exposure]


class ExposedWearer(BaseModel):
    serial: str
    holder_ref: str | None
    last_exposure: int
    cases: list[int]
    sources: list[str]


class ExposedList(BaseModel):
    exposed: list[ExposedWearer]


class Error(BaseModel):
    """Every error: one sentence, a stable code, sometimes details (e.g. `seq`, `problems`)."""

    error: str
    code: str
