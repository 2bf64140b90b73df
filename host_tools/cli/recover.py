"""`tokentool recover --image FLASH.bin`: pull encounter records out of a broken token's flash
dump (read with `esptool read_flash`) into the clinic outbox, or into a CSV/JSON file."""
from __future__ import annotations

import argparse
import csv
import json
import time

from tokenfw import records as record_codec

from host_tools.cli.output import add_json_flag, emit
from host_tools.cli.sync import add_outbox_argument
from host_tools.errors import UsageError
from host_tools.outbox import Outbox
from host_tools.recover import recover


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recover", help="recover records from a raw flash dump of a broken token",
        description="Read the littlefs partition of a flash dump (esptool read_flash) with littlefs-python "
                    "and recover every intact record into the clinic outbox (or a file).")
    parser.add_argument("--image", required=True, help="raw flash dump (the data partition or the whole chip)")
    parser.add_argument("--offset", type=lambda text: int(text, 0), help="partition offset in the dump (default: found)")
    parser.add_argument("--serial", help="token serial, if the dump's config is lost")
    parser.add_argument("--output", "-o", help="write records to FILE.csv or FILE.json instead of the outbox")
    add_outbox_argument(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_recover)


def _recover(args: argparse.Namespace) -> int:
    found = recover(args.image, offset=args.offset)
    serial = args.serial or found.serial
    summary = {"image": found.image, "offset": found.offset, "serial": serial, "records": len(found.records),
               "unacked": found.unacked, "corrupt": found.corrupt, "segments": found.segments,
               "acked_seq": found.acked_seq}
    if args.output:
        _write_file(args.output, serial, found.records)
        summary["output"] = args.output
        emit(args, summary, f"recovered {len(found.records)} records of {serial or 'an unknown token'} "
                            f"({found.corrupt} damaged skipped) into {args.output}")
        return 0
    if not serial:
        raise UsageError("the dump holds no serial (config lost): give it with --serial TT-XXXXXXXX, or use --output")
    with Outbox(args.outbox) as outbox:
        clock = found.clock
        session = outbox.begin_sync(
            serial, port=f"recover:{found.image}", synced_at=int(time.time()),
            token_time=int(time.time()), correction_s=0,  # unknown: the token's clock is gone with it
            clock_was_set=clock.get("last_set_at") is not None, clock_set=False,
            boundary_seq=(found.records[-1][0] + 1) if found.records else 1)
        new = 0
        for start in range(0, len(found.records), 1000):
            new += outbox.store_chunk(session, found.records[start:start + 1000]).new
        outbox.finish_sync(session, acked_seq=None, status="recovered")
    summary.update(new_records=new, outbox=str(outbox.path))
    emit(args, summary, f"recovered {len(found.records)} records of {serial} ({new} new in the outbox, "
                        f"{found.unacked} never synced, {found.corrupt} damaged skipped)")
    return 0


def _write_file(path: str, serial: str | None, rows: list[tuple[int, bytes]]) -> None:
    decoded = []
    for seq, data in rows:
        enc = record_codec.decode(seq, data)
        decoded.append({"serial": serial, "seq": seq, "rpi": enc.rpi.hex(), "aem": enc.aem.hex(),
                        "first_seen": enc.first_seen, "duration_s": enc.duration_s, "scans": enc.scans,
                        "rssi_max": enc.rssi_max, "rssi_mean": enc.rssi_mean, "flags": enc.flags})
    try:
        with open(path, "w", newline="") as f:
            if path.endswith(".json"):
                json.dump({"token": serial, "records": decoded}, f, indent=1)
            else:
                writer = csv.DictWriter(f, fieldnames=list(decoded[0]) if decoded else ["serial", "seq"])
                writer.writeheader()
                writer.writerows(decoded)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
