"""`tokentool outbox list|export`: what the clinic outbox holds and has not uploaded yet."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

from tokenfw import records as record_codec

from host_tools.cli.output import add_json_flag, emit
from host_tools.cli.sync import add_outbox_argument
from host_tools.errors import UsageError
from host_tools.outbox import Outbox, default_path

_CSV_FIELDS = ["serial", "seq", "rpi", "aem", "first_seen", "first_seen_corrected", "duration_s", "scans",
               "rssi_max", "rssi_mean", "flags", "correction_s", "uploaded", "sync_id"]


def register(subparsers) -> None:
    parser = subparsers.add_parser("outbox", help="list or export the clinic outbox",
                                   description="The clinic outbox holds every record dumped from tokens until it is uploaded.")
    commands = parser.add_subparsers(dest="outbox_command", metavar="ACTION")
    commands.required = True

    listing = commands.add_parser("list", help="per token: records held, not uploaded, last sync")
    add_outbox_argument(listing)
    listing.add_argument("--syncs", action="store_true", help="list every sync session instead")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)

    export = commands.add_parser("export", help="export records (decoded) as CSV or JSON")
    add_outbox_argument(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--serial", help="only this token")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    add_json_flag(export)
    export.set_defaults(handler=_export)


def _when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) + " UTC" if ts else "never"


def _list(args: argparse.Namespace) -> int:
    with Outbox(args.outbox) as outbox:
        if args.syncs:
            rows = outbox.sync_rows()
            text = "\n".join(
                f"#{r['id']} {r['serial']} {_when(r['synced_at'])} {r['status']}: {r['new_records']} new of "
                f"{r['stored']} dumped, correction {r['correction_s']} s"
                + (f", error: {r['error']}" if r['error'] else "") for r in rows) or "no syncs yet"
            emit(args, {"syncs": rows, "outbox": str(outbox.path)}, text)
            return 0
        rows = outbox.summary()
        waiting = outbox.unregistered()
    lines = [f"{r['serial']}: {r['records']} records (seq {r['first_seq']}..{r['last_seq']}), "
             f"{r['not_uploaded']} not uploaded, last sync {_when(r['last_sync_at'])}" for r in rows]
    if waiting:
        lines.append(f"{len(waiting)} provisioned tokens awaiting registration: "
                     + ", ".join(w["serial"] for w in waiting))
    emit(args, {"tokens": rows, "awaiting_registration": waiting, "outbox": str(args.outbox or default_path())},
         "\n".join(lines) or "the outbox is empty")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = io.StringIO()
    count = 0
    with Outbox(args.outbox) as outbox:
        corrections: dict[str, list[dict]] = {}
        rows = []
        for serial, seq, data, uploaded_at, sync_id in outbox.records_of(args.serial):
            if serial not in corrections:
                corrections[serial] = outbox._correction_ranges(serial)
            enc = record_codec.decode(seq, data)
            correction = next((c["correction_s"] for c in corrections[serial]
                               if c["first_seq"] <= seq <= c["last_seq"]), None)
            rows.append({
                "serial": serial, "seq": seq, "rpi": enc.rpi.hex(), "aem": enc.aem.hex(),
                "first_seen": enc.first_seen,
                "first_seen_corrected": enc.first_seen + correction if correction is not None else None,
                "duration_s": enc.duration_s, "scans": enc.scans, "rssi_max": enc.rssi_max,
                "rssi_mean": enc.rssi_mean, "flags": enc.flags, "correction_s": correction,
                "uploaded": uploaded_at is not None, "sync_id": sync_id})
            count += 1
    if args.format == "csv":
        writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    else:
        json.dump({"records": rows}, out, indent=1)
        out.write("\n")
    if args.output:
        try:
            Path(args.output).write_text(out.getvalue())
        except OSError as error:
            raise UsageError(f"cannot write {args.output}: {error.strerror or error}") from None
        emit(args, {"records": count, "output": args.output, "format": args.format},
             f"exported {count} records to {args.output} ({args.format})")
    else:
        sys.stdout.write(out.getvalue())
    return 0
