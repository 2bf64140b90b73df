"""Authenticated token commands: `tokentool token-keys` (the token's own TEKs), `tokentool wipe`,
and `tokentool events` (the token's own event log). The auth key comes from the clinic keystore
(or --auth-key, e.g. from the service registry)."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from host_tools import power
from host_tools.cli.output import add_json_flag
from host_tools.cli.provision import add_keystore_argument
from host_tools.cli.tokens import Reporter, add_port_argument, connect, run_on_ports
from host_tools.errors import TokenToolError, UsageError
from host_tools.keystore import Keystore
from host_tools.micropython import BOARDS_DIR

REFERENCE_BOARD = "esp32-devkitc"  # battery figures for a token whose board has no boards/ entry


def _auth_argument(parser: argparse.ArgumentParser) -> None:
    add_keystore_argument(parser)
    parser.add_argument("--auth-key", metavar="HEX", help="the token's 32-byte auth key (instead of the keystore)")


def register(subparsers) -> None:
    keys = subparsers.add_parser("token-keys", help="read a token's own TEKs (authenticated)",
                                 description="Read the token's own Temporary Exposure Keys of the last N days, "
                                             "authenticated with its per-token auth key.")
    add_port_argument(keys)
    keys.add_argument("--days", type=int, default=14, help="days of keys (1-21, default 14)")
    _auth_argument(keys)
    add_json_flag(keys)
    keys.set_defaults(handler=_keys)

    wipe = subparsers.add_parser("wipe", help="erase a token's records, keys and events (authenticated)")
    add_port_argument(wipe)
    wipe.add_argument("--yes", action="store_true", help="confirm: this erases records not yet synced too")
    _auth_argument(wipe)
    add_json_flag(wipe)
    wipe.set_defaults(handler=_wipe)

    events = subparsers.add_parser("events", help="show a token's own error and event log")
    add_port_argument(events)
    add_json_flag(events)
    events.set_defaults(handler=_events)


def _key_for(serial: str | None, port: str, args: argparse.Namespace) -> bytes:
    if args.auth_key:
        try:
            key = bytes.fromhex(args.auth_key)
        except ValueError:
            raise UsageError("--auth-key must be 64 hex digits") from None
        if len(key) != 32:
            raise UsageError("--auth-key must be 64 hex digits (32 bytes)")
        return key
    if not serial:
        raise TokenToolError(f"the token on {port} is not provisioned: it has no auth key yet")
    keystore = Keystore(args.keystore)
    try:
        return keystore.auth_key(serial)
    finally:
        keystore.close()


def keys_port(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    if not 1 <= args.days <= 21:
        raise UsageError("--days must be from 1 to 21")
    transport, client = connect(port, args)
    try:
        serial = client.info().get("serial")
        key = _key_for(serial, port, args)
        reporter.stage("reading keys")
        entries = client.keys(args.days, key)
        return {"serial": serial, "keys": [
            {"rolling_start_interval": start, "day": time.strftime("%Y-%m-%d", time.gmtime(start * 600)),
             "tek": tek.hex()} for start, tek in entries]}
    finally:
        transport.close()


def wipe_port(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    if not args.yes:
        raise UsageError("wipe erases the token's records, keys and event log: add --yes to confirm")
    transport, client = connect(port, args)
    try:
        info = client.info()
        key = _key_for(info.get("serial"), port, args)
        reporter.stage("wiping")
        client.wipe(key)
        return {"serial": info.get("serial"), "erased_pending": info.get("pending")}
    finally:
        transport.close()


def events_port(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    transport, client = connect(port, args)
    try:
        info = client.info()
        events = [{"seq": seq, "time": when, "code": code, "detail": detail}
                  for seq, when, code, detail in client.events()]
    finally:
        transport.close()
    board_name = info.get("board")
    if not board_name or not (BOARDS_DIR / board_name / "board.json").is_file():
        board_name = REFERENCE_BOARD  # a virtual token is named after itself; it models this one
    board = json.loads((BOARDS_DIR / board_name / "board.json").read_text())
    found = power.estimate([(e["time"], e["code"], e["detail"]) for e in events], board)
    return {"serial": info.get("serial"), "events": events, "board": board_name,
            "power": asdict(found) if found else None}


def _power_line(r: dict) -> list[str]:
    p = r["power"]
    if not p:
        return []
    return [f"  radio on {p['scan_s_per_h']} s/h listening, {p['adv_s_per_h']} s/h sending, CPU awake "
            f"{p['awake_share']:.0%} ({p['profile']}, {p['hours']} h logged): {p['mean_ma']} mA on "
            f"{r['board']}, {p['battery_days']} days a charge"]


def _keys(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, r: keys_port(port, args, r), title="token-keys",
        sentence=lambda r: "\n".join([f"{r['serial']}: {len(r['keys'])} keys"]
                                     + [f"  {k['day']} interval {k['rolling_start_interval']} {k['tek']}" for k in r["keys"]]),
        columns=[("serial", "serial")])


def _wipe(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, r: wipe_port(port, args, r), title="wipe",
        sentence=lambda r: f"{r['serial']} on {r['port']}: wiped ({r['erased_pending']} unsynced records erased)",
        columns=[("serial", "serial"), ("erased_pending", "erased unsynced")])


def _events(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, r: events_port(port, args, r), title="events",
        sentence=lambda r: "\n".join([f"{r['serial'] or 'unprovisioned token'} on {r['port']}: {len(r['events'])} events"]
                                     + [f"  #{e['seq']} {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e['time']))} "
                                        f"{e['code']}: {e['detail']}" for e in r["events"]]
                                     + _power_line(r)),
        columns=[("serial", "serial")])
