"""Exposure statuses and case reports from the matching service's own engine.

- Decentralized matching: every case's diagnosis keys (its TEKs: recomputed from the escrow
  seed, or the random TEKs a private token uploads) against every stored log with
  `match_keys`, scored with `score_exposures`: a wearer is exposed when a day reaches the risk
  threshold (what a wearer's status would show without the registry).
- Escrowed resolution: one `case_report` per case (its log resolved against the escrowed
  registry, its keys matched against every log, venues and their co-visitors, flags). Its
  exposed contacts are the wearers a health worker would call; `exposed_serials` adds the
  venue co-visitors.
"""
from __future__ import annotations

import multiprocessing
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from dataclasses import replace

from matching_service.matching import (DiagnosisKey, EscrowedDevice, RiskConfig, SightingIndex,
                                       case_report, match_keys, resolve_escrowed, score_exposures)
from matching_service.matching.risk import bucket_weight

from . import tokens

_SHARED: dict = {}


@dataclass
class Outcome:
    escrowed_exposed: set = field(default_factory=set)
    escrowed_with_venues: set = field(default_factory=set)
    decentralized_exposed: set = field(default_factory=set)
    escrowed_days: set = field(default_factory=set)        # (wearer serial, case serial, unix day) exposed
    escrowed_best: dict = field(default_factory=dict)      # serial -> best day's weighted seconds
    decentralized_best: dict = field(default_factory=dict)
    case_venues: dict = field(default_factory=dict)        # case serial -> [(venue serial, start, end)]
    named_by: dict = field(default_factory=dict)           # wearer serial -> case tokens naming it exposed
    reports: list = field(default_factory=list)            # (case serial, CaseReport summary dict)
    calibration: list = field(default_factory=list)        # (thresholds, weights, {serial: best weighted s} x 2)


def identifiers_of(ident: bytes, intervals: int, token_list) -> np.ndarray:
    """First 8 bytes (as u64) of every RPI the given tokens advertised that anyone could hear."""
    arr = np.frombuffer(ident, dtype=np.uint8).reshape(-1, intervals, 20)
    parts = []
    for t in token_list:
        rows = arr[t]
        nonzero = rows.any(axis=1)
        parts.append(np.ascontiguousarray(rows[nonzero, :8]).view("<u8").ravel())
    return np.concatenate(parts) if parts else np.zeros(0, "<u8")


def devices_of(c, serials: list[str], tx_advertised: int) -> list[EscrowedDevice]:
    n = c.n
    devices = [EscrowedDevice(serials[i], tokens.token_seed(c.config.seed, i), "wearable", tx_advertised)
               for i in range(n) if c.escrowed[i]]
    for v in c.venues:
        devices.append(EscrowedDevice(serials[n + v.index], tokens.token_seed(c.config.seed, n + v.index),
                                      "venue", tx_advertised, v.name, v.kind.name))
    return devices


def case_keys(teks: dict[int, bytes], serial: str, now_s: int) -> list[DiagnosisKey]:
    today = now_s // 86400
    return [DiagnosisKey(tek, day * 144, 144, 1, source=serial)
            for day, tek in sorted(teks.items()) if day <= today]


def _report_worker(case: int):
    s = _SHARED
    serial = s["serials"][case]
    keys = None if s["escrowed"][case] else case_keys(s["teks"][case], serial, s["now_s"])
    return case, case_report(serial, s["index"], s["devices"], case_keys=keys, config=s["config"],
                             now_s=s["now_s"])


def run(c, serials: list[str], sightings, cases: np.ndarray, teks: dict, tx_advertised: int,
        now_s: int, processes: int, config: RiskConfig = RiskConfig(), calibration: bool = True) -> Outcome:
    index = SightingIndex(sightings)
    devices = devices_of(c, serials, tx_advertised)
    out = Outcome()

    keys = [k for case in cases.tolist() for k in case_keys(teks[case], serials[case], now_s)]
    result = match_keys(index, keys, config, now_s)
    for d in score_exposures([m for m in result.matches if m.observer != m.sender], config):
        if d.exposed:
            out.decentralized_exposed.add(d.observer)
        out.decentralized_best[d.observer] = max(out.decentralized_best.get(d.observer, 0.0), d.weighted_s)

    _SHARED.update(serials=serials, escrowed=c.escrowed, teks=teks, now_s=now_s, index=index,
                   devices=devices, config=config)
    try:
        case_list = cases.tolist()
        if processes > 1 and len(case_list) > 1:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                reports = pool.map(_report_worker, case_list, chunksize=1)
        else:
            reports = [_report_worker(case) for case in case_list]
    finally:
        _SHARED.clear()

    if calibration:
        out.calibration = calibrate(index, devices, {serials[k] for k in cases.tolist()}, keys, now_s, config)

    named_by = defaultdict(set)
    for case, report in reports:
        cs = serials[case]
        for contact in report.contacts:
            if contact.role != "wearable":
                continue
            out.escrowed_best[contact.serial] = max(out.escrowed_best.get(contact.serial, 0.0),
                                                    contact.weighted_s)
            if contact.exposed:
                out.escrowed_exposed.add(contact.serial)
                named_by[contact.serial].add(case)
            for d in contact.days:
                if d.exposed:
                    out.escrowed_days.add((contact.serial, cs, d.day))
        out.escrowed_with_venues |= set(report.exposed_serials)
        out.case_venues[cs] = [(v.venue_serial, v.start, v.end) for v in report.venues]
        out.reports.append((cs, {"contacts": len(report.contacts),
                                 "exposed_contacts": sum(1 for x in report.contacts if x.exposed),
                                 "venues": len(report.venues), "exposed_serials": len(report.exposed_serials),
                                 "flags": len(report.flags), "unresolved_rpis": report.unresolved_rpis}))
    out.named_by = dict(named_by)
    return out


# Candidate risk settings for the calibration table: the service's defaults and tighter
# attenuation buckets / weights (GAEN lets health authorities set all of these).
CANDIDATE_THRESHOLDS_DB = ((55, 63, 73), (55, 60, 65), (52, 58, 64), (58, 64, 70))
CANDIDATE_WEIGHTS = ((1.0, 1.0, 0.5, 0.0), (1.0, 1.0, 0.0, 0.0), (1.0, 0.5, 0.0, 0.0))


def calibrate(index: SightingIndex, devices, case_serials: set[str], keys, now_s: int,
              config: RiskConfig = RiskConfig()) -> list[tuple]:
    """Best weighted seconds per wearer under each candidate risk setting, from both sides of
    every case's contacts (what the case heard, resolved centrally; what heard the case,
    matched on its keys), taking the better side per day as case_report does.

    The engine runs once with every bucket weighted 1, so each match carries its unweighted
    exposure seconds; each candidate then only re-weights by its attenuation bucket."""
    unit = replace(config, bucket_weights=(1.0, 1.0, 1.0, 1.0))
    wearables = [d for d in devices if d.role == "wearable"]
    case_logs = [s for s in index.sightings if s.observer in case_serials]
    case_side = [m for m in resolve_escrowed(case_logs, wearables, unit).matches
                 if m.observer != m.sender]
    contact_side = [m for m in match_keys(index, keys, unit, now_s).matches if m.observer != m.sender]
    out = []
    for thresholds in CANDIDATE_THRESHOLDS_DB:
        for weights in CANDIDATE_WEIGHTS:
            cfg = replace(config, attenuation_thresholds_db=thresholds, bucket_weights=weights)
            day_best: dict[tuple[str, str, int], float] = defaultdict(float)
            for side, contact_of in ((case_side, "sender"), (contact_side, "observer")):
                rew = [replace(m, weighted_s=m.weighted_s * bucket_weight(m.attenuation_db, cfg)) for m in side]
                for d in score_exposures(rew, cfg):
                    contact = getattr(d, contact_of)
                    case = d.observer if contact_of == "sender" else d.sender
                    key = (contact, case, d.day)
                    day_best[key] = max(day_best[key], d.weighted_s)
            best: dict[str, float] = defaultdict(float)
            for (contact, _, _), w in day_best.items():
                best[contact] = max(best[contact], w)
            out.append((thresholds, weights, dict(best)))
    return out
