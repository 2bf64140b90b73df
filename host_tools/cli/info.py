"""`tokentool info --port P`: what a token says about itself (identity, clock, log, battery)."""
from __future__ import annotations

import argparse
import time

from host_tools.cli.output import add_json_flag
from host_tools.cli.tokens import Reporter, add_port_argument, connect, run_on_ports
from host_tools.sync_session import format_drift


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show a token's identity, clock, log and battery",
                                   description="Ask a token over the sync protocol what it knows about itself.")
    add_port_argument(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_info)


def token_info(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    reporter.stage("connecting")
    transport, client = connect(port, args)
    try:
        reporter.stage("reading")
        info = client.info()
        info["protocol"] = client.hello.version if client.hello else info.get("protocol")
        info["port"] = port
        info["host_time"] = int(time.time())
        info["clock_offset_s"] = info["host_time"] - info["clock"] if info.get("clock") is not None else None
        return info
    finally:
        transport.close()


def describe(info: dict) -> str:
    serial = info.get("serial") or "unprovisioned token"
    clock = "clock never set" if not info.get("clock_set") else f"clock off by {format_drift(-(info.get('clock_offset_s') or 0))}"
    last_sync = info.get("last_sync_at")
    last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last_sync)) + " UTC" if last_sync else "never"
    storage = info.get("storage") or {}
    used = storage.get("bytes_used")
    total = storage.get("bytes_total")
    space = f"{used * 100 // total}% of {total // 1024} KiB flash used" if used is not None and total else "flash use unknown"
    oldest = info.get("oldest_time")
    newest = info.get("newest_time")
    span = ""
    if oldest and newest:
        span = (f", {time.strftime('%Y-%m-%d', time.gmtime(oldest))} .. "
                f"{time.strftime('%Y-%m-%d', time.gmtime(newest))} (token clock)")
    return "\n".join([
        f"{serial} on {info['port']}: {info.get('role')} token, {info.get('identity')} identity, "
        f"firmware {info.get('firmware')} (sync protocol v{info.get('protocol')}), board {info.get('board')}",
        f"  battery {info.get('battery_percent', '?')}% ({info.get('battery_mv', '?')} mV), {clock}, last sync {last}",
        f"  {info.get('pending')} records not yet synced (seq {info.get('oldest_seq')}..{info.get('next_seq', 1) - 1} stored){span}, {space}",
    ])


def _info(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, reporter: token_info(port, args, reporter), title="info", sentence=describe,
        columns=[("serial", "serial"), ("role", "role"), ("firmware", "firmware"), ("battery_percent", "battery %"),
                 ("pending", "pending"), ("clock_set", "clock set")])
