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
from matching_service.matching.risk import both_sides_s, bucket_weight

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
    calibration: list = field(default_factory=list)        # (thresholds, weights, {serial: best weighted s})
    report_cases: list = field(default_factory=list)       # cases with a full case report
    report_exposed: set = field(default_factory=set)       # exposed wearable contacts those reports named


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
        now_s: int, processes: int, config: RiskConfig = RiskConfig(), max_reports: int = 12,
        seed: int = 0) -> Outcome:
    """Decentralized and escrowed exposure for every case; full case reports (venues,
    co-visitors, flags) for all cases or a seeded sample of `max_reports` of them: a report's
    relay check looks up every venue beacon around the case's contacts, which at 10,000
    wearers costs tens of seconds per report. The escrowed exposed contacts of every case come
    from the same engine calls case_report makes (resolve_escrowed of the case's log,
    match_keys of its keys, score_exposures, both sides combined per day); `report_exposed` holds
    what the full reports said, and tests check the two agree."""
    index = SightingIndex(sightings)
    devices = devices_of(c, serials, tx_advertised)
    out = Outcome()
    case_serials = {serials[k] for k in cases.tolist()}
    index_of = {s: i for i, s in enumerate(serials)}

    keys = [k for case in cases.tolist() for k in case_keys(teks[case], serials[case], now_s)]
    result = match_keys(index, keys, config, now_s)
    for d in score_exposures([m for m in result.matches if m.observer != m.sender], config):
        if d.exposed:
            out.decentralized_exposed.add(d.observer)
        out.decentralized_best[d.observer] = max(out.decentralized_best.get(d.observer, 0.0), d.weighted_s)

    case_side, contact_side = both_sides(index, devices, case_serials, keys, now_s, config)
    named_by = defaultdict(set)
    for (contact, case, day), w in day_best(case_side, contact_side, config).items():
        if contact in case_serials or contact not in index_of or index_of[contact] >= c.n:
            continue
        out.escrowed_best[contact] = max(out.escrowed_best.get(contact, 0.0), w)
        if w + 1e-9 >= config.exposure_threshold_s:
            out.escrowed_exposed.add(contact)
            out.escrowed_days.add((contact, case, day))
            named_by[contact].add(index_of[case])
    out.named_by = dict(named_by)
    out.calibration = [(th, w, best_of(days))
                       for th in CANDIDATE_THRESHOLDS_DB
                       for w, days in zip(CANDIDATE_WEIGHTS,
                                          days_by_weights(case_side, contact_side,
                                                          replace(config, attenuation_thresholds_db=th),
                                                          CANDIDATE_WEIGHTS))]

    case_list = cases.tolist()
    if len(case_list) > max_reports:
        rng = np.random.default_rng([seed, 0x4E9])
        case_list = sorted(rng.choice(case_list, size=max_reports, replace=False).tolist())
    out.report_cases = [serials[k] for k in case_list]
    _SHARED.update(serials=serials, escrowed=c.escrowed, teks=teks, now_s=now_s, index=index,
                   devices=devices, config=config)
    try:
        if processes > 1 and len(case_list) > 1:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                reports = pool.map(_report_worker, case_list, chunksize=1)
        else:
            reports = [_report_worker(case) for case in case_list]
    finally:
        _SHARED.clear()
    for case, report in reports:
        cs = serials[case]
        out.report_exposed |= {x.serial for x in report.contacts if x.exposed and x.role == "wearable"}
        out.escrowed_with_venues |= set(report.exposed_serials)
        out.case_venues[cs] = [(v.venue_serial, v.start, v.end) for v in report.venues]
        out.reports.append((cs, {"contacts": len(report.contacts),
                                 "exposed_contacts": sum(1 for x in report.contacts if x.exposed),
                                 "venues": len(report.venues), "exposed_serials": len(report.exposed_serials),
                                 "flags": len(report.flags), "unresolved_rpis": report.unresolved_rpis}))
    return out


# Candidate risk settings for the calibration table: the service's defaults (60/62/68 dB,
# 1/0.5/0.25/0), its earlier ones (55/63/73, 1/1/0.5/0) and neighbours of both (GAEN lets health
# authorities set all of these).
CANDIDATE_THRESHOLDS_DB = ((60, 62, 68), (55, 63, 73), (55, 60, 65), (60, 62, 66), (58, 61, 64))
CANDIDATE_WEIGHTS = ((1.0, 0.5, 0.25, 0.0), (1.0, 0.5, 0.0, 0.0), (1.0, 1.0, 0.5, 0.0), (1.0, 1.0, 0.0, 0.0))


def both_sides(index: SightingIndex, devices, case_serials: set[str], keys, now_s: int,
               config: RiskConfig = RiskConfig()) -> tuple[list, list]:
    """Both sides of every case's contacts with every attenuation bucket weighted 1, so that
    each match carries its unweighted exposure seconds: what the cases heard (their logs
    resolved against the escrowed wearables) and what heard the cases (their keys matched
    against every log)."""
    unit = replace(config, bucket_weights=(1.0, 1.0, 1.0, 1.0))
    wearables = [d for d in devices if d.role == "wearable"]
    case_logs = [s for s in index.sightings if s.observer in case_serials]
    case_side = [m for m in resolve_escrowed(case_logs, wearables, unit).matches if m.observer != m.sender]
    contact_side = [m for m in match_keys(index, keys, unit, now_s).matches if m.observer != m.sender]
    return case_side, contact_side


def day_best(case_side, contact_side, config: RiskConfig) -> dict:
    """(contact, case, UTC day) -> weighted seconds under `config`, combined over the two sides
    with case_report's rule (risk.both_sides_s: both measure the same proximity)."""
    sides: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for side, contact_of in ((case_side, "sender"), (contact_side, "observer")):
        rew = [replace(m, weighted_s=m.weighted_s * bucket_weight(m.attenuation_db, config)) for m in side]
        for d in score_exposures(rew, config):
            contact = getattr(d, contact_of)
            case = d.observer if contact_of == "sender" else d.sender
            sides[(contact, case, d.day)].append(d.weighted_s)
    return {key: both_sides_s(values) for key, values in sides.items()}


# Bucket weights that make bucket_weight return the bucket's number (x 0.5): IMMEDIATE 0 ...
# OTHER 3, so that one pass sorts matches into buckets by the service's own rule.
_BUCKET_PROBE = (0.0, 0.5, 1.0, 1.5)


def days_by_weights(case_side, contact_side, config: RiskConfig, weight_sets) -> list[dict]:
    """day_best under `config`'s attenuation buckets for each of several bucket weightings, in
    one scoring pass per bucket: a day's weighted seconds are linear in the weights (the sum
    over buckets of weight x that bucket's seconds), so each weighting is a sum of four
    numbers per day instead of a rescoring of every match (the calibration table)."""
    probe = replace(config, bucket_weights=_BUCKET_PROBE)
    unit = replace(config, bucket_weights=(1.0, 1.0, 1.0, 1.0))
    # (contact, case, day) -> per side: seconds in each bucket (a side present with any match).
    per_side: list[dict] = [defaultdict(lambda: [0.0, 0.0, 0.0, 0.0]) for _ in range(2)]
    for n_side, (side, contact_of) in enumerate(((case_side, "sender"), (contact_side, "observer"))):
        in_bucket: list[list] = [[], [], [], []]
        for m in side:
            in_bucket[int(bucket_weight(m.attenuation_db, probe) * 2)].append(m)
        for bucket, matches in enumerate(in_bucket):
            for d in score_exposures(matches, unit):
                contact = getattr(d, contact_of)
                case = d.observer if contact_of == "sender" else d.sender
                per_side[n_side][(contact, case, d.day)][bucket] += d.weighted_s
    out = []
    for weights in weight_sets:
        sides: dict[tuple[str, str, int], list[float]] = defaultdict(list)
        for by_key in per_side:
            for key, seconds in by_key.items():
                sides[key].append(sum(w * x for w, x in zip(weights, seconds)))
        out.append({key: both_sides_s(values) for key, values in sides.items()})
    return out


def best_of(days: dict) -> dict:
    best: dict[str, float] = defaultdict(float)
    for (contact, _, _), w in days.items():
        best[contact] = max(best[contact], w)
    return dict(best)
