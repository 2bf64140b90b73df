"""Hand-made scenarios for the matching tests: tokens that advertise with tokenfw.gaen (the
firmware's own derivations, independent of the engine's batched ones) and logs of what other
tokens heard, shaped like the token's encounter records (one record per sender RPI, i.e. per
10-minute interval, first_seen / duration / scans / RSSI)."""
from __future__ import annotations

import hashlib

from tokenfw import gaen

from matching_service.matching import DiagnosisKey, EscrowedDevice, Sighting

DAY0 = 20_000 * 86400          # 2024-10-05 00:00 UTC: a fixed day for readable tests
NOW = DAY0 + 2 * 86400         # "now" for key validation: two days later


def seed_of(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:16]


class Emitter:
    """A token (or phone) advertising GAEN identifiers. `clock_error_s` is how far its own
    clock is ahead of true time (it picks its interval from its own clock)."""

    def __init__(self, serial: str, tx_power_dbm: int = -10, escrowed: bool = True,
                 role: str = "wearable", venue_name: str = "", venue_place: str = "",
                 clock_error_s: int = 0):
        self.serial = serial
        self.seed = seed_of(serial) if escrowed else None
        self.tx_power_dbm = tx_power_dbm
        self.role = role
        self.venue_name = venue_name
        self.venue_place = venue_place
        self.clock_error_s = clock_error_s
        self._private_teks: dict[int, bytes] = {}

    def tek(self, day: int) -> bytes:
        if self.seed is not None:
            return gaen.escrowed_tek(self.seed, day)
        return self._private_teks.setdefault(day, seed_of("%s/day%d" % (self.serial, day)))

    def advert(self, true_s: int) -> tuple[int, bytes, bytes]:
        enin = gaen.interval_number(true_s + self.clock_error_s)
        tek = self.tek(enin // 144)
        rpi = gaen.rpi(gaen.rpi_key(tek), enin)
        aem = gaen.aem(gaen.aem_key(tek), rpi, gaen.metadata(self.tx_power_dbm))
        return enin, rpi, aem

    def device(self) -> EscrowedDevice:
        assert self.seed is not None
        return EscrowedDevice(self.serial, self.seed, self.role, self.tx_power_dbm,
                              self.venue_name, self.venue_place)

    def keys(self, first_day: int, last_day: int, source: str = "", report_type: int = 1):
        return [DiagnosisKey(self.tek(d), d * 144, 144, report_type, 0, source or self.serial)
                for d in range(first_day, last_day + 1)]


class Log:
    """What one observing token recorded, times as the service sees them after correction."""

    def __init__(self, observer: str, first_seq: int = 0):
        self.observer = observer
        self.first_seq = first_seq
        self.sightings: list[Sighting] = []

    def hear(self, emitter: Emitter, start_s: int, end_s: int, every_s: int = 60,
             rssi: int = -60, rssi_spread: int = 0, flags: int = 0, time_shift_s: int = 0):
        """Scans every `every_s` from start_s to end_s (inclusive) hear `emitter`; sightings of
        one RPI merge into one record. `time_shift_s` is added to recorded times (an observer
        clock the correction did not fix, or an unset clock)."""
        records: dict[bytes, dict] = {}
        for t in range(start_s, end_s + 1, every_s):
            _, rpi, aem = emitter.advert(t)
            rec = records.setdefault(rpi, {"aem": aem, "first": t, "last": t, "scans": 0,
                                           "rssis": []})
            rec["last"] = t
            rec["scans"] += 1
            rec["rssis"].append(rssi + (rssi_spread if rec["scans"] % 2 else -rssi_spread))
        for rpi, rec in records.items():
            self.add(rpi, rec["aem"], rec["first"] + time_shift_s, rec["last"] - rec["first"],
                     rec["scans"], max(rec["rssis"]), round(sum(rec["rssis"]) / len(rec["rssis"])),
                     flags)
        return self

    def add(self, rpi, aem, first_seen, duration_s, scans, rssi_max, rssi_mean, flags=0):
        seq = self.first_seq + len(self.sightings)
        self.sightings.append(Sighting(self.observer, seq, rpi, aem, first_seen, duration_s,
                                       scans, rssi_max, rssi_mean, flags))
        return self
