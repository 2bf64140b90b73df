"""The service's matching layer: the database-side prefilters give the same answers as matching
everything in memory (the straightforward way), on a real SQLite database."""
from __future__ import annotations

import base64
import time

import pytest

from matching_service import matching
from matching_service import settings as settings_mod
from matching_service.cases.service import CodeRequest, Redemption, issue_code, redeem
from matching_service.context import open_context
from matching_service.db import transaction
from matching_service.registry.service import DeviceRecord, register
from matching_service.reports import service as reports
from matching_service.uploads.service import Upload, store_upload

from .scenario import Device

DAY_S = 86400


@pytest.fixture
def ctx(tmp_path):
    settings = settings_mod.load(env={"MATCHING_MASTER_KEY": base64.b64encode(b"m" * 32).decode()},
                                 data_dir=str(tmp_path))
    context = open_context(settings, announce=False)
    yield context
    context.close()


def test_prefiltered_case_data_and_streamed_joins_equal_matching_everything(ctx, monkeypatch):
    now = int(time.time())
    day = now // DAY_S - 1
    t0 = day * DAY_S + 9 * 3600
    case = Device()
    market = Device(role="venue", venue_name="Market", venue_place="Ward 1")
    others = [Device() for _ in range(12)]
    case.hear(market, t0, t0 + 3600, rssi=-70)
    for i, other in enumerate(others):
        if i % 3 == 0:
            other.hear(case, t0 + 60 * i, t0 + 60 * i + 1500, rssi=-60 - i)
        if i % 3 == 1:
            other.hear(market, t0 + 300 * i, t0 + 300 * i + 1200, rssi=-72)
            case.hear(other, t0 + 120, t0 + 900, rssi=-65)
        other.hear_noise(t0 - 3 * 3600, 20)
    devices = [case, market, *others]
    with transaction(ctx.sessions) as session:
        register(session, ctx.box, [DeviceRecord(**d.provisioning()) for d in devices], "test")
        for other in others:
            store_upload(session, Upload(**other.upload_body(now - 60)), "test", 10_000)
        code = issue_code(session, ctx.pepper, CodeRequest(token=case.serial), "test", 3600)["code"]
        case_id = redeem(session, ctx.pepper, Redemption(
            code=code, keys=case.diagnosis_keys([day]), log=case.upload_body(now - 60)),
            "test", 10_000)["case_id"]

    config = reports.risk_config(ctx)
    with ctx.sessions() as session:
        all_logs = reports.load_sightings(session)
        registry = reports.load_devices(session, ctx)
        keys = reports.load_keys(session, [f"case:{case_id}"])
        prefiltered = reports.case_sightings(session, ctx, case.serial, keys, registry,
                                             0, config)
        streamed = [s for batch in reports.iter_sighting_batches(session, batch=7) for s in batch]
    assert sorted(streamed, key=lambda s: (s.observer, s.seq)) == \
        sorted(all_logs, key=lambda s: (s.observer, s.seq))
    assert len(prefiltered) < len(all_logs)

    def report(sightings):
        return matching.case_report(case.serial, sightings, registry, keys, config, now_s=now)

    full, lean = report(all_logs), report(prefiltered)
    assert lean.contacts == full.contacts and lean.venues == full.venues
    assert lean.exposed_serials == full.exposed_serials and lean.flags == full.flags
    assert {c.serial for c in full.contacts} == {o.serial for i, o in enumerate(others) if i % 3 != 2}
    assert {v.serial for v in full.venues[0].visitors} == {o.serial for i, o in enumerate(others)
                                                           if i % 3 == 1}

    # New keys against all logs: the RPI-index join and the streamed join agree.
    reports.rematch_sources(ctx, [f"case:{case_id}"])
    with ctx.sessions() as session:
        prefilter_rows = _exposures(session)
    monkeypatch.setattr(reports, "PREFILTER_MAX_KEYS", 0)  # force the streamed path
    reports.rematch_sources(ctx, [f"case:{case_id}"])
    with ctx.sessions() as session:
        assert _exposures(session) == prefilter_rows
    assert {r[0] for r in prefilter_rows if r[1] == "keys"} == \
        {o.serial for i, o in enumerate(others) if i % 3 == 0}


def _exposures(session):
    from matching_service.reports.models import Exposure
    return sorted((e.serial, e.method, e.day, round(e.weighted_s, 3), e.exposed)
                  for e in session.query(Exposure))
