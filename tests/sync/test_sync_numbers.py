"""The token's server compiles the protocol numbers in as private consts (so that it never loads
messages.py into its RAM); they must agree with messages.py, the specification the host uses."""
from __future__ import annotations

from tokenfw.sync import messages, privileged, server


def test_server_numbers_agree_with_the_specification():
    pairs = {
        "_VERSION": "PROTOCOL_VERSION", "_HELLO": "HELLO", "_INFO": "INFO", "_TIME": "TIME", "_DUMP": "DUMP",
        "_ACK": "ACK", "_CHALLENGE": "CHALLENGE", "_KEYS": "KEYS", "_PROVISION": "PROVISION", "_WIPE": "WIPE",
        "_EVENTS": "EVENTS", "_RESPONSE": "RESPONSE", "_ERROR": "ERROR", "E_BAD_REQUEST": "E_BAD_REQUEST",
        "E_UNKNOWN_COMMAND": "E_UNKNOWN_COMMAND", "E_HELLO_FIRST": "E_HELLO_FIRST", "E_AUTH": "E_AUTH",
        "E_NOT_PROVISIONED": "E_NOT_PROVISIONED", "E_REFUSED": "E_REFUSED", "E_INTERNAL": "E_INTERNAL",
        "MAX_DUMP_RECORDS": "MAX_DUMP_RECORDS", "_RECORD": "RECORD_SIZE", "_NO_SEQ": "NO_SEQ",
        "_MAX_REQUEST_WIRE": "MAX_REQUEST_WIRE", "_MAGIC": "MAGIC",
    }
    for mine, spec in pairs.items():
        assert getattr(server, mine) == getattr(messages, spec), (mine, spec)
    for mine in ("_CHALLENGE", "_KEYS", "_PROVISION", "_WIPE"):
        assert getattr(privileged, mine) == getattr(messages, mine[1:])
