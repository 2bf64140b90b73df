"""Start-up settings are validated (every problem reported at once) and the operator CLI speaks
in one-line errors."""
from __future__ import annotations

import os
import stat

import pytest

from matching_service import SettingsError
from matching_service import settings as settings_mod

from .conftest import run_cli


def test_zero_configuration_defaults_to_sqlite_in_the_data_dir(tmp_path):
    loaded = settings_mod.load(env={}, data_dir=str(tmp_path))
    assert loaded.db_url == f"sqlite:///{tmp_path / 'matching.sqlite3'}"
    assert (loaded.host, loaded.port) == ("127.0.0.1", 8080)
    assert loaded.risk.exposure_threshold_min == 11.0


def test_every_bad_setting_is_reported_together(tmp_path):
    env = {"MATCHING_PORT": "http", "MATCHING_DB_URL": "mysql://x", "MATCHING_MASTER_KEY": "short",
           "MATCHING_BUCKET_WEIGHTS": "1,1,9,0", "MATCHING_CODE_TTL_S": "5",
           "MATCHING_ATTENUATION_THRESHOLDS_DB": "70,60,50"}
    with pytest.raises(SettingsError) as error:
        settings_mod.load(env=env, data_dir=str(tmp_path))
    text = " | ".join(error.value.problems)
    assert len(error.value.problems) == 6
    for word in ("port", "database URL", "MASTER_KEY", "bucket_weights", "code_ttl_s",
                 "attenuation_thresholds_db"):
        assert word in text


def test_cli_flags_win_over_environment(tmp_path):
    loaded = settings_mod.load(env={"MATCHING_PORT": "9000", "MATCHING_DB_URL": "sqlite:///x.db"},
                               port=9100, db_url="postgresql://u@h/db")
    assert loaded.port == 9100
    assert loaded.db_url == "postgresql+psycopg2://u@h/db"


def test_dev_secrets_are_generated_once_with_owner_only_permissions(tmp_path, capsys):
    loaded = settings_mod.resolve_secrets(settings_mod.load(env={}, data_dir=str(tmp_path)))
    assert "generated master key" in capsys.readouterr().err
    for path in (loaded.master_key_file, loaded.export_key_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = settings_mod.resolve_secrets(settings_mod.load(env={}, data_dir=str(tmp_path)))
    assert again.master_key == loaded.master_key and not again.generated_secrets


def test_operator_master_key_file(tmp_path):
    key_file = tmp_path / "mk"
    key_file.write_text("ab" * 32)
    loaded = settings_mod.load(env={"MATCHING_MASTER_KEY_FILE": str(key_file)}, data_dir=str(tmp_path))
    assert loaded.master_key == bytes.fromhex("ab" * 32)
    with pytest.raises(SettingsError, match="cannot read"):
        settings_mod.load(env={"MATCHING_MASTER_KEY_FILE": str(tmp_path / "missing")})


def test_cli_reports_settings_errors_one_per_line(tmp_path):
    env = dict(os.environ, MATCHING_DATA_DIR=str(tmp_path), MATCHING_PORT="0x",
               MATCHING_MAX_BODY_BYTES="-5")
    env.pop("MATCHING_DB_URL", None)
    result = run_cli(env, "migrate", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("matching-service: ") for line in lines)


def test_cli_migrate_create_key_and_unreachable_database(tmp_path):
    env = dict(os.environ, MATCHING_DATA_DIR=str(tmp_path))
    env.pop("MATCHING_DB_URL", None)
    assert "revision 0001" in run_cli(env, "migrate").stdout
    key = run_cli(env, "create-key", "--role", "official").stdout.split()[0]
    assert key.startswith("ms_")
    bad = run_cli(env, "create-key", "--role", "official", "--db",
                  "postgresql://nobody@127.0.0.1:1/none", check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("matching-service: cannot reach the database")
    assert "Traceback" not in bad.stderr
    missing = run_cli(env, "import-keys", str(tmp_path / "nope.zip"), check=False)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_prune_deletes_only_what_is_past_retention(service, clinic):
    import json
    import time

    from .scenario import Device

    now = int(time.time())
    old, fresh = Device(), Device()
    start_old = (now - 30 * 86400) // 600 * 600
    old.hear(Device(), start_old, start_old + 300)
    fresh.hear(Device(), now - 3600, now - 3400)
    clinic.register([old.provisioning(), fresh.provisioning()])
    clinic.upload(old.upload_body(now - 60))
    clinic.upload(fresh.upload_body(now - 60))
    result = json.loads(run_cli(service.env, "prune", "--json").stdout)
    assert result["encounter records"] >= 1
    assert clinic.status(old.serial)["records"] == 0
    assert clinic.status(fresh.serial)["records"] == len(fresh.log)
    refused = run_cli(service.env, "prune", "--older-than-days", "3", check=False)
    assert refused.returncode == 1 and "between 15 and 3650" in refused.stderr
