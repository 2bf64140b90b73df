# The token <-> host sync protocol (docs/sync-protocol.md).
#
# framing.py and messages.py are shared: the token imports them from its flash, tokentool
# imports the very same modules on CPython. server.py is the token's side, auth.py the
# challenge-response both sides compute.
