"""`tokentool sync --port P`: set the token's clock, dump its new records into the clinic outbox,
acknowledge them, and print one line per token."""
from __future__ import annotations

import argparse

from host_tools.cli.output import add_json_flag
from host_tools.cli.tokens import Reporter, add_port_argument, run_on_ports
from host_tools.outbox import Outbox
from host_tools.sync_client import SyncClient
from host_tools.sync_session import SyncReport, sync_token
from host_tools.transport import open_transport


def add_outbox_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outbox", metavar="PATH",
                        help="clinic outbox database (default $TOKENTOOL_OUTBOX or ~/.local/share/tokentool/outbox.sqlite)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sync", help="sync tokens: set the clock, copy new records into the clinic outbox",
        description="Set each token's clock, copy its new encounter records into the clinic outbox "
                    "(durably), then tell the token they are safe. Safe to interrupt and rerun.")
    add_port_argument(parser)
    add_outbox_argument(parser)
    parser.add_argument("--chunk", type=int, default=128, help="records per DUMP request (1-128)")
    add_json_flag(parser)
    parser.set_defaults(handler=_sync)


def sync_port(port: str, args: argparse.Namespace, reporter: Reporter) -> dict:
    reporter.stage("connecting")
    transport = open_transport(port, baud=args.baud)
    try:
        with Outbox(args.outbox) as outbox:
            client = SyncClient(transport, timeout_s=args.timeout)

            def progress(done: int, total: int) -> None:
                reporter.stage("dumping")
                reporter.count(done, total)

            report: SyncReport = sync_token(transport, outbox, progress=progress,
                                            chunk=max(1, min(args.chunk, 128)), client=client)
            result = report.as_dict()
            result["summary"] = report.sentence()
            result["retransmissions"] = client.retransmissions
            result["outbox"] = str(outbox.path)
            return result
    finally:
        transport.close()


def _sync(args: argparse.Namespace) -> int:
    return run_on_ports(
        args, lambda port, reporter: sync_port(port, args, reporter), title="sync",
        sentence=lambda r: r["summary"],
        columns=[("serial", "serial"), ("new_records", "new records"), ("correction_s", "clock correction s"),
                 ("battery_percent", "battery %"), ("pending_on_token", "left on token")])
