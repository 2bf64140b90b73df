"""Registering tokens and venue beacons from tokentool's provisioning records."""
from __future__ import annotations

import time
from typing import Literal

import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.orm import Session

from matching_service import Conflict, NotFound
from matching_service.registry.crypto import SecretBox
from matching_service.registry.models import Device
from matching_service.schemas import Serial, Strict, Text, b64_of_length, decode_base64


class DeviceRecord(Strict):
    """One provisioning record (binary fields base64)."""

    serial: Serial
    role: Literal["wearable", "venue"]
    identity: Literal["escrowed", "private"]
    seed: b64_of_length(16) | None = None
    auth_key: b64_of_length(32) | None = None
    tx_power_dbm: int | None = Field(default=None, ge=-50, le=20)
    board: Text = ""
    venue_name: Text | None = None
    venue_place: Text | None = None
    holder_ref: Text | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.identity == "escrowed" and self.seed is None:
            raise ValueError("an escrowed token needs its 16-byte seed")
        if self.identity == "private" and self.seed is not None:
            raise ValueError("a private token's seed must not leave the token")
        if self.role == "venue" and not self.venue_name:
            raise ValueError("a venue beacon needs venue_name")
        if self.role == "venue" and self.identity != "escrowed":
            raise ValueError("a venue beacon must be escrowed so visits can be resolved")
        return self


class Registration(Strict):
    tokens: list[DeviceRecord] = Field(min_length=1)


def _same(existing: Device, record: DeviceRecord, box: SecretBox) -> bool:
    if (existing.role, existing.identity) != (record.role, record.identity):
        return False
    if record.seed is not None:
        if existing.seed_encrypted is None:
            return False
        if box.open("seed", existing.serial, existing.seed_encrypted) != decode_base64(record.seed):
            return False
    if record.auth_key is not None and existing.auth_key_encrypted is not None:
        stored = box.open("auth_key", existing.serial, existing.auth_key_encrypted)
        if stored != decode_base64(record.auth_key):
            return False
    return True


def register(session: Session, box: SecretBox, records: list[DeviceRecord], by: str) -> dict:
    """Store new devices; identical re-registration is a no-op, a changed identity a Conflict
    (nothing of the batch is stored then). Descriptive fields (venue name, holder reference,
    TX power, board) are updated in place."""
    serials = [r.serial for r in records]
    if len(set(serials)) != len(serials):
        raise Conflict("the batch names the same serial twice")
    existing = {d.serial: d for d in session.scalars(
        sa.select(Device).where(Device.serial.in_(serials)))}
    created, updated, unchanged = [], [], []
    now = int(time.time())
    for record in records:
        device = existing.get(record.serial)
        if device is not None:
            if not _same(device, record, box):
                raise Conflict(f"token {record.serial} is already registered with a different identity",
                               serial=record.serial)
            changed = False
            for field in ("tx_power_dbm", "board", "venue_name", "venue_place", "holder_ref"):
                value = getattr(record, field)
                if value is not None and value != "" and getattr(device, field) != value:
                    setattr(device, field, value)
                    changed = True
            if record.auth_key is not None and device.auth_key_encrypted is None:
                device.auth_key_encrypted = box.seal("auth_key", record.serial,
                                                     decode_base64(record.auth_key))
                changed = True
            (updated if changed else unchanged).append(record.serial)
            continue
        session.add(Device(
            serial=record.serial, role=record.role, identity=record.identity,
            seed_encrypted=box.seal("seed", record.serial, decode_base64(record.seed))
            if record.seed else None,
            auth_key_encrypted=box.seal("auth_key", record.serial, decode_base64(record.auth_key))
            if record.auth_key else None,
            tx_power_dbm=record.tx_power_dbm, board=record.board, venue_name=record.venue_name,
            venue_place=record.venue_place, holder_ref=record.holder_ref,
            registered_at=now, registered_by=by))
        created.append(record.serial)
    session.flush()
    return {"created": created, "updated": updated, "unchanged": unchanged}


def get_device(session: Session, serial: str) -> Device:
    device = session.get(Device, serial)
    if device is None:
        raise NotFound(f"token {serial} is not registered", serial=serial)
    return device


def describe(device: Device) -> dict:
    """Public view of a device: never the seed or auth key."""
    return {"serial": device.serial, "role": device.role, "identity": device.identity,
            "tx_power_dbm": device.tx_power_dbm, "board": device.board,
            "venue_name": device.venue_name, "venue_place": device.venue_place,
            "holder_ref": device.holder_ref, "registered_at": device.registered_at}


def escrowed_devices(session: Session, box: SecretBox) -> list[dict]:
    """Every escrowed device with its decrypted seed, for centralized resolution."""
    out = []
    for device in session.scalars(sa.select(Device).where(Device.identity == "escrowed")):
        out.append({"serial": device.serial, "role": device.role,
                    "seed": box.open("seed", device.serial, device.seed_encrypted),
                    "tx_power_dbm": device.tx_power_dbm, "venue_name": device.venue_name,
                    "venue_place": device.venue_place, "holder_ref": device.holder_ref})
    return out
