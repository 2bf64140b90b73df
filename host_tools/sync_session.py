"""A clinic sync, start to end: handshake, clock, dump into the outbox, ACK.

    report = sync_token(transport, outbox)

Order matters for "nothing is lost": every chunk is committed to the outbox before the next is
asked for, and the token is told (ACK) only after the last one is on disk. If anything is
interrupted (cable, crash, power), the next sync resumes after what the outbox already holds;
re-sent records are deduplicated by (serial, seq).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tokenfw import records as record_codec

from host_tools.errors import TokenToolError
from host_tools.outbox import Outbox
from host_tools.sync_client import SyncClient, SyncError
from host_tools.transport.base import Transport

Progress = Callable[[int, int], None]  # (records done, records to do)


@dataclass
class SyncReport:
    port: str
    serial: str
    firmware: str
    dumped: int
    new_records: int
    duplicates: int
    first_seq: int | None
    last_seq: int | None
    acked_seq: int | None
    pending_on_token: int | None
    correction_s: int
    clock_was_set: bool
    clock_set: bool
    battery_percent: int | None
    seconds: float
    sync_id: int

    def as_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        clock = "clock was never set, now set" if not self.clock_was_set else f"clock corrected by {format_drift(self.correction_s)}"
        battery = f"battery {self.battery_percent}%" if self.battery_percent is not None else "battery unknown"
        dup = f" ({self.duplicates} already in the outbox)" if self.duplicates else ""
        return (f"{self.serial}: synced {self.new_records} new records{dup}, {clock}, {battery}, "
                f"{self.pending_on_token if self.pending_on_token is not None else '?'} left on token")


def format_drift(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    s = abs(int(seconds))
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min {s % 60} s"
    if s < 86400 * 2:
        return f"{sign}{s // 3600} h {s % 3600 // 60} min"
    return f"{sign}{s // 86400} days"


def _next_whole_second(now: Callable[[], float]) -> int:
    """Wait for the host clock's next whole second and return it. TIME carries whole seconds, so
    a token set at the top of a second is off by the trip over the cable (milliseconds), not by
    up to a second: burst tokens wake on their clocks' whole minutes and must agree."""
    t = now()
    whole = int(t) if t == int(t) else int(t) + 1
    if whole > t:
        time.sleep(whole - t)
    return whole


def sync_token(transport: Transport, outbox: Outbox, *, now: Callable[[], float] = time.time,
               progress: Progress | None = None, chunk: int = 128, window: int = 3,
               client: SyncClient | None = None) -> SyncReport:
    started = time.monotonic()
    client = client or SyncClient(transport)
    hello = client.connect()
    info = client.info()
    serial = info.get("serial")
    if not serial:
        raise TokenToolError(
            f"the token on {transport.name} is not provisioned (no serial); provision it first: "
            f"tokentool provision --port {transport.name} --role wearable")
    host_now = _next_whole_second(now)
    clock = client.set_time(host_now)
    until = clock["boundary_seq"]  # records the token holds when its clock was set
    acked = info.get("acked_seq") or 0
    session = outbox.begin_sync(
        serial, port=transport.name, synced_at=host_now, token_time=clock["token_time"],
        correction_s=clock["correction_s"], clock_was_set=clock["clock_was_set"], clock_set=clock["did_set"],
        boundary_seq=until, firmware=hello.firmware, battery_percent=info.get("battery_percent"),
        pending_before=info.get("pending"))
    start = outbox.resume_point(serial, acked, until)
    total = max(0, until - start)
    dumped = new = duplicates = 0
    first = last = None
    acked_now = None
    try:
        if progress:
            progress(0, total)
        for records in client.dump(start, until, chunk=chunk, window=window):
            try:
                result = outbox.store_chunk(session, records)
            except record_codec.CorruptRecord as error:
                raise SyncError(f"token {serial} on {transport.name} sent a damaged record ({error}); "
                                "run the sync again", transport.name) from None
            dumped += len(records)
            new += result.new
            duplicates += result.duplicates + result.conflicts
            first = records[0][0] if first is None else min(first, records[0][0])
            last = records[-1][0] if last is None else max(last, records[-1][0])
            if progress:
                progress(min(total, dumped), total)
        # Everything the token held below `until` is now on disk here: tell the token. (Sent
        # even when there was nothing new: the token notes the sync for its status light.)
        acked_now = client.ack(max(until - 1, acked))
        after = client.info()
    except BaseException as error:
        outbox.finish_sync(session, acked_seq=None, status="failed", error=str(error) or type(error).__name__)
        raise
    outbox.finish_sync(session, acked_seq=acked_now)
    return SyncReport(
        port=transport.name, serial=serial, firmware=hello.firmware, dumped=dumped, new_records=new,
        duplicates=duplicates, first_seq=first, last_seq=last, acked_seq=acked_now,
        pending_on_token=after.get("pending"), correction_s=clock["correction_s"],
        clock_was_set=clock["clock_was_set"], clock_set=clock["did_set"],
        battery_percent=after.get("battery_percent"), seconds=round(time.monotonic() - started, 3),
        sync_id=session.id)
