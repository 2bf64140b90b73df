"""One root exception for the host tools; subclasses carry what the user needs to act.

Commands raise these with a sentence a clinic worker or technician can act on; the CLI's single
top-level handler prints `tokentool: <message>` and exits non-zero. Never a traceback.
"""


class TokenToolError(Exception):
    """A failure the user must hear about, phrased as one clear sentence."""

    exit_code = 1


class UsageError(TokenToolError):
    """Bad command-line input (arguments, files named on the command line)."""

    exit_code = 2


class TransportError(TokenToolError):
    """The link to a token (serial, BLE, virtual) failed or timed out."""

    exit_code = 3
