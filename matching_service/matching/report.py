"""The case report: who the case was near (both directions), which venues it visited and who
else was there, which wearers to call, and what looks like relay or abuse."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from . import crypto
from .engine import (INTERVAL_S, ROLLING_PERIOD, SightingIndex, _as_index, _hi,
                     _needed_intervals, devices_sightings, match_keys, resolve_escrowed)
from .flags import abuse_flags
from .model import (HEARD_BY_BOTH, HEARD_BY_CASE, HEARD_BY_CONTACT,
                    REPORT_CONFIRMED_TEST, ROLE_VENUE, ROLE_WEARABLE, CaseReport, Contact,
                    DailyExposure, DiagnosisKey, EscrowedDevice, Match, RiskConfig, Sighting)
from .risk import DAY_S, both_sides_s, score_exposures
from .venues import venue_visits


def _case_keys(case: EscrowedDevice | None, now_s: float, report_type: int,
               config: RiskConfig) -> list[DiagnosisKey]:
    """An escrowed case's TEKs for the days a key server would accept (today and the
    max_key_age_days - 1 before), recomputed from its seed."""
    if case is None:
        return []
    today = int(now_s) // DAY_S
    return [DiagnosisKey(crypto.escrowed_tek(case.seed, day), day * ROLLING_PERIOD,
                         ROLLING_PERIOD, report_type, source=case.serial)
            for day in range(today - config.max_key_age_days + 1, today + 1)]


def _merge_days(serial: str, case_serial: str, sides: dict[int, dict[str, DailyExposure]],
                config: RiskConfig) -> list[DailyExposure]:
    """One DailyExposure per day from what the case heard and what the contact heard: the two
    are measurements of the same proximity, so the day counts their mean (risk.both_sides_s),
    not the sum."""
    out = []
    for day, by_side in sorted(sides.items()):
        ds = list(by_side.values())
        weighted = both_sides_s(d.weighted_s for d in ds)
        out.append(DailyExposure(
            observer=serial, sender=case_serial, day=day,
            first_seen=min(d.first_seen for d in ds), last_seen=max(d.last_seen for d in ds),
            duration_s=max(d.duration_s for d in ds),
            min_attenuation_db=min(d.min_attenuation_db for d in ds),
            weighted_s=weighted, exposed=weighted + 1e-9 >= config.exposure_threshold_s))
    return out


def case_report(case_serial: str, sightings: Sequence[Sighting] | SightingIndex,
                devices: Iterable[EscrowedDevice], case_keys: Iterable[DiagnosisKey] | None = None,
                config: RiskConfig = RiskConfig(), now_s: float | None = None, workers: int = 1,
                report_type: int = REPORT_CONFIRMED_TEST) -> CaseReport:
    """Everything a health official needs about one positive case.

    `sightings` are all stored logs (the case's own log among them, observer == case_serial);
    `devices` the escrowed registry; `case_keys` the case's diagnosis keys (None: recompute
    them from the case's escrowed seed for the last max_key_age_days days before `now_s`).
    Contacts: escrowed tokens the case heard (centralized resolution of its log) and tokens
    that heard the case (its keys matched against every stored log), merged per token.
    """
    now_s = time.time() if now_s is None else now_s
    index = _as_index(sightings)
    devices = list(devices)
    by_serial = {d.serial: d for d in devices}
    venue_serials = {d.serial for d in devices if d.role == ROLE_VENUE}
    # Only the fortnight a key server would take keys for: older records (tokens keep 21
    # days) and records dated in the future by a broken clock are left unresolved.
    window = ((int(now_s) // DAY_S - config.max_key_age_days) * DAY_S, int(now_s) + DAY_S)
    full_log = [s for s in index.sightings if s.observer == case_serial]
    case_log = [s for s in full_log if window[0] <= s.first_seen < window[1]]

    heard = resolve_escrowed(case_log, [d for d in devices if d.serial != case_serial], config,
                             workers, report_type)
    keys = (_case_keys(by_serial.get(case_serial), now_s, report_type, config)
            if case_keys is None else [replace(k, source=case_serial) for k in case_keys])
    heard_case = match_keys(index, keys, config, now_s)
    case_side = [m for m in heard.matches if m.sender not in venue_serials]
    contact_side = [m for m in heard_case.matches if m.observer != case_serial]

    sides: dict[str, dict[int, dict[str, DailyExposure]]] = defaultdict(lambda: defaultdict(dict))
    for d in score_exposures(case_side, config):
        sides[d.sender][d.day][HEARD_BY_CASE] = d
    for d in score_exposures(contact_side, config):
        sides[d.observer][d.day][HEARD_BY_CONTACT] = d

    venues = venue_visits(heard.matches, devices, index, config)

    # Flags over the identifiers this report rests on and the tokens it names.
    named = {case_serial} | set(sides) | {v.serial for visit in venues for v in visit.visitors}
    case_rpis = {s.seq: s.rpi for s in full_log}
    rpi_sender = {case_rpis[m.seq]: m.sender for m in case_side}
    rpis = set(rpi_sender)
    observed = {(m.observer, m.seq) for m in contact_side}
    if observed:
        rpis |= {s.rpi for s in index.sightings if (s.observer, s.seq) in observed}
    relevant: dict[tuple[str, int], Sighting] = {}
    if rpis:
        _, found = index.find(np.unique(_hi(b"".join(rpis))))
        for si in found.tolist():
            s = index.sightings[si]
            if s.rpi in rpis:
                relevant[(s.observer, s.seq)] = s
    for s in index.sightings:
        if s.observer in named:
            relevant[(s.observer, s.seq)] = s
    flags = abuse_flags(relevant.values(), _venue_presence(relevant.values(), rpis, devices, index,
                                                           config), devices, config)

    contacts = []
    for serial, by_day in sides.items():
        daily = _merge_days(serial, case_serial, by_day, config)
        side_set = {side for day in by_day.values() for side in day}
        contact_flags = sorted({f.kind for f in flags
                                if serial in f.serials or rpi_sender.get(f.rpi) == serial})
        device = by_serial.get(serial)
        contacts.append(Contact(
            serial=serial, role=device.role if device else ROLE_WEARABLE,
            heard_by=HEARD_BY_BOTH if len(side_set) == 2 else side_set.pop(),
            first_seen=min(d.first_seen for d in daily), last_seen=max(d.last_seen for d in daily),
            duration_s=sum(d.duration_s for d in daily),
            min_attenuation_db=min(d.min_attenuation_db for d in daily),
            weighted_s=max(d.weighted_s for d in daily), exposed=any(d.exposed for d in daily),
            days=tuple(daily), flags=tuple(contact_flags)))
    contacts.sort(key=lambda c: (not c.exposed, -c.weighted_s, c.serial))

    exposed = {c.serial for c in contacts if c.exposed}
    exposed |= {v.serial for visit in venues for v in visit.visitors if v.exposed}
    exposed = {s for s in exposed if s != case_serial and s not in venue_serials}
    resolved_rpis = {case_rpis[m.seq] for m in heard.matches}
    return CaseReport(
        case_serial=case_serial, contacts=tuple(contacts), venues=tuple(venues),
        exposed_serials=tuple(sorted(exposed)), flags=tuple(flags),
        unresolved_rpis=len(set(case_rpis.values()) - resolved_rpis),
        rejections=tuple(heard.rejections) + tuple(heard_case.rejections))


def _venue_presence(relevant: Iterable[Sighting], rpis: set[bytes],
                    devices: list[EscrowedDevice], index: SightingIndex,
                    config: RiskConfig) -> list[Match]:
    """Where the tokens that heard a shared identifier were at the time: their sightings of
    venue beacons around those moments. Only computed when some identifier of the report was
    heard by two tokens; every venue's RPIs for just those hours, in one lookup."""
    shared: dict[bytes, set[str]] = defaultdict(set)
    for s in relevant:
        if s.rpi in rpis:
            shared[s.rpi].add(s.observer)
    candidates = [s for s in relevant if s.rpi in rpis and len(shared[s.rpi]) > 1]
    venues = [d for d in devices if d.role == ROLE_VENUE]
    if not candidates or not venues:
        return []
    observers = {s.observer for s in candidates}
    slack = -(-config.venue_presence_s // INTERVAL_S) + config.interval_tolerance
    plan = _needed_intervals(candidates, slack)
    return devices_sightings(venues, plan, index, config, observers=observers).matches
