"""The firmware's GAEN code against an independent implementation on the `cryptography` package.

tokenfw.gaen builds HMAC, HKDF and the AEM's CTR step by hand (MicroPython has neither `hmac`
nor AES-CTR). Here the same derivations are written straight from the specification with the
`cryptography` package's HMAC, HKDF and AES-CTR, and compared over random TEKs, intervals and
metadata: on CPython, and on the real MicroPython interpreter.
"""
from __future__ import annotations

import json
import os
import random
import subprocess

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from host_tools import micropython
from tokenfw import gaen


def ref_hkdf(ikm: bytes, info: bytes, length: int = 16, salt: bytes | None = None) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)  # salt None = HashLen zeros


def ref_identifiers(tek: bytes, enin: int, metadata: bytes) -> dict[str, str]:
    rpik = ref_hkdf(tek, b"EN-RPIK")
    aemk = ref_hkdf(tek, b"EN-AEMK")
    padded = b"EN-RPI" + bytes(6) + enin.to_bytes(4, "little")
    encryptor = Cipher(algorithms.AES(rpik), modes.ECB()).encryptor()
    rpi = encryptor.update(padded) + encryptor.finalize()
    ctr = Cipher(algorithms.AES(aemk), modes.CTR(rpi)).encryptor()
    aem = ctr.update(metadata) + ctr.finalize()
    return {"rpik": rpik.hex(), "aemk": aemk.hex(), "rpi": rpi.hex(), "aem": aem.hex()}


def firmware_identifiers(tek: bytes, enin: int, metadata: bytes) -> dict[str, str]:
    rpik, aemk = gaen.rpi_key(tek), gaen.aem_key(tek)
    rpi = gaen.rpi(rpik, enin)
    return {"rpik": rpik.hex(), "aemk": aemk.hex(), "rpi": rpi.hex(),
            "aem": gaen.aem(aemk, rpi, metadata).hex()}


@settings(max_examples=300, deadline=None)
@given(tek=st.binary(min_size=16, max_size=16), enin=st.integers(0, 2**32 - 1),
       metadata=st.binary(min_size=4, max_size=4))
def test_identifiers_match_cryptography(tek: bytes, enin: int, metadata: bytes) -> None:
    assert firmware_identifiers(tek, enin, metadata) == ref_identifiers(tek, enin, metadata)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=300))
def test_hmac_matches_cryptography(key: bytes, msg: bytes) -> None:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(msg)
    assert gaen.hmac_sha256(key, msg) == mac.finalize()


@settings(max_examples=200, deadline=None)
@given(ikm=st.binary(max_size=80), salt=st.binary(min_size=1, max_size=80), info=st.binary(max_size=40),
       length=st.integers(1, 255 * 32))
def test_hkdf_matches_cryptography(ikm: bytes, salt: bytes, info: bytes, length: int) -> None:
    assert gaen.hkdf_sha256(ikm, salt, info, length) == ref_hkdf(ikm, info, length, salt)


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=16, max_size=16), day=st.integers(0, 2**32 - 1))
def test_escrowed_tek_matches_the_documented_derivation(seed: bytes, day: int) -> None:
    expected = ref_hkdf(seed, b"TT-TEK-v1" + day.to_bytes(4, "little"))
    assert gaen.escrowed_tek(seed, day) == expected


def test_aem_decryption_with_cryptography_recovers_the_tx_power() -> None:
    # What the matching service does with a heard AEM: CTR-decrypt with AEMK from the TEK.
    schedule = gaen.TekSchedule("escrowed", seed=bytes(range(16)), tx_power_dbm=-17)
    enin, rpi, aem = schedule.at(1767225600)
    aemk = ref_hkdf(gaen.escrowed_tek(bytes(range(16)), enin // 144), b"EN-AEMK")
    ctr = Cipher(algorithms.AES(aemk), modes.CTR(rpi)).decryptor()
    metadata = ctr.update(aem) + ctr.finalize()
    assert metadata[0] == 0x40 and int.from_bytes(metadata[1:2], "little", signed=True) == -17


MP_SCRIPT = """
import sys, json
from binascii import hexlify, unhexlify
from tokenfw import gaen
for line in sys.stdin.read().split("\\n"):
    if not line:
        continue
    case = json.loads(line)
    tek = unhexlify(case["tek"])
    rpik = gaen.rpi_key(tek)
    aemk = gaen.aem_key(tek)
    rpi = gaen.rpi(rpik, case["enin"])
    aem = gaen.aem(aemk, rpi, unhexlify(case["metadata"]))
    seed_tek = gaen.escrowed_tek(unhexlify(case["tek"]), case["enin"] // 144)
    print(json.dumps({"rpik": hexlify(rpik).decode(), "aemk": hexlify(aemk).decode(),
                      "rpi": hexlify(rpi).decode(), "aem": hexlify(aem).decode(),
                      "escrowed": hexlify(seed_tek).decode()}))
"""


def test_micropython_identifiers_match_cryptography(tmp_path) -> None:
    rng = random.Random(20260101)
    cases = [{"tek": rng.randbytes(16).hex(), "enin": rng.randrange(2**32),
              "metadata": rng.randbytes(4).hex()} for _ in range(100)]
    script = tmp_path / "crosscheck.py"
    script.write_text(MP_SCRIPT)
    done = _run_micropython_with_stdin(script, "\n".join(json.dumps(c) for c in cases) + "\n")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(cases)
    for case, got in zip(cases, results):
        tek = bytes.fromhex(case["tek"])
        expected = ref_identifiers(tek, case["enin"], bytes.fromhex(case["metadata"]))
        expected["escrowed"] = ref_hkdf(tek, b"TT-TEK-v1" + (case["enin"] // 144).to_bytes(4, "little")).hex()
        assert got == expected, case


def _run_micropython_with_stdin(script, stdin_text: str) -> subprocess.CompletedProcess:
    return subprocess.run(micropython.command(script), env=micropython.environment(), input=stdin_text,
                          capture_output=True, text=True, timeout=120, cwd=os.path.dirname(script))
