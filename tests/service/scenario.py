"""Building real token data for service tests: provisioning records, GAEN identifiers from
escrowed seeds (tokenfw.gaen, the firmware's own code), and 32-byte records (tokenfw.records)."""
from __future__ import annotations

import base64
import os
import secrets

from tokenfw import gaen, records

from host_tools.service_client import provisioning_record

INTERVAL_S = 600


def new_serial(prefix: str = "TT") -> str:
    return f"{prefix}-{secrets.token_hex(4).upper()}"


class Device:
    """A token or venue beacon with an escrowed seed: it can say what it advertised when."""

    def __init__(self, role: str = "wearable", tx_power_dbm: int = -8, venue_name: str | None = None,
                 venue_place: str | None = None, holder_ref: str | None = None,
                 identity: str = "escrowed"):
        self.serial = new_serial("VB" if role == "venue" else "TT")
        self.role = role
        self.identity = identity
        self.seed = os.urandom(16) if identity == "escrowed" else None
        self.private_teks: dict[int, bytes] = {}
        self.auth_key = os.urandom(32)
        self.tx_power_dbm = tx_power_dbm
        self.venue_name = venue_name
        self.venue_place = venue_place
        self.holder_ref = holder_ref or f"holder of {self.serial}"
        self.log: list[tuple[int, bytes]] = []

    def provisioning(self) -> dict:
        return provisioning_record(self.serial, self.role, self.identity, self.seed, self.auth_key,
                                   self.tx_power_dbm, "virtual", self.venue_name, self.venue_place,
                                   self.holder_ref if self.role == "wearable" else None)

    def tek(self, day: int) -> bytes:
        if self.seed is not None:
            return gaen.escrowed_tek(self.seed, day)
        return self.private_teks.setdefault(day, os.urandom(16))

    def advertisement(self, unix_s: int) -> tuple[bytes, bytes]:
        """(RPI, AEM) this device broadcast at `unix_s`."""
        enin = unix_s // INTERVAL_S
        tek = self.tek(enin // 144)
        rpi = gaen.rpi(gaen.rpi_key(tek), enin)
        return rpi, gaen.aem(gaen.aem_key(tek), rpi, gaen.metadata(self.tx_power_dbm))

    def diagnosis_keys(self, days: list[int]) -> list[dict]:
        return [{"key": base64.b64encode(self.tek(d)).decode(), "rolling_start_interval": d * 144,
                 "rolling_period": 144} for d in days]

    def hear(self, other: "Device", start: int, end: int, rssi: int = -60,
             clock_offset_s: int = 0, scan_every_s: int = 300) -> None:
        """Append records for hearing `other` from `start` to `end` (true time), one per
        10-minute interval as the aggregator closes them; times in this token's clock
        (true time - clock_offset_s, i.e. a clock running `clock_offset_s` behind)."""
        t = start
        while t < end:
            interval_end = (t // INTERVAL_S + 1) * INTERVAL_S
            stop = min(end, interval_end) - 1
            scans = max(1, (stop - t) // scan_every_s + 1)
            rpi, aem = other.advertisement(t)
            enc = records.Encounter(rpi, aem, t - clock_offset_s, stop - t, scans, rssi + 4,
                                    rssi, 0)
            seq = len(self.log) + 1  # the token's log starts at seq 1
            self.log.append((seq, records.encode(seq, enc)))
            t = interval_end

    def hear_noise(self, start: int, count: int, rssi: int = -85) -> None:
        for i in range(count):
            enc = records.Encounter(os.urandom(16), os.urandom(4), start + i * 700, 30, 1,
                                    rssi, rssi, 0)
            seq = len(self.log) + 1  # the token's log starts at seq 1
            self.log.append((seq, records.encode(seq, enc)))

    def upload_body(self, synced_at: int, clock_offset_s: int = 0, first_seq: int = 1,
                    last_seq: int | None = None) -> dict:
        """The clinic upload for records first_seq..last_seq dumped at one sync."""
        last_seq = len(self.log) if last_seq is None else last_seq
        chosen = [(s, d) for s, d in self.log if first_seq <= s <= last_seq]
        return {"token": self.serial,
                "records": [{"seq": s, "data": base64.b64encode(d).decode()} for s, d in chosen],
                "syncs": [{"synced_at": synced_at, "token_time": synced_at - clock_offset_s,
                           "correction_s": clock_offset_s, "clock_was_set": True,
                           "first_seq": first_seq, "last_seq": max(last_seq, first_seq)}]}
