"""`tokentool scan`: list the tokens nearby that have a Bluetooth sync window open.

A token offers sync over Bluetooth only for a while after its button is pressed (or while it is
on USB power); it then advertises the token sync service under its serial. Use the serial or
the address with `--port ble:SERIAL` / `--port ble:ADDRESS`.
"""
from __future__ import annotations

import argparse
import asyncio

from host_tools.cli.output import add_json_flag, emit
from host_tools.errors import UsageError
from host_tools.transport.ble import find_sync_windows


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scan", help="list tokens with a Bluetooth sync window open",
        description="Listen for tokens offering sync over Bluetooth and list their serials, addresses and signal.",
    )
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="listen this many seconds (default 5)")
    parser.add_argument("--air", metavar="SOCKET",
                        help="listen in a virtual air instead of the Bluetooth adapter (or set TOKENTOOL_AIR)")
    add_json_flag(parser)
    parser.set_defaults(handler=_scan)


def _scan(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 600:
        raise UsageError(f"--timeout must be between 0 and 600 seconds, not {args.timeout:g}")
    found = asyncio.run(find_sync_windows(args.timeout, args.air))
    tokens: list[dict] = [{"serial": name, "address": address, "rssi": rssi, "port": f"ble:{name or address}"}
                          for address, name, rssi in found]
    if not tokens:
        text = f"no token has a sync window open nearby (listened {args.timeout:g} s); press the token's button"
    else:
        width = max(len(t["serial"] or "?") for t in tokens)
        lines = [f"{len(tokens)} token{'s' if len(tokens) != 1 else ''} with a sync window open:"]
        lines += [f"  {(t['serial'] or '?'):<{width}}  {t['address']}  {t['rssi']} dBm" for t in tokens]
        text = "\n".join(lines)
    emit(args, tokens, text)
    return 0
