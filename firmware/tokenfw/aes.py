# AES-128 in ECB mode, one 16-byte block at a time: all that GAEN needs (RPI = one block,
# AEM = one block used as a CTR keystream for 4 bytes).
#
# MicroPython has `cryptolib.aes(key, 1)` (ECB); CPython uses the `cryptography` package. The
# two are bridged here and nowhere else, so tokenfw.gaen is the same code on both.
#
# Edge cases: keys and blocks must be exactly 16 bytes (ValueError otherwise, on both
# interpreters, instead of each backend's own error); a Cipher object is keyed once and reused,
# because re-keying costs as much as a block on the ESP32 and the token encrypts one block
# every 10 minutes with the same day key.
try:
    import cryptolib

    _aes_ecb = cryptolib.aes
    _backend = "cryptolib"
except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
    from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
    from cryptography.hazmat.primitives.ciphers import modes as _modes

    _backend = "cryptography"

_MODE_ECB = 1
BLOCK_SIZE = 16


def _need16(value, what):
    if len(value) != BLOCK_SIZE:
        raise ValueError("%s must be 16 bytes, got %d" % (what, len(value)))


class Cipher:
    """AES-128-ECB keyed once; `encrypt(block16)` -> 16 new bytes, `encrypt_into(block, out)`
    writes into a preallocated 16-byte bytearray (no allocation on MicroPython)."""

    def __init__(self, key16):
        _need16(key16, "AES key")
        if _backend == "cryptolib":
            self._aes = _aes_ecb(bytes(key16), _MODE_ECB)
        else:
            self._aes = _Cipher(_algorithms.AES(bytes(key16)), _modes.ECB()).encryptor()

    def encrypt(self, block16):
        _need16(block16, "AES block")
        return bytes(self._aes.encrypt(bytes(block16))) if _backend == "cryptolib" \
            else self._aes.update(bytes(block16))

    def encrypt_into(self, block16, out16):
        _need16(block16, "AES block")
        _need16(out16, "AES output")
        if _backend == "cryptolib":
            self._aes.encrypt(block16, out16)
        else:
            out16[:] = self._aes.update(bytes(block16))
        return out16


def encrypt_block(key16, block16):
    """AES-128-ECB of one 16-byte block under a 16-byte key."""
    return Cipher(key16).encrypt(block16)
