"""The host side (client, sync session, outbox) against the real token server in-process: the
firmware's SyncServer over a stand-in token made of the real Store, Clock, KeyStore and EventLog,
joined to the client by a loopback transport that can lose and damage bytes. Fast, and
independent of the virtual token's heap."""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware" / "mp"))

import sync_standin  # noqa: E402
from tokenfw import records  # noqa: E402
from tokenfw.sync import framing  # noqa: E402

from host_tools.outbox import Outbox  # noqa: E402
from host_tools.sync_client import NoAnswer, SyncClient, VersionMismatch  # noqa: E402
from host_tools.sync_session import sync_token  # noqa: E402
from host_tools.transport.base import Transport  # noqa: E402


class Loopback(Transport):
    """Bytes written go to the token's SyncServer; its answers come back on read()."""

    name = "loopback"

    def __init__(self, token, loss: float = 0.0, damage: float = 0.0, seed: int = 3) -> None:
        self.server = sync_standin.SyncServer(token)
        self.inbound = bytearray()
        self.rng = random.Random(seed)
        self.loss, self.damage = loss, damage
        self.sent_to_token = bytearray()
        self.silent = False

    def _line(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            roll = self.rng.random()
            if roll < self.loss:
                continue
            if roll < self.loss + self.damage:
                byte ^= 0x10
            out.append(byte)
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.sent_to_token += data
        if not self.silent:
            self.server.feed(self._line(data), lambda piece: self.inbound.extend(self._line(piece)))

    def read(self, timeout_s: float) -> bytes:
        if not self.inbound:
            time.sleep(min(timeout_s, 0.001))
            return b""
        data = bytes(self.inbound)
        self.inbound.clear()
        return data

    def close(self) -> None:
        pass


@pytest.fixture
def token(tmp_path):
    made = sync_standin.Token(str(tmp_path / "token"), rtc_seconds=1_750_000_000)
    made.config = {"serial": "TT-0000ABCD", "auth_key": "00" * 32, "role": "wearable", "identity": "private"}
    return made


@pytest.fixture(autouse=True)
def token_dir(tmp_path):
    (tmp_path / "token").mkdir()


def _seqs(path: Path) -> list[int]:
    with Outbox(path) as outbox:
        rows = list(outbox.records_of("TT-0000ABCD"))
    for _, seq, data, _, _ in rows:
        records.decode(seq, data)
    return [seq for _, seq, _, _, _ in rows]


def test_sync_into_the_outbox_and_ack(token, tmp_path):
    sync_standin.fill(token, 500, first_seen=1_749_990_000)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        report = sync_token(Loopback(token), outbox, now=lambda: 1_750_000_100)
    assert (report.new_records, report.acked_seq, report.correction_s) == (500, 500, 100)
    assert _seqs(tmp_path / "o.sqlite") == list(range(1, 501))
    assert token.store.pending() == 0 and token.last_sync_at is not None


def test_noisy_line_both_ways_still_delivers_every_record_once(token, tmp_path):
    sync_standin.fill(token, 700)
    transport = Loopback(token, loss=5e-5, damage=5e-5)  # ~1 DUMP answer in 5 damaged
    client = SyncClient(transport, timeout_s=0.05)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        report = sync_token(transport, outbox, client=client, now=lambda: 1_750_000_000)
    assert report.new_records == 700 and client.retransmissions > 0
    assert _seqs(tmp_path / "o.sqlite") == list(range(1, 701))


def test_no_frame_from_the_host_ever_carries_ctrl_c(token, tmp_path):
    sync_standin.fill(token, 300)
    transport = Loopback(token)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        sync_token(transport, outbox, now=lambda: 1_750_000_000)
    for byte in framing.FORBIDDEN_ON_WIRE:
        assert byte not in transport.sent_to_token


def test_records_corrupt_on_the_tokens_flash_are_skipped_and_the_rest_delivered(token, tmp_path):
    sync_standin.fill(token, 200)
    path = Path(token.root) / "log" / "0000000001.seg"
    data = bytearray(path.read_bytes())
    for seq in (10, 11, 150):
        data[(seq - 1) * 32 + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with Outbox(tmp_path / "o.sqlite") as outbox:
        report = sync_token(Loopback(token), outbox, now=lambda: 1_750_000_000)
    assert report.new_records == 197
    assert _seqs(tmp_path / "o.sqlite") == [s for s in range(1, 201) if s not in (10, 11, 150)]


def test_resume_after_interruption_and_dedup_after_a_crash_before_ack(token, tmp_path):
    sync_standin.fill(token, 1000)
    transport = Loopback(token)
    client = SyncClient(transport, timeout_s=0.05, retries=1)
    delivered = []
    original = client.dump

    def cut(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            delivered.append(chunk)
            yield chunk
            if len(delivered) == 2:
                transport.silent = True  # the cable is pulled after two chunks

    client.dump = cut
    with Outbox(tmp_path / "o.sqlite") as outbox, pytest.raises(NoAnswer):
        sync_token(transport, outbox, client=client, now=lambda: 1_750_000_000)
    held = _seqs(tmp_path / "o.sqlite")
    assert held == list(range(1, len(held) + 1)) and 0 < len(held) < 1000
    assert token.store.pending() == 1000  # nothing was acknowledged
    with Outbox(tmp_path / "o.sqlite") as outbox:
        report = sync_token(Loopback(token), outbox, now=lambda: 1_750_000_000)
    assert (report.dumped, report.new_records, report.acked_seq) == (1000 - len(held), 1000 - len(held), 1000)
    assert _seqs(tmp_path / "o.sqlite") == list(range(1, 1001))


def test_correction_ranges_follow_the_clock_that_stamped_each_record(token, tmp_path):
    sync_standin.fill(token, 10, first_seen=1_749_000_000)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        sync_token(Loopback(token), outbox, now=lambda: 1_750_003_600)  # token an hour late
        token.rtc.now += 86400 - 5  # a day later the token clock is 5 s slow
        sync_standin.fill(token, 5, first_seen=token.clock.now() - 100)
        sync_token(Loopback(token), outbox, now=lambda: token.clock.now() + 5)
        assert outbox.correction_for("TT-0000ABCD", 3) == 3600
        assert outbox.correction_for("TT-0000ABCD", 12) == 5
        ranges = next(outbox.upload_batches()).payload["syncs"]
    spans = [(r["first_seq"], r["last_seq"]) for r in ranges]
    assert spans == sorted(spans) and all(a[1] < b[0] for a, b in zip(spans, spans[1:])), "ranges never overlap"


def test_version_mismatch_both_ways(token):
    with pytest.raises(VersionMismatch, match="this tokentool speaks v2"):
        SyncClient(Loopback(token), versions=(2, 2)).connect()
    with pytest.raises(VersionMismatch):
        SyncClient(Loopback(token), versions=(0, 0)).connect()


def test_keystore_is_private_and_refuses_unknown_tokens(tmp_path):
    import stat

    from host_tools.keystore import Keystore, KeystoreError, TokenSecrets

    keystore = Keystore(tmp_path / "clinic" / "keystore.sqlite")
    keystore.add(TokenSecrets("TT-00000001", b"k" * 32, b"s" * 16, "wearable", "escrowed", -8, "virtual"))
    assert stat.S_IMODE((tmp_path / "clinic").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "clinic" / "keystore.sqlite").stat().st_mode) == 0o600
    assert keystore.auth_key("TT-00000001") == b"k" * 32
    with pytest.raises(KeystoreError, match="no auth key for token TT-00000002"):
        keystore.auth_key("TT-00000002")
    keystore.close()


def test_outbox_refuses_a_damaged_record_and_stores_nothing_of_that_chunk(tmp_path, token):
    sync_standin.fill(token, 3)
    good = list(token.store.read(1, 3))
    bad = [(seq, data) for seq, data in good]
    bad[1] = (bad[1][0], bytes(32))
    with Outbox(tmp_path / "o.sqlite") as outbox:
        session = outbox.begin_sync("TT-0000ABCD", port="x", synced_at=1, token_time=1, correction_s=0,
                                    clock_was_set=True, clock_set=False, boundary_seq=4)
        with pytest.raises(records.CorruptRecord):
            outbox.store_chunk(session, bad)
        assert list(outbox.records_of("TT-0000ABCD")) == []
        assert outbox.store_chunk(session, good).new == 3


def test_a_token_app_restart_mid_sync_is_greeted_again_and_the_sync_completes(token, tmp_path):
    sync_standin.fill(token, 900)
    transport = Loopback(token)
    client = SyncClient(transport, timeout_s=0.05)
    original = client.dump
    restarted = []

    def restart_after_first_chunk(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            if not restarted:
                restarted.append(True)
                transport.server = sync_standin.SyncServer(token)  # the app rebooted: not greeted
            yield chunk

    client.dump = restart_after_first_chunk
    with Outbox(tmp_path / "o.sqlite") as outbox:
        report = sync_token(transport, outbox, client=client, now=lambda: 1_750_000_000)
    assert report.new_records == 900 and client.greetings_lost == 1
    assert _seqs(tmp_path / "o.sqlite") == list(range(1, 901))


def test_the_clock_is_set_at_the_top_of_a_host_second(monkeypatch):
    from host_tools import sync_session

    slept = []
    monkeypatch.setattr(sync_session.time, "sleep", slept.append)
    assert sync_session._next_whole_second(lambda: 1_750_000_000.25) == 1_750_000_001
    assert slept == [0.75]
    assert sync_session._next_whole_second(lambda: 1_750_000_002.0) == 1_750_000_002 and slept == [0.75]
