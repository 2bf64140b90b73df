"""`tokentool keys`: the identifiers a user gets from the command line, as a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKENTOOL = str(Path(sys.executable).with_name("tokentool"))

OFFICIAL_TEK = "75c734c6dd1a782de7a965da5eb93125"
OFFICIAL_RPIK = "185ad91db69ec7dd048960f1f3ba6175"
OFFICIAL_AEMK = "d57c46af7a1d83965b9bed8bd152936a"
OFFICIAL_ROWS = [  # (ENIN, RPI, AEM) from the GAEN v1.2 test vectors, metadata 40080000
    (2642976, "8be6cd371c5c891604bfbe49df845096", "72033874"),
    (2642977, "3c9a1de5dd6b02afa7fded7b570b3e56", "c29211b1"),
    (2642978, "243ffe9a3b08bded3094bac8630bb8ad", "6adfad03"),
    (2642979, "dfc3ed265e97d0eabb630e168b4214ed", "f1e2f80b"),
    (2643119, "f431b62ecf443102ce4ed0407de54bd4", "1215e57e"),
]


def tokentool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOKENTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("interval,rpi,aem", OFFICIAL_ROWS)
def test_keys_rpi_json_reproduces_the_official_vectors(interval: int, rpi: str, aem: str) -> None:
    done = tokentool("keys", "rpi", "--tek", OFFICIAL_TEK, "--interval", str(interval),
                     "--metadata", "40080000", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {k: result[k] for k in ("rpik", "rpi", "aemk", "aem")} == {
        "rpik": OFFICIAL_RPIK, "rpi": rpi, "aemk": OFFICIAL_AEMK, "aem": aem}
    assert result["interval"] == interval


def test_keys_rpi_text_names_all_four_values() -> None:
    done = tokentool("keys", "rpi", "--tek", OFFICIAL_TEK.upper(), "--interval", "2642976",
                     "--metadata", "40 08 00 00")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split() for line in done.stdout.splitlines())
    assert lines == {"RPIK": OFFICIAL_RPIK, "RPI": OFFICIAL_ROWS[0][1], "AEMK": OFFICIAL_AEMK,
                     "AEM": OFFICIAL_ROWS[0][2]}


def test_keys_rpi_default_metadata_is_version_1_0_with_zero_tx_power() -> None:
    done = tokentool("keys", "rpi", "--tek", OFFICIAL_TEK, "--interval", "2642976", "--json")
    result = json.loads(done.stdout)
    assert result["metadata"] == "40000000"
    assert result["rpi"] == OFFICIAL_ROWS[0][1]  # the RPI does not depend on metadata
    assert result["aem"] != OFFICIAL_ROWS[0][2]


def test_keys_tek_gives_the_escrowed_tek_the_service_recomputes() -> None:
    seed = bytes(range(16))
    done = tokentool("keys", "tek", "--seed", seed.hex(), "--day", "20454", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = HKDF(hashes.SHA256(), 16, bytes(32), b"TT-TEK-v1" + (20454).to_bytes(4, "little")).derive(seed)
    assert result["tek"] == expected.hex()
    assert result["rolling_start_interval"] == 20454 * 144 and result["rolling_period"] == 144


@pytest.mark.parametrize("args,message", [
    (["rpi", "--tek", "75c7", "--interval", "1"], "--tek must be 32 hex digits"),
    (["rpi", "--tek", "zz" + "0" * 30, "--interval", "1"], "--tek is not hexadecimal"),
    (["rpi", "--tek", OFFICIAL_TEK, "--interval", "-1"], "--interval must be between 0 and 4294967295"),
    (["rpi", "--tek", OFFICIAL_TEK, "--interval", "4294967296"], "--interval must be between"),
    (["rpi", "--tek", OFFICIAL_TEK, "--interval", "soon"], "--interval must be a whole number"),
    (["rpi", "--tek", OFFICIAL_TEK, "--interval", "1", "--metadata", "40"], "--metadata must be 8 hex digits"),
    (["tek", "--seed", "00" * 15, "--day", "1"], "--seed must be 32 hex digits"),
    (["tek", "--seed", "00" * 16, "--day", "1.5"], "--day must be a whole number"),
])
def test_bad_input_gives_one_line_error_and_nonzero_exit(args: list[str], message: str) -> None:
    done = tokentool("keys", *args, "--json")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("tokentool: ") and message in done.stderr
