"""`tokentool keys`: GAEN identifiers computed by the firmware's own module.

    tokentool keys rpi --tek HEX --interval N [--metadata HEX] [--json]
    tokentool keys tek --seed HEX --day D [--json]

`rpi` prints RPIK, RPI, AEMK and AEM for one interval (to check a token's advertisement or a
phone's, or to reproduce the official test vectors); `tek` prints the escrowed TEK a token with
that seed uses on day D (the same derivation the matching service runs). Both import
`tokenfw.gaen`, the code that runs on the token, so what they print is what a token computes.
"""
from __future__ import annotations

import argparse
import binascii

from tokenfw import gaen

from host_tools.cli.output import add_json_flag, emit
from host_tools.errors import UsageError

_MAX_U32 = 0xFFFFFFFF


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="compute GAEN identifiers (TEK, RPI, AEM)",
                                   description="Compute GAEN v1.2 identifiers with the firmware's code.")
    commands = parser.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND")
    commands.required = True

    rpi = commands.add_parser("rpi", help="RPIK, RPI, AEMK and AEM of a TEK for one interval")
    rpi.add_argument("--tek", required=True, help="temporary exposure key, 32 hex digits")
    rpi.add_argument("--interval", required=True,
                     help="ENIntervalNumber (unix seconds / 600), 0..4294967295")
    rpi.add_argument("--metadata", default="40000000",
                     help="4-byte metadata to encrypt into the AEM, 8 hex digits (default 40000000)")
    add_json_flag(rpi)
    rpi.set_defaults(handler=run_rpi)

    tek = commands.add_parser("tek", help="escrowed TEK of a token seed for one day")
    tek.add_argument("--seed", required=True, help="the token's escrow seed, 32 hex digits")
    tek.add_argument("--day", required=True, help="day number (ENIntervalNumber // 144), 0..4294967295")
    add_json_flag(tek)
    tek.set_defaults(handler=run_tek)


def parse_hex(text: str, size: int, what: str) -> bytes:
    """`size` bytes from hex `text` (spaces, colons and a 0x prefix allowed), or a UsageError."""
    cleaned = text.strip().lower().replace(" ", "").replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if len(cleaned) != 2 * size:
        raise UsageError(f"{what} must be {2 * size} hex digits ({size} bytes), got {len(cleaned)}")
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise UsageError(f"{what} is not hexadecimal: {text!r}") from None


def parse_u32(text: str, what: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None
    if not 0 <= value <= _MAX_U32:
        raise UsageError(f"{what} must be between 0 and {_MAX_U32}, got {value}")
    return value


def identifiers(tek: bytes, interval: int, metadata: bytes) -> dict[str, str]:
    """RPIK, RPI, AEMK, AEM for `interval` as lowercase hex (the JSON of `keys rpi`)."""
    rpik = gaen.rpi_key(tek)
    aemk = gaen.aem_key(tek)
    rpi = gaen.rpi(rpik, interval)
    aem = gaen.aem(aemk, rpi, metadata)
    return {"rpik": rpik.hex(), "rpi": rpi.hex(), "aemk": aemk.hex(), "aem": aem.hex()}


def run_rpi(args: argparse.Namespace) -> int:
    tek = parse_hex(args.tek, 16, "--tek")
    interval = parse_u32(args.interval, "--interval")
    metadata = parse_hex(args.metadata, 4, "--metadata")
    result = identifiers(tek, interval, metadata)
    data = {"tek": tek.hex(), "interval": interval, "metadata": metadata.hex(), **result}
    text = "\n".join(f"{name.upper():<5} {result[name]}" for name in ("rpik", "rpi", "aemk", "aem"))
    emit(args, data, text)
    return 0


def run_tek(args: argparse.Namespace) -> int:
    seed = parse_hex(args.seed, 16, "--seed")
    day = parse_u32(args.day, "--day")
    tek = gaen.escrowed_tek(seed, day)
    start = day * gaen.TEK_ROLLING_PERIOD
    data = {"day": day, "tek": tek.hex(), "rolling_start_interval": start,
            "rolling_period": gaen.TEK_ROLLING_PERIOD}
    emit(args, data, f"TEK   {tek.hex()}  (day {day}, intervals {start}..{start + 143})")
    return 0
