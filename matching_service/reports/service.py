"""The thin layer between the database and the matching engine (matching_service.matching).

It loads plain data (sightings with corrected times, diagnosis keys, the escrowed registry with
decrypted seeds), calls the engine, and stores what comes back as Exposure rows, which the
status endpoint reads. Triggers:
- new records from token T   -> rematch_tokens([T]): T's log against every diagnosis key, and
                                T's log against the venues recent cases visited;
- new keys from source S     -> rematch_sources([S]): every stored log against S's keys;
- a new case                 -> the case report (centralized + venues), stored as well.
"""
from __future__ import annotations

import time
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from matching_service import matching
from matching_service.matching import crypto as match_crypto
from matching_service.cases.models import Case, DiagnosisKey
from matching_service.cases.service import get_case
from matching_service.context import ServiceContext
from matching_service.registry.models import Device
from matching_service.registry.service import get_device
from matching_service.reports.models import Exposure
from matching_service.uploads.models import EncounterRecord, SyncSession

DAY_S = 86400
INTERVAL_S = 600
LOOKBACK_DAYS = 16        # keys are at most 15 days old, plus the interval tolerance
STATUS_DAYS = 14          # an exposure older than this no longer makes a token "exposed"


def risk_config(ctx: ServiceContext) -> matching.RiskConfig:
    risk = ctx.settings.risk
    return matching.RiskConfig(
        interval_tolerance=risk.interval_tolerance,
        attenuation_thresholds_db=tuple(risk.attenuation_thresholds_db),
        bucket_weights=tuple(risk.bucket_weights),
        exposure_threshold_s=risk.exposure_threshold_min * 60.0)


def _sighting_columns():
    return sa.select(EncounterRecord.serial, EncounterRecord.seq, EncounterRecord.rpi,
                     EncounterRecord.aem, EncounterRecord.first_seen, EncounterRecord.duration_s,
                     EncounterRecord.scans, EncounterRecord.rssi_max, EncounterRecord.rssi_mean,
                     EncounterRecord.flags)


def _sighting(row) -> matching.Sighting:
    return matching.Sighting(observer=row[0], seq=row[1], rpi=bytes(row[2]), aem=bytes(row[3]),
                             first_seen=row[4], duration_s=row[5], scans=row[6], rssi_max=row[7],
                             rssi_mean=row[8], flags=row[9])


def load_sightings(session: Session, serials: list[str] | None = None,
                   since: int | None = None) -> list[matching.Sighting]:
    query = _sighting_columns()
    if serials is not None:
        query = query.where(EncounterRecord.serial.in_(serials))
    if since is not None:
        query = query.where(EncounterRecord.first_seen >= since)
    return [_sighting(row) for row in session.execute(query)]


RPI_QUERY_CHUNK = 2000
# Up to this many new keys, their RPIs are joined in the database; more are streamed against
# the logs (a big phone-app import: 10,000 keys would be 1.44 M RPIs to look up).
PREFILTER_MAX_KEYS = 200


def load_sightings_by_rpi(session: Session, rpis: set[bytes], since: int | None = None
                          ) -> list[matching.Sighting]:
    """Stored sightings of any of `rpis` (the database's RPI index does the join)."""
    out: list[matching.Sighting] = []
    ordered = sorted(rpis)
    for start in range(0, len(ordered), RPI_QUERY_CHUNK):
        chunk = ordered[start:start + RPI_QUERY_CHUNK]
        query = _sighting_columns().where(EncounterRecord.rpi.in_(chunk))
        if since is not None:
            query = query.where(EncounterRecord.first_seen >= since)
        out.extend(_sighting(row) for row in session.execute(query))
    return out


def iter_sighting_batches(session: Session, since: int | None = None, batch: int = 200_000):
    """Every stored sighting since `since`, in batches (bounded memory for big joins)."""
    query = _sighting_columns()
    if since is not None:
        query = query.where(EncounterRecord.first_seen >= since)
    result = session.execute(query.execution_options(yield_per=batch))
    for rows in result.partitions(batch):
        yield [_sighting(row) for row in rows]


def key_rpis(keys: list[matching.DiagnosisKey]) -> set[bytes]:
    """Every RPI the keys' owners broadcast over the keys' periods."""
    out: set[bytes] = set()
    for key in keys:
        out.update(match_crypto.rpis_for_key(key.tek, key.rolling_start_interval,
                                             key.rolling_period))
    return out


def device_rpis(device: matching.EscrowedDevice, first_interval: int, last_interval: int
                ) -> set[bytes]:
    """An escrowed device's RPIs from `first_interval` to `last_interval` inclusive."""
    out: set[bytes] = set()
    first_interval = max(first_interval, 0)
    for day in range(first_interval // 144, last_interval // 144 + 1):
        lo, hi = max(first_interval, day * 144), min(last_interval, day * 144 + 143)
        if hi >= lo:
            out.update(match_crypto.rpis_for_key(match_crypto.escrowed_tek(device.seed, day),
                                                 lo, hi - lo + 1))
    return out


def load_devices(session: Session, ctx: ServiceContext, role: str | None = None
                 ) -> list[matching.EscrowedDevice]:
    """The escrowed registry with seeds decrypted (plain rows: 100,000 devices in ~1 s)."""
    query = sa.select(Device.serial, Device.seed_encrypted, Device.role, Device.tx_power_dbm,
                      Device.venue_name, Device.venue_place).where(Device.identity == "escrowed")
    if role is not None:
        query = query.where(Device.role == role)
    open_seed = ctx.box.open
    return [matching.EscrowedDevice(
        serial=serial, seed=open_seed("seed", serial, bytes(sealed)), role=device_role,
        tx_power_dbm=tx or 0, venue_name=venue_name or "", venue_place=venue_place or "")
        for serial, sealed, device_role, tx, venue_name, venue_place in session.execute(query)]


def source_of(key: DiagnosisKey) -> str:
    return f"case:{key.case_id}" if key.case_id is not None else f"import:{key.import_id}"


def load_keys(session: Session, sources: list[str] | None = None, since_interval: int | None = None,
              until_interval: int | None = None) -> list[matching.DiagnosisKey]:
    query = sa.select(DiagnosisKey)
    if until_interval is not None:
        query = query.where(DiagnosisKey.rolling_start_interval <= until_interval)
    if since_interval is not None:
        query = query.where(DiagnosisKey.rolling_start_interval + DiagnosisKey.rolling_period
                            >= since_interval)
    if sources is not None:
        case_ids = [int(s[5:]) for s in sources if s.startswith("case:")]
        import_ids = [int(s[7:]) for s in sources if s.startswith("import:")]
        query = query.where(sa.or_(DiagnosisKey.case_id.in_(case_ids),
                                   DiagnosisKey.import_id.in_(import_ids)))
    return [matching.DiagnosisKey(tek=bytes(k.tek), rolling_start_interval=k.rolling_start_interval,
                                  rolling_period=k.rolling_period, report_type=k.report_type,
                                  transmission_risk=k.transmission_risk, source=source_of(k))
            for k in session.scalars(query)]


def _case_id(source: str) -> int | None:
    return int(source[5:]) if source.startswith("case:") else None


def _store(session: Session, rows: list[dict], *, serials=None, sources=None, method: str) -> None:
    """Replace the Exposure rows of `method` for the given serials and/or sources."""
    delete = sa.delete(Exposure).where(Exposure.method == method)
    if serials is not None:
        delete = delete.where(Exposure.serial.in_(serials))
    if sources is not None:
        delete = delete.where(Exposure.source.in_(sources))
    session.execute(delete)
    registered = set(session.scalars(sa.select(Device.serial).where(
        Device.serial.in_({r["serial"] for r in rows})))) if rows else set()
    rows = [r for r in rows if r["serial"] in registered]
    if rows:
        session.execute(sa.insert(Exposure), rows)


def _daily_rows(daily, method: str, now: int) -> list[dict]:
    return [{"serial": d.observer, "day": d.day, "source": d.sender, "method": method,
             "case_id": _case_id(d.sender), "first_seen": d.first_seen, "last_seen": d.last_seen,
             "duration_s": d.duration_s, "min_attenuation_db": d.min_attenuation_db,
             "weighted_s": float(d.weighted_s), "exposed": bool(d.exposed), "computed_at": now}
            for d in daily]


def rematch_tokens(ctx: ServiceContext, serials: list[str]) -> None:
    """Match these tokens' logs against every diagnosis key and recent cases' venue visits."""
    now = int(time.time())
    config = risk_config(ctx)
    with ctx.sessions() as session:
        since = now - LOOKBACK_DAYS * DAY_S
        sightings = load_sightings(session, serials, since)
        keys = []
        if sightings:
            # Only keys whose day could concern these logs (their time span +- the tolerance).
            tolerance = config.interval_tolerance
            first = min(s.first_seen for s in sightings) // INTERVAL_S - tolerance
            last = max(s.first_seen + s.duration_s for s in sightings) // INTERVAL_S + tolerance
            keys = load_keys(session, since_interval=max(first, since // INTERVAL_S),
                             until_interval=last)
        result = matching.match_keys(sightings, keys, config, now)
        _store(session, _daily_rows(matching.score_exposures(result.matches, config), "keys", now),
               serials=serials, method="keys")
        _store(session, _venue_rows(session, ctx, sightings, config, now),
               serials=serials, method="venue")
        session.commit()


def _venue_rows(session: Session, ctx: ServiceContext, sightings, config, now: int) -> list[dict]:
    """Venue co-visits of `sightings` with recent cases (cheap: venue beacons only; each case's
    resolved venue sightings are computed once and cached, its log no longer changes)."""
    cases = session.scalars(sa.select(Case).where(
        Case.reported_at >= now - STATUS_DAYS * DAY_S)).all()
    if not cases or not sightings:
        return []
    venues = load_devices(session, ctx, role="venue")
    if not venues:
        return []
    slack_s = (config.interval_tolerance + 1) * INTERVAL_S
    span_start = min(s.first_seen for s in sightings) - slack_s
    span_end = max(s.first_seen + s.duration_s for s in sightings) + slack_s
    cache = ctx.cache.setdefault("case_venue_matches", {})
    index = matching.SightingIndex(sightings)
    rows = []
    for case in cases:
        key = (case.id, len(venues))
        visited = cache.get(key)
        if visited is None:
            case_log = load_sightings(session, [case.serial], case.reported_at - LOOKBACK_DAYS * DAY_S)
            visited = cache[key] = matching.resolve_escrowed(case_log, venues, config).matches
        if not any(m.first_seen <= span_end and m.last_seen >= span_start for m in visited):
            continue
        for visit in matching.venue_visits(visited, venues, index, config):
            for visitor in visit.visitors:
                if visitor.serial == case.serial:
                    continue
                rows.append({"serial": visitor.serial, "day": visitor.first_seen // DAY_S,
                             "source": f"case:{case.id}", "method": "venue", "case_id": case.id,
                             "first_seen": visitor.first_seen, "last_seen": visitor.last_seen,
                             "duration_s": visitor.overlap_s, "min_attenuation_db": None,
                             "weighted_s": float(visitor.overlap_s),
                             "exposed": bool(visitor.exposed), "computed_at": now})
    return _dedupe(rows)


def _dedupe(rows: list[dict]) -> list[dict]:
    """One row per (serial, day, source, method): keep the strongest."""
    best: dict[tuple, dict] = {}
    for row in rows:
        key = (row["serial"], row["day"], row["source"], row["method"])
        if key not in best or (row["exposed"], row["weighted_s"]) > (best[key]["exposed"],
                                                                      best[key]["weighted_s"]):
            best[key] = row
    return list(best.values())


def rematch_sources(ctx: ServiceContext, sources: list[str]) -> None:
    """Match every stored log against these sources' keys; for a case, also its report.

    A case's few keys: their RPIs are computed here and joined in the database (its RPI
    index), so only the sightings that can match are loaded. Big imported key files: the
    stored logs are streamed in batches against all the keys (bounded memory)."""
    now = int(time.time())
    config = risk_config(ctx)
    with ctx.sessions() as session:
        keys = load_keys(session, sources)
        if keys:
            first = min(k.rolling_start_interval for k in keys) - config.interval_tolerance
            since = max(first, 0) * INTERVAL_S
            matches: list = []
            if len(keys) <= PREFILTER_MAX_KEYS:
                sightings = load_sightings_by_rpi(session, key_rpis(keys), since)
                matches = matching.match_keys(sightings, keys, config, now).matches
            else:
                for batch in iter_sighting_batches(session, since):
                    matches.extend(matching.match_keys(batch, keys, config, now).matches)
            _store(session, _daily_rows(matching.score_exposures(matches, config), "keys", now),
                   sources=sources, method="keys")
        session.commit()
    for source in sources:
        case_id = _case_id(source)
        if case_id is not None:
            case_report(ctx, case_id)


def case_sightings(session: Session, ctx: ServiceContext, case_serial: str,
                   keys: list[matching.DiagnosisKey], devices: list[matching.EscrowedDevice],
                   since: int, config) -> list[matching.Sighting]:
    """The stored sightings a case report can depend on, found with the RPI index instead of
    loading every log: the case's own log; every sighting of the case's RPIs (who heard it),
    of RPIs the case heard (the same identifier elsewhere: relays), and of the beacons of the
    venues it visited during its visits; and the whole logs of the tokens those belong to
    (their venue presence and encounter counts feed the relay and abuse checks)."""
    case_log = load_sightings(session, [case_serial], since)
    wanted = key_rpis(keys) | {s.rpi for s in case_log}
    venues = [d for d in devices if d.role == "venue"]
    if venues and case_log:
        tolerance = config.interval_tolerance
        visited = matching.resolve_escrowed(case_log, venues, config).matches
        by_serial = {d.serial: d for d in venues}
        for match in visited:
            wanted |= device_rpis(by_serial[match.sender],
                                  match.first_seen // INTERVAL_S - tolerance,
                                  match.last_seen // INTERVAL_S + tolerance)
    hits = load_sightings_by_rpi(session, wanted, since)
    observers = sorted({s.observer for s in hits} - {case_serial})
    logs = load_sightings(session, observers, since) if observers else []
    unique = {(s.observer, s.seq): s for s in (*case_log, *hits, *logs)}
    return list(unique.values())


def case_report(ctx: ServiceContext, case_id: int) -> dict:
    """Compute the case report (and store its exposures for the status screen)."""
    now = int(time.time())
    config = risk_config(ctx)
    with ctx.sessions() as session:
        case = get_case(session, case_id)
        reported_at = case.reported_at
        since = reported_at - LOOKBACK_DAYS * DAY_S
        devices = load_devices(session, ctx)
        keys = load_keys(session, [f"case:{case_id}"])
        sightings = case_sightings(session, ctx, case.serial, keys, devices, since, config)
        report = matching.case_report(case.serial, sightings, devices, keys, config,
                                      now_s=reported_at, report_type=case.report_type,
                                      workers=ctx.settings.workers)
        source = f"case:{case_id}"
        rows = []
        for contact in report.contacts:
            for day in contact.days:
                rows.append({"serial": contact.serial, "day": day.day, "source": source,
                             "method": "case", "case_id": case_id, "first_seen": day.first_seen,
                             "last_seen": day.last_seen, "duration_s": day.duration_s,
                             "min_attenuation_db": day.min_attenuation_db,
                             "weighted_s": float(day.weighted_s), "exposed": bool(day.exposed),
                             "computed_at": now})
        for visit in report.venues:
            for visitor in visit.visitors:
                rows.append({"serial": visitor.serial, "day": visitor.first_seen // DAY_S,
                             "source": source, "method": "case", "case_id": case_id,
                             "first_seen": visitor.first_seen, "last_seen": visitor.last_seen,
                             "duration_s": visitor.overlap_s, "min_attenuation_db": None,
                             "weighted_s": float(visitor.overlap_s),
                             "exposed": bool(visitor.exposed), "computed_at": now})
        rows = [r for r in _dedupe(rows) if r["serial"] != case.serial]
        _store(session, rows, sources=[source], method="case")
        holders = {d.serial: d for d in session.scalars(sa.select(Device).where(
            Device.serial.in_({c.serial for c in report.contacts}
                              | set(report.exposed_serials) | {case.serial}
                              | {v.serial for visit in report.venues for v in visit.visitors})))}
        session.commit()
    return _report_json(case, report, holders, config)


def _holder(holders: dict, serial: str) -> str | None:
    device = holders.get(serial)
    return device.holder_ref if device else None


def _report_json(case: Case, report, holders: dict, config) -> dict:
    return {
        "case_id": case.id, "token": case.serial, "holder_ref": _holder(holders, case.serial),
        "reported_at": case.reported_at, "report_type": case.report_type,
        "exposure_threshold_s": config.exposure_threshold_s,
        "contacts": [{
            "serial": c.serial, "role": c.role, "holder_ref": _holder(holders, c.serial),
            "heard_by": c.heard_by, "first_seen": c.first_seen, "last_seen": c.last_seen,
            "duration_s": c.duration_s, "closest_attenuation_db": c.min_attenuation_db,
            "weighted_minutes": round(c.weighted_s / 60.0, 1), "exposed": c.exposed,
            "flags": list(c.flags),
            "days": [{"day": d.day, "first_seen": d.first_seen, "last_seen": d.last_seen,
                      "duration_s": d.duration_s, "closest_attenuation_db": d.min_attenuation_db,
                      "weighted_minutes": round(d.weighted_s / 60.0, 1), "exposed": d.exposed}
                     for d in c.days]} for c in report.contacts],
        "venues": [{
            "serial": v.venue_serial, "name": v.venue_name, "place": v.venue_place,
            "start": v.start, "end": v.end,
            "visitors": [{"serial": w.serial, "holder_ref": _holder(holders, w.serial),
                          "first_seen": w.first_seen, "last_seen": w.last_seen,
                          "overlap_s": w.overlap_s, "exposed": w.exposed} for w in v.visitors]}
            for v in report.venues],
        "exposed": [{"serial": s, "holder_ref": _holder(holders, s)} for s in report.exposed_serials],
        "flags": [{"kind": f.kind, "serials": list(f.serials), "at": f.at, "detail": f.detail}
                  for f in report.flags],
        "unresolved_rpis": report.unresolved_rpis,
        "rejected_sightings": len(report.rejections),
    }


def token_status(ctx: ServiceContext, serial: str) -> dict:
    now = int(time.time())
    with ctx.sessions() as session:
        device = get_device(session, serial)
        rows = session.scalars(sa.select(Exposure).where(
            Exposure.serial == serial, Exposure.last_seen >= now - STATUS_DAYS * DAY_S
        ).order_by(Exposure.day)).all()
        records = session.scalar(sa.select(sa.func.count()).select_from(EncounterRecord).where(
            EncounterRecord.serial == serial))
        last_sync = session.scalar(sa.select(sa.func.max(SyncSession.synced_at)).where(
            SyncSession.serial == serial))
        positive_at = session.scalar(sa.select(sa.func.max(Case.reported_at)).where(
            Case.serial == serial, Case.reported_at >= now - STATUS_DAYS * DAY_S))
    exposures = [{"day": r.day, "source": r.source, "method": r.method, "case_id": r.case_id,
                  "first_seen": r.first_seen, "last_seen": r.last_seen, "duration_s": r.duration_s,
                  "closest_attenuation_db": r.min_attenuation_db,
                  "weighted_minutes": round(r.weighted_s / 60.0, 1), "exposed": r.exposed}
                 for r in rows]
    exposed = [e for e in exposures if e["exposed"]]
    if positive_at is not None:
        status = "positive"
        line = (f"{serial}: reported POSITIVE on "
                f"{time.strftime('%Y-%m-%d', time.gmtime(positive_at))} (UTC)")
    elif device.role == "venue":
        status, line = "venue", f"{serial} is a venue beacon: it has no exposure status"
    elif exposed:
        last = max(e["last_seen"] for e in exposed)
        status = "exposed"
        line = (f"{serial}: EXPOSED - near a positive case on "
                f"{time.strftime('%Y-%m-%d', time.gmtime(last))} (UTC); call the health office")
    else:
        status = "not_exposed"
        line = f"{serial}: not exposed"
        if not records:
            line += " (no records uploaded yet)"
    return {"serial": serial, "role": device.role, "status": status, "exposed": bool(exposed),
            "message": line, "records": records, "last_sync": last_sync,
            "exposures": exposures}


def exposed_wearers(ctx: ServiceContext) -> list[dict]:
    """Every wearer currently exposed, with whom to call and why (newest first)."""
    now = int(time.time())
    with ctx.sessions() as session:
        rows = session.execute(
            sa.select(Exposure, Device.holder_ref).join(Device, Device.serial == Exposure.serial)
            .where(Exposure.exposed.is_(True), Device.role == "wearable",
                   Exposure.last_seen >= now - STATUS_DAYS * DAY_S)).all()
    by_serial: dict[str, dict] = {}
    for exposure, holder in rows:
        entry = by_serial.setdefault(exposure.serial, {
            "serial": exposure.serial, "holder_ref": holder, "last_exposure": 0,
            "cases": set(), "sources": set()})
        entry["last_exposure"] = max(entry["last_exposure"], exposure.last_seen)
        if exposure.case_id is not None:
            entry["cases"].add(exposure.case_id)
        entry["sources"].add(exposure.source)
    out = []
    for entry in by_serial.values():
        entry["cases"] = sorted(entry["cases"])
        entry["sources"] = sorted(entry["sources"])
        out.append(entry)
    out.sort(key=lambda e: -e["last_exposure"])
    return out
