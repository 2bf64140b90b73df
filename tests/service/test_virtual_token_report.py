"""The clinic's whole positive-case path with a real virtual token (the firmware on the
MicroPython unix port, over a pty) and the real service: identity, register, sync, upload,
then `tokentool report-positive` with the official's code sends the token's own TEKs (read
with its auth key) and its full log."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from matching_service.exports.gaen import read_zip
from matching_service.settings import normalise_db_url

from host_tools.keystore import Keystore, TokenSecrets
from host_tools.outbox import Outbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sync"))
from synchelpers import VirtualToken, run_tokentool, tokentool_json  # noqa: E402

from .conftest import run_cli  # noqa: E402


@pytest.fixture
def clinic_home(service, tmp_path, monkeypatch):
    home = tmp_path / "clinic"
    monkeypatch.setenv("TOKENTOOL_HOME", str(home))
    monkeypatch.delenv("TOKENTOOL_OUTBOX", raising=False)
    monkeypatch.delenv("TOKENTOOL_KEYSTORE", raising=False)
    monkeypatch.setenv("TOKENTOOL_SERVICE_URL", service.url)
    monkeypatch.setenv("TOKENTOOL_SERVICE_KEY", service.new_key("clinic"))
    monkeypatch.setenv("TOKENTOOL_CONFIG", str(tmp_path / "none.json"))
    return home


@pytest.fixture
def token(tmp_path):
    made = VirtualToken(tmp_path / "case-token", "case-token")
    yield made
    made.stop()


@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_report_positive_from_a_virtual_token(service, official, clinic_home, token):
    # Identity as PROVISION leaves it: on the token, in the keystore, awaiting registration.
    serial, auth_key, seed = "TT-5E41C0DE", bytes(range(32)), bytes(range(100, 116))
    token.write_identity(serial, auth_key, seed)
    keystore = Keystore()
    keystore.add(TokenSecrets(serial, auth_key, seed, "wearable", "escrowed", -8, "virtual"))
    keystore.close()
    with Outbox() as outbox:
        outbox.add_provision(serial, role="wearable", identity="escrowed", board="virtual",
                             tx_power_dbm=-8, firmware=None)
    token.fill(40)
    assert tokentool_json("sync", "--port", token.pty)["new_records"] == 40
    uploaded = tokentool_json("upload")
    assert uploaded["registered"] == [serial] and uploaded["stored"] == 40

    code, out, err = run_tokentool("report-positive", "--port", token.pty, "--code", "0000-0000-0000")
    assert code == 1 and err.startswith("tokentool: ") and "not valid" in err

    issued = official.issue_code(serial)
    result = tokentool_json("report-positive", "--port", token.pty, "--code", issued["code"],
                            "--days", "3")
    assert result["serial"] == serial and result["log"]["stored"] == 0  # already uploaded
    assert result["log"]["duplicates"] == 40
    case = [c for c in official.cases() if c["token"] == serial]
    assert [c["case_id"] for c in case] == [result["case_id"]]
    # The keys the service got are the token's own escrowed TEKs.
    assert result["keys_stored"] == result["keys_sent"] >= 1
    engine = sa.create_engine(normalise_db_url(service.db_url))
    with engine.connect() as connection:
        stored = connection.execute(sa.text(
            "SELECT tek, rolling_start_interval FROM diagnosis_keys WHERE case_id = :c"),
            {"c": result["case_id"]}).all()
    engine.dispose()
    # The service holds exactly the token's own TEKs, as the token itself reports them.
    own = tokentool_json("token-keys", "--port", token.pty, "--days", "3")["keys"]
    assert sorted((bytes(tek), start) for tek, start in stored) == \
        sorted((bytes.fromhex(k["tek"]), k["rolling_start_interval"]) for k in own)
    today = int(time.time()) // 86400
    assert today * 144 in {start for _, start in stored}
    # Today's key is still in use: the public export holds it back.
    export = service.data_dir / "after-report.zip"
    run_cli(service.env, "export", "--out", str(export))
    published = {k.key_data for k in read_zip(export.read_bytes())[0].keys}
    assert not published & {bytes(tek) for tek, start in stored if start == today * 144}

    code, out, err = run_tokentool("report-positive", "--port", token.pty, "--code", issued["code"])
    assert code == 1 and "already been used" in err
