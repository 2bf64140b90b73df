"""Secrets at rest: AES-256-GCM under the operator's master key.

Stored form: nonce (12 random bytes) || ciphertext || tag. The associated data binds each
ciphertext to its purpose and serial, so a seed row copied onto another token fails to decrypt.
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from matching_service import ServiceError


class SealError(ServiceError):
    """A stored secret failed to decrypt (wrong master key or tampered row)."""


class SecretBox:
    def __init__(self, master_key: bytes):
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def seal(self, purpose: str, serial: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, f"{purpose}:{serial}".encode())

    def open(self, purpose: str, serial: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], f"{purpose}:{serial}".encode())
        except (InvalidTag, ValueError) as error:
            raise SealError(f"stored {purpose} of {serial} does not decrypt with this master key") from error
