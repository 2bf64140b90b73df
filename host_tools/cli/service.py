"""Clinic commands that talk to the national matching service.

    tokentool register [--service URL] [--serial S --holder-ref R --venue-name N --venue-place P]
    tokentool upload   [--service URL]
    tokentool status   SERIAL [--service URL]
    tokentool report-positive --port P --code C [--days 14] [--service URL]

`register` pushes the provisioning records the outbox holds (secrets from the keystore) and
marks them registered; with --serial it (re)sends one token with its holder reference or venue
name and place. `upload` sends every record the outbox holds that the service has not
acknowledged yet, token by token in batches: the service stores records idempotently by
(token, sequence number) and the outbox marks a batch uploaded only after the service accepted
it, so an interrupted upload (network gone, laptop closed, days offline) resumes where it
stopped and never stores anything twice. It registers pending tokens first. `status` prints the
token's exposure status in one line. `report-positive` syncs the token (so the outbox holds its
whole log), reads its own TEKs with its auth key (KEYS, authenticated; the key comes from the
keystore, else from the service's registry), and redeems the official's one-time code with the
keys and the full log.

The service URL and the clinic's API key come from --service / the environment
(TOKENTOOL_SERVICE_URL, TOKENTOOL_SERVICE_KEY) or ~/.config/tokentool/service.json.
"""
from __future__ import annotations

import argparse
import base64
import sys

from host_tools.cli.output import add_json_flag, emit
from host_tools.errors import UsageError
from host_tools.keystore import Keystore
from host_tools.outbox import Outbox
from host_tools.service_client import (ServiceClient, ServiceConfig, ServiceError,
                                       ServiceUnreachable, provisioning_record)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", metavar="URL", help="matching-service URL "
                        "(default: TOKENTOOL_SERVICE_URL or the service config file)")
    parser.add_argument("--outbox", metavar="PATH", help="clinic outbox database (default: "
                        "TOKENTOOL_OUTBOX or ~/.local/share/tokentool/outbox.sqlite)")
    parser.add_argument("--keystore", metavar="PATH", help="clinic keystore (default: "
                        "TOKENTOOL_KEYSTORE or ~/.local/share/tokentool/keystore.sqlite)")
    add_json_flag(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("register", help="register provisioned tokens with the matching service",
                              description="Push provisioning records to the matching service.")
    _common(p)
    p.add_argument("--serial", help="register (or update) just this token")
    p.add_argument("--holder-ref", help="the health authority's reference for the wearer")
    p.add_argument("--venue-name", help="venue beacon: the place's name, e.g. 'Central market'")
    p.add_argument("--venue-place", help="venue beacon: where it is, e.g. 'Ward 3, Main road'")
    p.set_defaults(handler=run_register)

    p = subparsers.add_parser("upload", help="upload the clinic outbox to the matching service",
                              description="Send every record not yet accepted by the service.")
    _common(p)
    p.add_argument("--batch", type=int, default=5000, help="records per request (default 5000)")
    p.set_defaults(handler=run_upload)

    p = subparsers.add_parser(
        "report-positive", help="send a positive wearer's keys and log with the official's code",
        description="Sync the token, read its own keys (authenticated) and send them with its "
                    "whole log and the one-time code the health official issued.")
    p.add_argument("--port", required=True, metavar="PORT",
                   help="serial port of the token (/dev/ttyUSB0, a virtual token's pty)")
    p.add_argument("--code", required=True, help="the one-time code, e.g. 7KQ2-M9XD-4TBW")
    p.add_argument("--days", type=int, default=14, help="days of keys to send (1-15, default 14)")
    p.add_argument("--baud", type=int, default=115200, help="serial line rate (default 115200)")
    p.add_argument("--timeout", type=float, default=1.5, metavar="S",
                   help="seconds to wait for the token before retrying (default 1.5)")
    _common(p)
    p.set_defaults(handler=run_report_positive)

    p = subparsers.add_parser("status", help="a token's exposure status, in one line",
                              description="Ask the matching service whether a token was exposed.")
    p.add_argument("serial", help="token serial, e.g. TT-7F3A9C21")
    _common(p)
    p.set_defaults(handler=run_status)


def _client(args) -> ServiceClient:
    return ServiceClient.from_config(ServiceConfig.load(url=args.service))


def _record_for(keystore: Keystore, provision: dict, args) -> dict:
    serial = provision["serial"]
    secrets = keystore.get(serial)
    if secrets is None:
        raise UsageError(f"token {serial} is in the outbox but not in the keystore "
                         f"{keystore.path}: register it from the clinic that provisioned it")
    only_this = args.serial == serial
    return provisioning_record(
        serial, secrets.role, secrets.identity,
        seed=secrets.seed if secrets.identity == "escrowed" else None, auth_key=secrets.auth_key,
        tx_power_dbm=secrets.tx_power_dbm, board=secrets.board or "",
        venue_name=args.venue_name if only_this else None,
        venue_place=args.venue_place if only_this else None,
        holder_ref=args.holder_ref if only_this else None)


def push_registrations(client: ServiceClient, outbox: Outbox, keystore: Keystore, args) -> dict:
    """Register what the outbox has not registered yet (or just --serial). Venue beacons
    without a name are held back with a note (the service needs the name)."""
    pending = outbox.unregistered()
    if getattr(args, "serial", None):
        secrets = keystore.get(args.serial)
        if secrets is None:
            raise UsageError(f"token {args.serial} is not in the clinic keystore {keystore.path}")
        pending = [{"serial": args.serial}]
    records, held_back = [], []
    for provision in pending:
        record = _record_for(keystore, provision, args)
        if record["role"] == "venue" and not record.get("venue_name"):
            held_back.append(record["serial"])
            continue
        records.append(record)
    result = {"created": [], "updated": [], "unchanged": [], "held_back": held_back}
    if records:
        reply = client.register(records)
        for key in ("created", "updated", "unchanged"):
            result[key] = reply.get(key, [])
        for record in records:
            outbox.mark_registered(record["serial"])
    return result


def run_register(args) -> int:
    if (args.holder_ref or args.venue_name or args.venue_place) and not args.serial:
        raise UsageError("--holder-ref, --venue-name and --venue-place need --serial")
    with Outbox(args.outbox) as outbox, _client(args) as client:
        keystore = Keystore(args.keystore)
        try:
            result = push_registrations(client, outbox, keystore, args)
        finally:
            keystore.close()
    sent = len(result["created"]) + len(result["updated"]) + len(result["unchanged"])
    text = f"registered {len(result['created'])} new tokens ({sent} sent)"
    if result["held_back"]:
        text += (f"; held back venue beacons without a name: {', '.join(result['held_back'])} "
                 "(use --serial S --venue-name N)")
    emit(args, result, text)
    return 0


def upload_outbox(client: ServiceClient, outbox: Outbox, batch_records: int = 5000,
                  on_batch=None) -> dict:
    """Upload until the outbox has nothing left; returns counts. A batch is marked uploaded
    only after the service accepted it. Raises ServiceError (with progress in the message)
    when the service cannot be reached or refuses a batch."""
    totals = {"batches": 0, "stored": 0, "duplicates": 0, "conflicts": 0, "tokens": set()}
    while True:
        batches = list(outbox.upload_batches(batch_records))
        if not batches:
            break
        for batch in batches:
            try:
                reply = client.upload(batch.payload)
            except ServiceError as error:
                left = sum(s["not_uploaded"] or 0 for s in outbox.summary())
                done = f"{totals['stored'] + totals['duplicates']} records uploaded, " if \
                    totals["batches"] else ""
                raise type(error)(f"{error} ({done}{left} records still waiting in the outbox; "
                                  "run `tokentool upload` again later)", error.status,
                                  error.code, error.body) from error
            outbox.mark_uploaded(batch)
            if on_batch is not None:
                on_batch(len(batch.seqs))
            totals["batches"] += 1
            totals["stored"] += reply.get("stored", 0)
            totals["duplicates"] += reply.get("duplicates", 0)
            totals["conflicts"] += len(reply.get("conflicts", []))
            totals["tokens"].add(batch.serial)
    totals["tokens"] = sorted(totals["tokens"])
    return totals


def run_upload(args) -> int:
    if not 1 <= args.batch <= 50_000:
        raise UsageError("--batch must be between 1 and 50000 records")
    with Outbox(args.outbox) as outbox, _client(args) as client:
        keystore = Keystore(args.keystore)
        try:
            args.serial = None
            registered = push_registrations(client, outbox, keystore, args)
        finally:
            keystore.close()
        waiting = sum(row["not_uploaded"] or 0 for row in outbox.summary())
        if waiting > args.batch and not args.json and sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as progress:
                task = progress.add_task("uploading", total=waiting)
                totals = upload_outbox(client, outbox, args.batch,
                                       lambda n: progress.advance(task, n))
        else:
            totals = upload_outbox(client, outbox, args.batch)
    totals["registered"] = registered["created"]
    if not totals["batches"]:
        text = "nothing to upload: the outbox is empty"
    else:
        text = (f"uploaded {totals['stored']} new records from {len(totals['tokens'])} tokens"
                + (f" ({totals['duplicates']} the service already had)" if totals["duplicates"] else ""))
        if totals["conflicts"]:
            text += (f"; {totals['conflicts']} records differ from what the service holds at the "
                     "same sequence number (kept the service's copy; ask the technician)")
    emit(args, totals, text)
    return 0


def case_log_from_outbox(outbox: Outbox, serial: str) -> dict:
    """The token's full log as the outbox holds it (uploaded or not), in the upload format:
    what `report-positive` sends with the diagnosis keys (the service stores it idempotently)."""
    rows = [(seq, bytes(data)) for _serial, seq, data, _uploaded, _sync in outbox.records_of(serial)]
    if not rows:
        raise UsageError(f"the outbox holds no records of {serial}: sync the token first")
    ranges = outbox._correction_ranges(serial)
    return {"token": serial,
            "records": [{"seq": seq, "data": base64.b64encode(data).decode()} for seq, data in rows],
            "syncs": ranges}


def redeem_positive(client: ServiceClient, outbox: Outbox, serial: str, code: str,
                    teks: list[tuple[int, bytes]]) -> dict:
    """Redeem a one-time code with the token's own TEKs (as `SyncClient.keys()` returns them:
    (rolling_start_interval, tek) pairs) and its full log from the outbox. The wiring for
    `tokentool report-positive --port P --code C`: sync, read KEYS, then call this."""
    keys = [{"key": tek, "rolling_start_interval": start, "rolling_period": 144}
            for start, tek in teks]
    return client.report_positive(code, keys, case_log_from_outbox(outbox, serial))


def run_report_positive(args) -> int:
    from host_tools.sync_client import SyncClient
    from host_tools.sync_session import sync_token
    from host_tools.transport import open_transport

    if not 1 <= args.days <= 15:
        raise UsageError("--days must be from 1 to 15 (the service accepts keys up to 15 days old)")
    config = ServiceConfig.load(url=args.service)  # before touching the token: fail fast
    transport = open_transport(args.port, baud=args.baud)
    try:
        with Outbox(args.outbox) as outbox, ServiceClient.from_config(config) as service:
            client = SyncClient(transport, timeout_s=args.timeout)
            synced = sync_token(transport, outbox, client=client)
            serial = synced.serial
            keystore = Keystore(args.keystore)
            try:
                known = keystore.get(serial)
            finally:
                keystore.close()
            auth_key = known.auth_key if known is not None else service.auth_key(serial)
            teks = client.keys(args.days, auth_key)
            if not teks:
                raise UsageError(f"token {serial} holds no keys of the last {args.days} days")
            result = redeem_positive(service, outbox, serial, args.code, teks)
    finally:
        transport.close()
    result.update(serial=serial, keys_sent=len(teks), new_records_synced=synced.new_records)
    emit(args, result, f"{serial}: positive report accepted as case {result['case_id']} "
                       f"({len(teks)} days of keys, "
                       f"{result['log']['stored'] + result['log']['duplicates']} records); "
                       "the health office can now see who and where")
    return 0


def run_status(args) -> int:
    with _client(args) as client:
        reply = client.status(args.serial)
    emit(args, reply, reply.get("message") or f"{args.serial}: {reply.get('status')}")
    return 0


__all__ = ["register", "upload_outbox", "push_registrations", "case_log_from_outbox",
           "redeem_positive",
           "ServiceUnreachable"]
