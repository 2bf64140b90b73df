# Privileged sync commands (challenge-response), driven by request frames as a host would send them.
import json
import struct

import tokenfw.gaen  # noqa: F401  (compiled first, while the 100 KB heap is empty: HMAC lives there)

from sync_standin import KEY, IDENTITY, Host, done, new_token, to_hex
from tokenfw import records
from tokenfw.sync import auth, framing
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m


def test_provision_then_privileged_commands_need_the_auth_key():
    token = new_token(4)
    host = Host(token)
    host.greet()
    identity = dict(IDENTITY)
    identity["auth_key"] = to_hex(KEY)
    identity["profile"] = "burst"
    answer = json.loads(host.ok(m.PROVISION, bytes(32) + json.dumps(identity).encode()))
    assert answer["serial"] == "TT-0000BEEF" and answer["profile"] == "burst"
    assert token.config["profile"] == "burst"
    assert token.config["seed"] == identity["seed"]
    # a second PROVISION needs the key now
    other = dict(identity)
    other["role"] = "venue"
    kind, answer = host.ask(m.PROVISION, bytes(32) + json.dumps(other).encode())
    assert kind == m.ERROR and answer[0] == m.E_AUTH
    kind, answer = host.privileged(m.PROVISION, json.dumps(other).encode(), key=bytes(32))
    assert kind == m.ERROR and answer[0] == m.E_AUTH
    assert token.config["role"] == "wearable"
    kind, answer = host.privileged(m.PROVISION, json.dumps(other).encode())
    assert kind == m.PROVISION | m.RESPONSE
    assert token.config["role"] == "venue"
    # KEYS with the right key, then a replay of the same MAC fails
    token.keys.put(bytes(range(16)), 2916000)
    token.rtc.now = 2916000 * 600 + 100
    nonce = host.ok(m.CHALLENGE)
    request = auth.mac(KEY, nonce, m.KEYS, b"\x02") + b"\x02"
    kind, answer = host.ask(m.KEYS, request)
    assert kind == m.KEYS | m.RESPONSE
    assert hc.parse_keys_response(answer) == [(2916000, bytes(range(16)))]
    kind, answer = host.ask(m.KEYS, request)
    assert kind == m.ERROR and answer[0] == m.E_AUTH
    # WIPE with a wrong key changes nothing; with the right key empties the log
    kind, answer = host.privileged(m.WIPE, b"WIPE", key=b"\x01" * 32)
    assert kind == m.ERROR and token.store.pending() == 4 and token.wiped == 0
    kind, answer = host.privileged(m.WIPE, b"WIPE")
    assert kind == m.WIPE | m.RESPONSE and token.store.pending() == 0 and token.wiped == 1
    done(token)


def test_provision_rejects_bad_identity_fields_without_changing_anything():
    token = new_token()
    host = Host(token)
    host.greet()
    for field, value in (("serial", "XX-1"), ("role", "king"), ("identity", "public"),
                         ("seed", "abc"), ("auth_key", "00"), ("tx_power_dbm", 99), ("profile", "venue"),
                         ("profile", 3)):
        identity = dict(IDENTITY)
        identity["auth_key"] = to_hex(KEY)
        identity[field] = value
        kind, answer = host.ask(m.PROVISION, bytes(32) + json.dumps(identity).encode())
        assert kind == m.ERROR and answer[0] == m.E_BAD_REQUEST, field
    kind, answer = host.ask(m.PROVISION, bytes(32) + b"{not json")
    assert kind == m.ERROR
    assert token.config == {}
    done(token)


