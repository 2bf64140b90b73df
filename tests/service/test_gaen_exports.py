"""GAEN export files: the reader on the two real files from Google's reference implementation,
our writer byte-for-byte against one of them, signatures, defensive parsing, and import/export
through the service (a phone user's key matched against a token's log)."""
from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings, strategies as st

from matching_service.exports import gaen

from .conftest import run_cli
from .scenario import Device

REFERENCE = Path("/work/shared/reference/gaen-exports")
SAMPLE_ZIP = REFERENCE / "sample_diagnosis_key_file.zip"
EXPORT_200 = REFERENCE / "export-200-keys.bin"


def test_reads_the_reference_sample_zip():
    export, verified = gaen.read_zip(SAMPLE_ZIP.read_bytes())
    assert not verified
    assert export.region == "US"
    assert export.start_timestamp == 1593633600 and export.end_timestamp == 1593633900
    assert len(export.keys) == 140
    first = export.keys[0]
    assert first.key_data.hex() == "0003d60b188f19856e8b3dd29a0c463b"
    assert (first.transmission_risk_level, first.rolling_start_interval_number,
            first.rolling_period) == (3, 2653920, 144)
    assert export.signature_infos[0].signature_algorithm == gaen.SIGNATURE_ALGORITHM


def test_reads_the_reference_200_key_export():
    export = gaen.decode_export(EXPORT_200.read_bytes())
    assert export.region == "US"
    assert (export.start_timestamp, export.end_timestamp) == (1588425586, 1588857586)
    assert len(export.keys) == 200
    first = export.keys[0]
    assert first.key_data.hex() == "00068b4d1fb011b9c9ae2744419d4ab3"
    assert (first.transmission_risk_level, first.rolling_start_interval_number,
            first.rolling_period) == (2, 2625468, 141)


def test_writer_reproduces_the_reference_export_byte_for_byte():
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        body = archive.read("export.bin")
    assert gaen.encode_export(gaen.decode_export(body)) == body


def test_signed_export_verifies_and_tampering_fails():
    key = ec.generate_private_key(ec.SECP256R1())
    export = gaen.decode_export(EXPORT_200.read_bytes())
    data = gaen.write_zip(export, key, gaen.SignatureInfo("v1", "310"))
    parsed, verified = gaen.read_zip(data, key.public_key())
    assert verified and parsed.keys == export.keys
    with pytest.raises(gaen.ExportError, match="does not verify"):
        gaen.read_zip(data, ec.generate_private_key(ec.SECP256R1()).public_key())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        body, sig = archive.read("export.bin"), archive.read("export.sig")
    tampered = bytearray(body)
    tampered[-3] ^= 1
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export.bin", bytes(tampered))
        archive.writestr("export.sig", sig)
    with pytest.raises(gaen.ExportError):
        gaen.read_zip(buffer.getvalue(), key.public_key())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_reader_never_fails_except_with_export_error(tail):
    try:
        gaen.decode_export(gaen.HEADER + tail)
    except gaen.ExportError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5912))
def test_every_truncation_of_a_real_export_is_a_clean_error_or_a_prefix(cut):
    data = EXPORT_200.read_bytes()[:cut]
    try:
        export = gaen.decode_export(data)
    except gaen.ExportError:
        return
    assert len(export.keys) <= 200


def test_not_a_zip_is_a_clean_error():
    with pytest.raises(gaen.ExportError):
        gaen.read_zip(b"PK\x03\x04 not really")


def test_import_keys_matches_phone_users_and_checks_signatures(service, clinic, tmp_path):
    """A phone user who tested positive publishes keys through a phone-app key server; a token
    that heard the phone is exposed after `matching-service import-keys`."""
    now = int(time.time())
    day = now // 86400 - 1
    phone = Device(identity="private")
    token = Device()
    start = day * 86400 + 12 * 3600
    token.hear(phone, start, start + 30 * 60, rssi=-55)
    clinic.register([token.provisioning()])
    clinic.upload(token.upload_body(now - 60))

    server_key = ec.generate_private_key(ec.SECP256R1())
    export = gaen.Export(start_timestamp=now - 86400, end_timestamp=now, region="XX", keys=(
        gaen.ExposureKey(phone.tek(day), 4, day * 144, 144, 1),
        gaen.ExposureKey(b"short", 4, day * 144, 144, 1)))
    zip_path = tmp_path / "phone-keys.zip"
    zip_path.write_bytes(gaen.write_zip(export, server_key, gaen.SignatureInfo("v1", "999")))
    pem_path = tmp_path / "server.pem"
    pem_path.write_bytes(gaen.public_key_pem(server_key))
    wrong_pem = tmp_path / "wrong.pem"
    wrong_pem.write_bytes(gaen.public_key_pem(ec.generate_private_key(ec.SECP256R1())))

    refused = run_cli(service.env, "import-keys", str(zip_path), "--public-key", str(wrong_pem),
                      check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("matching-service: ") and "verify" in refused.stderr
    assert clinic.status(token.serial)["status"] == "not_exposed"

    result = json.loads(run_cli(service.env, "import-keys", str(zip_path), "--public-key",
                                str(pem_path), "--json").stdout)
    assert result["keys"] == 1 and result["invalid"] == 1 and result["signature_verified"]
    status = clinic.status(token.serial)
    assert status["status"] == "exposed"
    assert status["exposures"][0]["source"].startswith("import:")

    again = run_cli(service.env, "import-keys", str(zip_path), check=False)
    assert again.returncode == 1 and "already been imported" in again.stderr


def test_reference_sample_imports_without_a_public_key(service):
    result = json.loads(run_cli(service.env, "import-keys", str(SAMPLE_ZIP), "--json").stdout)
    assert result["region"] == "US" and result["keys"] + result["already_known"] == 140
    assert result["signature_verified"] is False


def test_public_export_is_signed_and_holds_back_todays_keys(service, clinic, official):
    now = int(time.time())
    today = now // 86400
    case = Device()
    clinic.register([case.provisioning()])
    code = official.issue_code(case.serial)["code"]
    clinic.report_positive(code, case.diagnosis_keys([today - 2, today]), case.upload_body(now - 60))
    with service.http() as http:
        data = http.get("/v1/exports/latest.zip")
        pem = http.get("/v1/exports/public-key.pem")
    assert data.status_code == 200 and data.headers["content-type"] == "application/zip"
    export, verified = gaen.read_zip(data.content, gaen.load_public_key(pem.content))
    assert verified
    published = {k.key_data for k in export.keys}
    assert case.tek(today - 2) in published
    assert case.tek(today) not in published  # still valid today: embargoed
    out = service.data_dir / "cli-export.zip"
    run_cli(service.env, "export", "--out", str(out))
    assert gaen.read_zip(out.read_bytes(), gaen.load_public_key(pem.content))[1]
