"""Batched GAEN v1.2 derivations for the service (CPython only).

The identifiers are the ones `tokenfw.gaen` computes one block at a time on the token; here the
same bytes come out in bulk: one AES-ECB call over all PaddedData blocks a key needs, HKDF as two
one-shot `hmac.digest` calls, and an escrowed token's HKDF-extract (which depends only on its
seed) done once per token instead of once per day. tests/matching/test_crypto.py checks every
function against the official vectors and against tokenfw.gaen.
"""
from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

INTERVAL_S = 600
ROLLING_PERIOD = 144
_EXPAND_RPIK = b"EN-RPIK\x01"      # HKDF-expand input for a 16-byte output: info || 0x01
_EXPAND_AEMK = b"EN-AEMK\x01"
_ESCROW_INFO = b"TT-TEK-v1"
_PADDED_PREFIX = np.frombuffer(b"EN-RPI" + bytes(6), dtype=np.uint8)


# HMAC with the all-zero salt as key (every HKDF-extract here): the padded key is constant, so
# SHA-256 states that have already absorbed it are copied instead of re-hashing 64 bytes.
_NULL_SALT_INNER = hashlib.sha256(bytes([0x36]) * 64)
_NULL_SALT_OUTER = hashlib.sha256(bytes([0x5C]) * 64)


def hkdf_extract_null_salt(ikm: bytes) -> bytes:
    """HMAC-SHA256(32 zero bytes, ikm): HKDF-extract with the spec's NULL salt."""
    inner = _NULL_SALT_INNER.copy()
    inner.update(ikm)
    outer = _NULL_SALT_OUTER.copy()
    outer.update(inner.digest())
    return outer.digest()


def _public_ecb_encryptor(key: bytes):
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _fastest_ecb_encryptor():
    """Keying AES costs more than encrypting a day's blocks, and the public Cipher API adds
    type checks to every keying. This cryptography version's own context constructor does the
    same without them; it is used only if it gives the public API's bytes (else: public)."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        create = rust_openssl.ciphers.create_encryption_ctx
        aes128 = algorithms.AES128
        ecb = modes.ECB()

        def fast(key: bytes):
            return create(aes128(key), ecb)

        probe = bytes(range(16)) * 2
        if fast(probe[:16]).update(probe) == _public_ecb_encryptor(probe[:16]).update(probe):
            return fast
    except Exception:  # noqa: BLE001 - any change in the private API: use the public one
        pass
    return _public_ecb_encryptor


ecb_encryptor = _fastest_ecb_encryptor()


def _hkdf16(ikm: bytes, expand_input: bytes) -> bytes:
    return hmac.digest(hkdf_extract_null_salt(ikm), expand_input, "sha256")[:16]


def rpi_key(tek: bytes) -> bytes:
    """RPIK = HKDF(TEK, NULL salt, "EN-RPIK", 16)."""
    return _hkdf16(tek, _EXPAND_RPIK)


def aem_key(tek: bytes) -> bytes:
    """AEMK = HKDF(TEK, NULL salt, "EN-AEMK", 16)."""
    return _hkdf16(tek, _EXPAND_AEMK)


def escrow_prk(seed: bytes) -> bytes:
    """HKDF-extract of an escrowed seed: the half of escrowed_tek() that does not depend on
    the day, computed once per token."""
    return hkdf_extract_null_salt(seed)


def escrowed_tek_from_prk(prk: bytes, day: int) -> bytes:
    """TEK of day `day` = HKDF-expand(PRK(seed), "TT-TEK-v1" || day u32 LE, 16)."""
    return hmac.digest(prk, _ESCROW_INFO + struct.pack("<I", day) + b"\x01", "sha256")[:16]


def escrowed_tek(seed: bytes, day: int) -> bytes:
    return escrowed_tek_from_prk(escrow_prk(seed), day)


def padded_blocks(enins) -> bytes:
    """PaddedData(j) for every interval in `enins`, concatenated (16 bytes each)."""
    enins = np.asarray(enins, dtype=np.int64)
    if enins.size and (enins.min() < 0 or enins.max() > 0xFFFFFFFF):
        raise ValueError("interval numbers must fit in 32 bits")
    blocks = np.zeros((enins.size, 16), dtype=np.uint8)
    blocks[:, :12] = _PADDED_PREFIX
    blocks[:, 12:] = enins.astype("<u4").view(np.uint8).reshape(-1, 4)
    return blocks.tobytes()


def aes_ecb(key: bytes, data: bytes) -> bytes:
    """AES-128-ECB of all 16-byte blocks of `data` under one key, in one call."""
    if len(key) != 16:
        raise ValueError("AES-128 key must be 16 bytes, got %d" % len(key))
    return ecb_encryptor(key).update(data)


def rpis(rpik: bytes, padded: bytes) -> bytes:
    """RPIs for the PaddedData blocks `padded` (from padded_blocks), concatenated."""
    return aes_ecb(rpik, padded)


def rpis_for_key(tek: bytes, start_interval: int, count: int) -> list[bytes]:
    """The `count` RPIs of a TEK from `start_interval` on (a diagnosis key's whole period)."""
    blob = rpis(rpi_key(tek), padded_blocks(range(start_interval, start_interval + count)))
    return [blob[i:i + 16] for i in range(0, len(blob), 16)]


def decrypt_aem(aemk: bytes, rpi: bytes, aem: bytes) -> bytes:
    """Metadata from an AEM: AEM XOR AES-ECB(AEMK, RPI)[:4] (CTR with IV = RPI)."""
    stream = aes_ecb(aemk, rpi)
    return bytes(a ^ s for a, s in zip(aem, stream[:4]))


def metadata_tx_power(metadata: bytes) -> int | None:
    """TX power (dBm) from decrypted metadata, or None when the metadata is not a GAEN v1.x
    block (major version bits 7:6 must be 01), which is what a wrong key decrypts to most of
    the time."""
    if len(metadata) != 4 or metadata[0] >> 6 != 1:
        return None
    value = metadata[1]
    return value - 256 if value > 127 else value
