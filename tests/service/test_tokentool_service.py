"""`tokentool register | upload | status` against the real server, from a real clinic outbox
and keystore: resumable, never twice, one clear line."""
from __future__ import annotations

import json
import time

import pytest

from host_tools.cli import main as tokentool
from host_tools.keystore import Keystore, TokenSecrets
from host_tools.outbox import Outbox
from host_tools.service_client import ServiceClient

from .conftest import free_port
from .scenario import Device

DAY_S = 86400


@pytest.fixture
def clinic_env(service, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTOOL_SERVICE_URL", service.url)
    monkeypatch.setenv("TOKENTOOL_SERVICE_KEY", service.new_key("clinic"))
    monkeypatch.setenv("TOKENTOOL_OUTBOX", str(tmp_path / "outbox.sqlite"))
    monkeypatch.setenv("TOKENTOOL_KEYSTORE", str(tmp_path / "keystore.sqlite"))
    monkeypatch.setenv("TOKENTOOL_CONFIG", str(tmp_path / "none.json"))
    return tmp_path


def provision_and_sync(device: Device, clock_offset_s: int = 0, venue: bool = False) -> None:
    keystore = Keystore()
    keystore.add(TokenSecrets(device.serial, device.auth_key, device.seed, device.role,
                              device.identity, device.tx_power_dbm, "virtual"))
    keystore.close()
    with Outbox() as outbox:
        outbox.add_provision(device.serial, role=device.role, identity=device.identity,
                             board="virtual", tx_power_dbm=device.tx_power_dbm, firmware="0.1.0")
        if device.log:
            now = int(time.time())
            session = outbox.begin_sync(device.serial, port="virtual", synced_at=now - 60,
                                        token_time=now - 60 - clock_offset_s,
                                        correction_s=clock_offset_s, clock_was_set=True,
                                        clock_set=True, boundary_seq=len(device.log) + 1)
            outbox.store_chunk(session, device.log)
            outbox.finish_sync(session, acked_seq=len(device.log))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = tokentool(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upload_after_being_offline_then_status_turns_exposed(service, official, clinic_env,
                                                              capsys, monkeypatch):
    now = int(time.time())
    day = now // DAY_S - 1
    start = day * DAY_S + 9 * 3600
    case, wearer = Device(), Device()
    wearer.hear(case, start, start + 45 * 60, rssi=-60, clock_offset_s=40)
    provision_and_sync(wearer, clock_offset_s=40)

    # Offline: nothing is lost, nothing marked uploaded, one clear line, non-zero exit.
    monkeypatch.setenv("TOKENTOOL_SERVICE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr("time.sleep", lambda s: None)  # skip the retry backoff
    code, out, err = run(capsys, "upload")
    assert code != 0 and err.startswith("tokentool: ") and "did not answer" in err
    assert "still waiting" in err or "did not answer" in err
    with Outbox() as outbox:
        assert outbox.summary()[0]["not_uploaded"] == len(wearer.log)

    monkeypatch.setenv("TOKENTOOL_SERVICE_URL", service.url)
    code, out, err = run(capsys, "upload", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["stored"] == len(wearer.log) and result["registered"] == [wearer.serial]
    code, out, _ = run(capsys, "upload")
    assert code == 0 and out.strip() == "nothing to upload: the outbox is empty"

    code, out, _ = run(capsys, "status", wearer.serial)
    assert out.strip() == f"{wearer.serial}: not exposed"

    with ServiceClient(service.url, service.new_key("clinic"), retries=0) as clinic:
        clinic.register([case.provisioning()])
        code_ = official.issue_code(case.serial)["code"]
        clinic.report_positive(code_, case.diagnosis_keys([day]), case.upload_body(now - 30))
    code, out, _ = run(capsys, "status", wearer.serial)
    assert code == 0 and out.count("\n") == 1
    assert out.startswith(f"{wearer.serial}: EXPOSED")


def test_register_venue_beacon_needs_a_name(service, clinic_env, capsys):
    venue = Device(role="venue", venue_name=None)
    provision_and_sync(venue)
    code, out, _ = run(capsys, "register")
    assert code == 0 and "held back" in out and venue.serial in out
    code, out, _ = run(capsys, "register", "--serial", venue.serial, "--venue-name",
                       "Bus station", "--venue-place", "North gate", "--json")
    assert code == 0 and json.loads(out)["created"] == [venue.serial]
    code, _, err = run(capsys, "register", "--venue-name", "x")
    assert code == 2 and err.startswith("tokentool: ")


def test_status_of_unknown_token_and_missing_config(service, clinic_env, capsys, monkeypatch):
    code, _, err = run(capsys, "status", "TT-00000001")
    assert code == 1 and "not registered" in err and err.count("\n") == 1
    monkeypatch.delenv("TOKENTOOL_SERVICE_URL")
    code, _, err = run(capsys, "status", "TT-00000001")
    assert code == 2 and "TOKENTOOL_SERVICE_URL" in err


def test_case_log_from_outbox_redeems_with_the_full_log(service, official, clinic_env):
    from host_tools.cli.service import redeem_positive

    now = int(time.time())
    case, other = Device(), Device()
    case.hear(other, now - 7200, now - 5400)
    provision_and_sync(case, clock_offset_s=30)
    with ServiceClient(service.url, service.new_key("clinic"), retries=0) as clinic:
        clinic.register([case.provisioning(), other.provisioning()])
        code = official.issue_code(case.serial)["code"]
        today = now // DAY_S
        teks = [(day * 144, case.tek(day)) for day in range(today - 13, today + 1)]
        with Outbox() as outbox:
            result = redeem_positive(clinic, outbox, case.serial, code, teks)
    assert result["keys_stored"] == 14
    assert result["log"]["stored"] == len(case.log)


def test_client_backs_off_honouring_retry_after(service):
    waits = []
    key = service.new_key("clinic", rate_limit_per_min=1)
    with ServiceClient(service.url, key, retries=3, sleep=waits.append) as client:
        client.health()
        with pytest.raises(Exception):
            client.status("TT-00000001")  # 404 spends the one request of this minute
        with pytest.raises(Exception) as limited:
            client.status("TT-00000001")
    assert getattr(limited.value, "status", None) == 429
    assert len(waits) == 3 and all(30 <= w <= 60 for w in waits)
