# The token's privileged sync commands: CHALLENGE, KEYS, PROVISION and WIPE (see auth.py for
# the MAC). Kept apart from server.py so that each module compiles within a small heap.
#
# Edge cases: no CHALLENGE before the request, a wrong key, a replayed MAC (the nonce is gone
# after one attempt), a token not provisioned yet (PROVISION needs no MAC then: a blank token
# has no key; any later PROVISION does), identity fields of the wrong type or size, and a
# re-provisioning that would re-label unsynced records with another serial (refused).
import json
import os

from tokenfw.sync import auth
from tokenfw.sync import messages as m
from tokenfw.sync.messages import Refused

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_MAX_KEY_DAYS = const(21)
_INTERVALS_PER_DAY = const(144)
_ROLES = ("wearable", "venue")
_IDENTITIES = ("escrowed", "private")
_HEX = "0123456789abcdef"


def is_hex(text, length):
    if not isinstance(text, str) or len(text) != length:
        return False
    for ch in text:
        if ch not in _HEX:
            return False
    return True


def provisioned(config):
    return bool(config.get("serial")) and is_hex(config.get("auth_key"), 64)


def verify(server, cmd, payload):
    """Check the MAC in front of a privileged request; returns the rest of the payload."""
    nonce = server.nonce
    server.nonce = None  # one attempt per nonce, right or wrong
    if len(payload) < m.MAC_SIZE:
        raise Refused(m.E_BAD_REQUEST, "request too short for its MAC")
    if nonce is None:
        raise Refused(m.E_AUTH, "authentication required: ask for a CHALLENGE first")
    key_hex = server.config().get("auth_key")
    if not is_hex(key_hex, 64):
        raise Refused(m.E_NOT_PROVISIONED, "token is not provisioned")
    rest = payload[m.MAC_SIZE:]
    expected = auth.mac(bytes.fromhex(key_hex), nonce, cmd, rest)
    if not auth.equal(expected, payload[:m.MAC_SIZE]):
        server.auth_failures += 1
        server.log("auth_failed", "command %d" % cmd)
        raise Refused(m.E_AUTH, "authentication failed: wrong auth key for this token")
    return rest


def challenge(server, payload):
    server.nonce = os.urandom(m.NONCE_SIZE)
    return server.nonce


def keys(server, payload):
    rest = verify(server, m.KEYS, payload)
    if len(rest) != 1 or not 1 <= rest[0] <= _MAX_KEY_DAYS:
        raise Refused(m.E_BAD_REQUEST, "KEYS takes a number of days from 1 to %d" % _MAX_KEY_DAYS)
    token = server.token
    # ENIN of now, without importing gaen here: 600-second intervals since the unix epoch
    enin = token.clock.now() // 600
    entries = []
    for tek, start in token.keys.since(enin - rest[0] * _INTERVALS_PER_DAY):
        entries.append((start, tek))
    server.log("keys_read", "%d days" % rest[0])
    return m.keys_response(entries)


def provision(server, payload):
    if len(payload) < m.MAC_SIZE:
        raise Refused(m.E_BAD_REQUEST, "malformed PROVISION")
    config = server.config()
    if provisioned(config):
        rest = verify(server, m.PROVISION, payload)
    else:
        rest = payload[m.MAC_SIZE:]
    try:
        wanted = json.loads(bytes(rest))
    except ValueError:
        raise Refused(m.E_BAD_REQUEST, "PROVISION needs a JSON object")
    identity = valid_identity(wanted)
    token = server.token
    pending = token.store.pending()
    if config.get("serial") and config.get("serial") != identity["serial"] and pending:
        raise Refused(m.E_REFUSED, "token %s holds %d records not yet synced: sync or wipe it first"
                      % (config.get("serial"), pending))
    new_config = dict(config)
    new_config.update(identity)
    if identity["identity"] == "private":
        new_config.pop("seed", None)
    token.reconfigure(new_config)
    server.log("provisioned", identity["serial"])
    return json.dumps({"serial": identity["serial"], "role": identity["role"],
                       "identity": identity["identity"]}).encode()


def wipe(server, payload):
    rest = verify(server, m.WIPE, payload)
    if rest != b"WIPE":
        raise Refused(m.E_BAD_REQUEST, "malformed WIPE")
    server.token.wipe()
    return b""


def valid_identity(wanted):
    """The identity fields of a PROVISION request, checked; raises Refused naming the field."""
    if not isinstance(wanted, dict):
        raise Refused(m.E_BAD_REQUEST, "PROVISION needs a JSON object")
    serial = wanted.get("serial")
    if not isinstance(serial, str) or len(serial) != 11 or not serial.startswith("TT-") \
            or not is_hex(serial[3:].lower(), 8):
        raise Refused(m.E_BAD_REQUEST, "serial must look like TT-7F3A9C21")
    role = wanted.get("role")
    if role not in _ROLES:
        raise Refused(m.E_BAD_REQUEST, "role must be wearable or venue")
    identity = wanted.get("identity")
    if identity not in _IDENTITIES:
        raise Refused(m.E_BAD_REQUEST, "identity must be escrowed or private")
    seed = wanted.get("seed")
    if identity == "escrowed" and not is_hex(seed, 32):
        raise Refused(m.E_BAD_REQUEST, "an escrowed token needs a 16-byte seed (32 hex digits)")
    auth_key = wanted.get("auth_key")
    if not is_hex(auth_key, 64):
        raise Refused(m.E_BAD_REQUEST, "auth_key must be 32 bytes (64 hex digits)")
    tx = wanted.get("tx_power_dbm")
    if not isinstance(tx, int) or isinstance(tx, bool) or not -127 <= tx <= 20:
        raise Refused(m.E_BAD_REQUEST, "tx_power_dbm must be an integer from -127 to 20")
    out = {"serial": serial.upper(), "role": role, "identity": identity,
           "auth_key": auth_key, "tx_power_dbm": tx}
    if identity == "escrowed":
        out["seed"] = seed
    board = wanted.get("board")
    if board is not None:
        if not isinstance(board, str) or len(board) > 40:
            raise Refused(m.E_BAD_REQUEST, "board must be a short name")
        out["board"] = board
    return out


HANDLERS = {m.CHALLENGE: challenge, m.KEYS: keys, m.PROVISION: provision, m.WIPE: wipe}
