# GAEN v1.2 identifiers: TEK -> RPIK/AEMK -> RPI/AEM, as the Exposure Notification Cryptography
# Specification v1.2 defines them (facts in /work/shared/reference/gaen-v1.2.md, our choices in
# docs/identifiers.md).
#
# Runs unchanged on MicroPython and CPython. MicroPython has no `hmac` module and `cryptolib`
# has no CTR mode, so HMAC-SHA256 and HKDF (RFC 5869) are built here on `hashlib.sha256`, and the
# 4-byte AES-CTR of the AEM is the XOR with one ECB block (the CTR keystream's first block is
# AES(key, IV) and IV = RPI).
#
# Cost on a token: a new day costs two HKDFs (8 SHA-256 runs); a new 10-minute interval costs
# two AES blocks (RPI, then the AEM keystream), with ciphers keyed once per day (TekSchedule).
import hashlib
import os
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

from tokenfw import aes

INTERVAL_S = const(600)          # ENIntervalNumber granularity: 10 minutes
TEK_ROLLING_PERIOD = const(144)  # intervals per TEK (24 h)
KEY_SIZE = const(16)
_SHA256_BLOCK = const(64)
_MAX_DAY = const(0xFFFFFFFF)

_NULL_SALT = bytes(32)  # the spec's "NULL salt": 32 zero bytes
_INFO_RPIK = b"EN-RPIK"
_INFO_AEMK = b"EN-AEMK"
_RPI_PREFIX = b"EN-RPI" + bytes(6)  # PaddedData bytes 0..11; 12..15 are ENIN u32 LE
_ESCROW_INFO = b"TT-TEK-v1"

METADATA_V1_0 = const(0x40)

IDENTITY_ESCROWED = "escrowed"
IDENTITY_PRIVATE = "private"


def _xor(data, pad):
    return bytes(b ^ pad for b in data)


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) on hashlib.sha256. Keys longer than the 64-byte block are hashed
    first, shorter ones zero-padded, exactly as RFC 2104 says (an empty key is valid)."""
    key = bytes(key)
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_SHA256_BLOCK - len(key))
    inner = hashlib.sha256(_xor(key, 0x36))
    inner.update(msg)
    outer = hashlib.sha256(_xor(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()


def hkdf_sha256(ikm, salt, info, length):
    """HKDF-SHA256 (RFC 5869): extract with `salt` (None or empty = 32 zero bytes), expand with
    `info` to `length` bytes (1..8160)."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF length must be 1..8160, got %d" % length)
    if not salt:
        salt = _NULL_SALT
    prk = hmac_sha256(salt, ikm)
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac_sha256(prk, block + info + bytes((counter,)))
        okm += block
        counter += 1
    return okm[:length]


def _need_key(value, what):
    if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_SIZE:
        raise ValueError("%s must be 16 bytes" % what)


def interval_number(unix_s):
    """ENIntervalNumber: the 10-minute interval containing unix time `unix_s` (floor)."""
    if unix_s < 0:
        raise ValueError("time before 1970 has no interval number")
    return int(unix_s) // INTERVAL_S


def tek_start_interval(enin):
    """First interval of the TEK rolling period (UTC day) that contains interval `enin`."""
    return (enin // TEK_ROLLING_PERIOD) * TEK_ROLLING_PERIOD


def day_of_interval(enin):
    """Day number d = ENIN // 144 (the index of escrowed TEKs and of the key store)."""
    return enin // TEK_ROLLING_PERIOD


def rpi_key(tek):
    """RPIK = HKDF(TEK, NULL salt, "EN-RPIK", 16)."""
    _need_key(tek, "TEK")
    return hkdf_sha256(tek, _NULL_SALT, _INFO_RPIK, KEY_SIZE)


def aem_key(tek):
    """AEMK = HKDF(TEK, NULL salt, "EN-AEMK", 16)."""
    _need_key(tek, "TEK")
    return hkdf_sha256(tek, _NULL_SALT, _INFO_AEMK, KEY_SIZE)


def padded_data(enin):
    """PaddedData(j) = "EN-RPI" || 6 zero bytes || ENIN_j as uint32 little-endian."""
    if not 0 <= enin <= 0xFFFFFFFF:
        raise ValueError("interval number must fit in 32 bits")
    return _RPI_PREFIX + struct.pack("<I", enin)


def _cipher(key_or_cipher, what):
    # Accept a key (bytes) or an aes.Cipher already keyed with it (TekSchedule's cached one).
    if isinstance(key_or_cipher, aes.Cipher):
        return key_or_cipher
    _need_key(key_or_cipher, what)
    return aes.Cipher(key_or_cipher)


def rpi(rpik, enin):
    """RPI for interval `enin`: AES-128-ECB(RPIK, PaddedData(enin)). `rpik` is the 16-byte key
    or an aes.Cipher keyed with it."""
    return _cipher(rpik, "RPIK").encrypt(padded_data(enin))


def aem(aemk, rpi_bytes, metadata_bytes):
    """AEM = AES-128-CTR(AEMK, IV=RPI, metadata): metadata XOR AES-ECB(AEMK, RPI)[:4].
    Decryption is the same call with the AEM in place of the metadata."""
    _need_key(rpi_bytes, "RPI")
    if len(metadata_bytes) != 4:
        raise ValueError("metadata must be 4 bytes")
    stream = _cipher(aemk, "AEMK").encrypt(rpi_bytes)
    return bytes((metadata_bytes[0] ^ stream[0], metadata_bytes[1] ^ stream[1],
                  metadata_bytes[2] ^ stream[2], metadata_bytes[3] ^ stream[3]))


decrypt_aem = aem  # CTR: the same operation both ways


def metadata(tx_power_dbm, version=METADATA_V1_0):
    """GAEN v1.0 metadata: version byte, TX power as int8 dBm, two reserved zero bytes."""
    tx_power_dbm = int(tx_power_dbm)
    if not -128 <= tx_power_dbm <= 127:
        raise ValueError("TX power must fit in a signed byte, got %d dBm" % tx_power_dbm)
    return bytes((version & 0xFF, tx_power_dbm & 0xFF, 0, 0))


def metadata_tx_power(metadata_bytes):
    """TX power (dBm) from decrypted metadata."""
    value = metadata_bytes[1]
    return value - 256 if value > 127 else value


def escrowed_tek(seed, day):
    """TEK of day `day` for an escrowed token (the service recomputes it from the same seed):
    HKDF-SHA256(ikm=seed16, salt=32 zero bytes, info="TT-TEK-v1" || day u32 LE, 16)."""
    _need_key(seed, "seed")
    if not 0 <= day <= _MAX_DAY:
        raise ValueError("day number must fit in 32 bits")
    return hkdf_sha256(seed, _NULL_SALT, _ESCROW_INFO + struct.pack("<I", day), KEY_SIZE)


def private_tek(rng=None):
    """A fresh random TEK (private tokens: one per day, never leaves the token unless the
    owner uploads it after a positive test)."""
    tek = (rng or os.urandom)(KEY_SIZE)
    _need_key(tek, "random TEK")
    return bytes(tek)


class TekSchedule:
    """The token's own identifiers over time.

    `identity` is "escrowed" (TEK of day d = escrowed_tek(seed, d)) or "private" (random TEK
    per day from `rng(16)`, default os.urandom). For private tokens, `lookup(day) -> tek|None`
    and `on_new_tek(day, tek)` connect the schedule to the key store, so a reboot mid-day keeps
    the day's TEK instead of drawing a second one (two TEKs for one day would hide half the
    day's contacts from matching).

    Only one day's keys are cached: RPIK/AEMK ciphers keyed once, so rotating the RPI every
    10 minutes costs two AES blocks and no allocation beyond the results.
    """

    def __init__(self, identity, seed=None, rng=None, tx_power_dbm=0, lookup=None, on_new_tek=None):
        if identity == IDENTITY_ESCROWED:
            _need_key(seed, "escrowed token seed")
            seed = bytes(seed)
        elif identity != IDENTITY_PRIVATE:
            raise ValueError("identity must be 'escrowed' or 'private', got %r" % (identity,))
        self.identity = identity
        self._seed = seed
        self._rng = rng or os.urandom
        self._lookup = lookup
        self._on_new_tek = on_new_tek
        self.metadata = metadata(tx_power_dbm)
        self._day = -1
        self._tek = None
        self._rpi_cipher = None
        self._aem_cipher = None
        self._enin = -1
        self._current = None

    def tek(self, day):
        """TEK of day `day` (day = ENIN // 144). For private tokens, a day never seen before
        draws a new random TEK and reports it through on_new_tek."""
        if day == self._day:
            return self._tek
        if self.identity == IDENTITY_ESCROWED:
            return escrowed_tek(self._seed, day)
        tek = self._lookup(day) if self._lookup else None
        if tek is None:
            tek = private_tek(self._rng)
            if self._on_new_tek:
                self._on_new_tek(day, tek)
        return bytes(tek)

    def _enter_day(self, day):
        tek = self.tek(day)
        self._day = day
        self._tek = tek
        self._rpi_cipher = aes.Cipher(rpi_key(tek))
        self._aem_cipher = aes.Cipher(aem_key(tek))

    def identifiers(self, enin):
        """(rpi, aem) to advertise during interval `enin`; cached for repeated calls."""
        if enin == self._enin:
            return self._current
        day = day_of_interval(enin)
        if day != self._day:
            self._enter_day(day)
        rpi_bytes = rpi(self._rpi_cipher, enin)
        self._current = (rpi_bytes, aem(self._aem_cipher, rpi_bytes, self.metadata))
        self._enin = enin
        return self._current

    def at(self, unix_s):
        """(enin, rpi, aem) for unix time `unix_s`."""
        enin = interval_number(unix_s)
        rpi_bytes, aem_bytes = self.identifiers(enin)
        return enin, rpi_bytes, aem_bytes
