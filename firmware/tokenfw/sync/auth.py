# Challenge-response for privileged sync commands (KEYS, WIPE, PROVISION of a provisioned token).
#
# The token hands out a fresh 16-byte nonce (CHALLENGE); the host proves it holds the token's
# per-token auth key by sending, with the privileged request,
#     mac = HMAC-SHA256(auth_key, "TT-AUTH-v1" || nonce || cmd u8 || request payload after mac)
# so one approval covers exactly one command with exactly these arguments. The token forgets
# the nonce after any privileged attempt, right or wrong: a guess costs a round trip and a new
# nonce, and a recorded answer never verifies again.
_DOMAIN = b"TT-AUTH-v1"

def mac(auth_key, nonce, cmd, payload):
    # gaen is imported here, not at the top: the app has it loaded anyway, and a host or a
    # test that never authenticates does not pay its RAM.
    from tokenfw.gaen import hmac_sha256

    return hmac_sha256(auth_key, _DOMAIN + bytes(nonce) + bytes((cmd,)) + bytes(payload))


def equal(a, b):
    """Compare two MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0
