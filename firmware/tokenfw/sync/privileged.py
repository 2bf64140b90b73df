# The token's privileged sync commands: CHALLENGE, KEYS, PROVISION and WIPE (the MAC is in
# auth.py). Loaded by server.py on the first privileged request only, so that a plain sync
# never pays its RAM. Error texts are terse on purpose (they cost RAM on the token); the host
# turns them into sentences.
#
# Edge cases: no CHALLENGE before the request, a wrong key, a replayed MAC (the nonce is gone
# after one attempt), a token not provisioned yet (PROVISION needs no MAC then: a blank token
# has no key; any later PROVISION does), identity fields of the wrong type or size, and a
# re-provisioning that would re-label unsynced records with another serial (refused).
import json
import os
import struct

from tokenfw.sync import auth
from tokenfw.sync.server import (E_AUTH, E_BAD_REQUEST, E_NOT_PROVISIONED, E_REFUSED, Refused)

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_CHALLENGE = const(0x06)
_KEYS = const(0x07)
_PROVISION = const(0x08)
_WIPE = const(0x09)

_HEX = "0123456789abcdef"


def _hex(text, length):
    if not isinstance(text, str) or len(text) != length:
        return False
    for ch in text:
        if ch not in _HEX:
            return False
    return True


def verify(server, cmd, payload):
    """Check the MAC in front of a privileged request; returns the rest of the payload."""
    nonce = server.nonce
    server.nonce = None  # one attempt per nonce, right or wrong
    key = server.config().get("auth_key")
    if nonce is None or len(payload) < 32:
        raise Refused(E_AUTH, "challenge first")
    if not _hex(key, 64):
        raise Refused(E_NOT_PROVISIONED, "not provisioned")
    rest = payload[32:]
    if not auth.equal(auth.mac(bytes.fromhex(key), nonce, cmd, rest), payload[:32]):
        server.auth_failures += 1
        server.log("auth_failed", "cmd %d" % cmd)
        raise Refused(E_AUTH, "wrong auth key")
    return rest


def challenge(server, payload):
    server.nonce = os.urandom(16)
    return server.nonce


def keys(server, payload):
    rest = verify(server, _KEYS, payload)
    if len(rest) != 1 or not 1 <= rest[0] <= 21:
        raise Refused(E_BAD_REQUEST, "days 1..21")
    token = server.token
    enin = token.clock.now() // 600  # GAEN interval number: 10-minute steps since 1970
    entries = []
    for tek, start in token.keys.since(enin - rest[0] * 144):
        entries.append((start, tek))
    server.log("keys_read", "%d days" % rest[0])
    out = bytes((len(entries),))
    for start, tek in entries:
        out += struct.pack("<I", start) + bytes(tek)
    return out


def provision(server, payload):
    config = server.config()
    if config.get("serial") and config.get("auth_key"):
        rest = verify(server, _PROVISION, payload)
    else:
        rest = payload[32:]
    try:
        new = _identity(json.loads(bytes(rest)))
    except (ValueError, TypeError, AttributeError) as error:
        raise Refused(E_BAD_REQUEST, str(error))
    pending = server.token.store.pending()
    if pending and config.get("serial") and config.get("serial") != new["serial"]:
        raise Refused(E_REFUSED, "%d unsynced" % pending)
    merged = dict(config)
    merged.update(new)
    if new["identity"] == "private":
        merged.pop("seed", None)
    server.token.reconfigure(merged)
    server.log("provisioned", new["serial"])
    return json.dumps({"serial": new["serial"], "role": new["role"], "identity": new["identity"],
                       "profile": merged.get("profile")}).encode()


def wipe(server, payload):
    if verify(server, _WIPE, payload) != b"WIPE":
        raise Refused(E_BAD_REQUEST, "WIPE")
    server.token.wipe()
    return b""


def _identity(wanted):
    # Each failed check raises ValueError naming the field; the host explains the rule. (Kept
    # in small functions: each function's bytecode is one allocation when the module loads.)
    serial = wanted.get("serial")
    if not (isinstance(serial, str) and len(serial) == 11 and serial[:3] == "TT-" and _hex(serial[3:].lower(), 8)):
        raise ValueError("serial")
    out = {"serial": serial.upper()}
    for name, allowed in (("role", ("wearable", "venue")), ("identity", ("escrowed", "private"))):
        if wanted.get(name) not in allowed:
            raise ValueError(name)
        out[name] = wanted[name]
    _secrets(wanted, out)
    return out


def _secrets(wanted, out):
    if out["identity"] == "escrowed":
        if not _hex(wanted.get("seed"), 32):
            raise ValueError("seed")
        out["seed"] = wanted["seed"]
    if not _hex(wanted.get("auth_key"), 64):
        raise ValueError("auth_key")
    out["auth_key"] = wanted["auth_key"]
    tx = wanted.get("tx_power_dbm")
    if type(tx) is not int or not -127 <= tx <= 20:
        raise ValueError("tx_power_dbm")
    out["tx_power_dbm"] = tx
    profile = wanted.get("profile")
    if profile is not None:  # a wearable's power profile (a venue beacon's follows its role)
        if profile not in ("continuous", "burst"):
            raise ValueError("profile")
        out["profile"] = profile
    board = wanted.get("board")
    if board is not None:
        if not isinstance(board, str) or len(board) > 40:
            raise ValueError("board")
        out["board"] = board


HANDLERS = {_CHALLENGE: challenge, _KEYS: keys, _PROVISION: provision, _WIPE: wipe}
