"""Clinic workflow against virtual tokens over real ptys: info, provision, sync, outbox."""
from __future__ import annotations

import base64
import csv
import io
import json

from tokenfw import gaen, records

from host_tools.keystore import Keystore
from host_tools.outbox import Outbox
from synchelpers import clinic_identity, run_tokentool, tokentool_json


def test_provision_writes_the_identity_and_keeps_the_secrets(virtual_token, tokentool_home):
    token = virtual_token()
    info = tokentool_json("info", "--port", token.pty)
    assert info["serial"] is None and info["provisioned"] is False
    provisioned = tokentool_json("provision", "--port", token.pty, "--role", "wearable", "--escrow")
    serial = provisioned["serial"]
    assert serial.startswith("TT-") and len(serial) == 11
    secrets = Keystore(tokentool_home / "keystore.sqlite").get(serial)
    assert secrets is not None and len(secrets.auth_key) == 32 and len(secrets.seed) == 16
    info = tokentool_json("info", "--port", token.pty)
    assert (info["serial"], info["role"], info["identity"], info["provisioned"]) == (serial, "wearable", "escrowed", True)
    listing = tokentool_json("outbox", "list")
    assert [w["serial"] for w in listing["awaiting_registration"]] == [serial]


def test_sync_and_outbox_end_to_end(virtual_token, tokentool_home):
    token = virtual_token()
    serial = "TT-00C0FFEE"
    clinic_identity(token, tokentool_home, serial)
    token.fill(300)
    code, out, err = run_tokentool("sync", "--port", token.pty)
    assert code == 0, err
    assert out.count("\n") == 1 and f"{serial}: synced 300 new records" in out

    with Outbox(tokentool_home / "outbox.sqlite") as outbox:
        stored = list(outbox.records_of(serial))
        assert [seq for _, seq, _, _, _ in stored] == list(range(1, 301))
        for _, seq, data, _, _ in stored:
            records.decode(seq, data)  # every record intact, at its own sequence number
        batch = next(outbox.upload_batches())
        assert batch.payload["token"] == serial and len(batch.payload["records"]) == 300
        assert base64.b64decode(batch.payload["records"][0]["data"]) == stored[0][2]
        ranges = batch.payload["syncs"]
        assert ranges[0]["first_seq"] == 1 and ranges[-1]["last_seq"] >= 300

    after = tokentool_json("info", "--port", token.pty)
    assert after["pending"] == 0 and after["acked_seq"] == 300 and after["clock_set"] is True
    assert after["last_sync_at"] is not None

    # a second sync finds nothing new and says so
    again = tokentool_json("sync", "--port", token.pty)
    assert again["new_records"] == 0 and again["dumped"] == 0

    code, out, _ = run_tokentool("outbox", "export", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 300 and rows[0]["serial"] == serial and rows[0]["seq"] == "1"
    listing = tokentool_json("outbox", "list")
    assert listing["tokens"][0]["records"] == 300 and listing["tokens"][0]["not_uploaded"] == 300


def test_authenticated_keys_after_provisioning_match_the_escrowed_seed(virtual_token, tokentool_home):
    token = virtual_token()
    serial = tokentool_json("provision", "--port", token.pty, "--role", "wearable")["serial"]
    seed = Keystore(tokentool_home / "keystore.sqlite").get(serial).seed
    keys = tokentool_json("token-keys", "--port", token.pty, "--days", "3")["keys"]
    assert keys, "the token has a TEK for today"
    for key in keys:
        day = key["rolling_start_interval"] // 144
        assert bytes.fromhex(key["tek"]) == gaen.escrowed_tek(seed, day)

    code, _, err = run_tokentool("token-keys", "--port", token.pty, "--auth-key", "11" * 32)
    assert code != 0 and "wrong auth key" in err and "Traceback" not in err


def test_wipe_needs_the_auth_key_and_confirmation(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    token.fill(20)
    code, _, err = run_tokentool("wipe", "--port", token.pty)
    assert code == 2 and "--yes" in err
    code, _, err = run_tokentool("wipe", "--port", token.pty, "--yes", "--auth-key", "22" * 32)
    assert code != 0 and "wrong auth key" in err
    assert tokentool_json("info", "--port", token.pty)["pending"] == 20  # unchanged
    assert tokentool_json("wipe", "--port", token.pty, "--yes")["erased_pending"] == 20
    assert tokentool_json("info", "--port", token.pty)["pending"] == 0


def test_reprovisioning_needs_the_current_key(virtual_token, tokentool_home, tmp_path):
    token = virtual_token()
    first = tokentool_json("provision", "--port", token.pty, "--role", "wearable")["serial"]
    # another clinic (empty keystore) cannot take the token over
    code, _, err = run_tokentool("provision", "--port", token.pty, "--role", "venue",
                                 "--keystore", str(tmp_path / "other.sqlite"))
    assert code != 0 and first in err and "keystore" in err
    assert tokentool_json("info", "--port", token.pty)["serial"] == first
    second = tokentool_json("provision", "--port", token.pty, "--role", "venue")
    assert second["previous_serial"] == first
    assert tokentool_json("info", "--port", token.pty)["role"] == "venue"


def test_events_show_what_the_token_did(virtual_token, tokentool_home):
    token = virtual_token()
    clinic_identity(token, tokentool_home)
    tokentool_json("sync", "--port", token.pty)
    run_tokentool("token-keys", "--port", token.pty, "--auth-key", "33" * 32)
    events = tokentool_json("events", "--port", token.pty)["events"]
    codes = [e["code"] for e in events]
    assert "boot" in codes and "clock_set" in codes and "auth_failed" in codes
