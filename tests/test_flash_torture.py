"""Power-cut torture of the flash store on real littlefs under the real MicroPython interpreter.

A workload (appends with periodic commits, segment rotation, an acknowledgement, retention that
deletes a segment, an own-TEK update, event-log writes; on a tiny chip, the full-flash policy
dropping old segments; and the device's own batch and segment sizes, one segment file spanning
several blocks) is replayed once per block-write index N with the virtual flash chip losing power
after N program/erase operations. After each cut a fresh FileBlockDevice on the same image
"powers up" the chip and the test checks what a user of the token relies on:

- littlefs mounts without being reformatted;
- every record whose commit() returned is present and intact (except those the full-flash or
  retention policy was entitled to drop), with no gap between the oldest and the newest;
- the acknowledgement cursor never went back; the own-TEK file holds the old or the new keys;
- sequence numbers continue past everything that reached the flash, and logging continues.

One interpreter process handles a whole range of cut indices (fresh image copy per index).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from host_tools import micropython

BOARD_DIR = micropython.BOARDS_DIR / "virtual"
# The chip images take thousands of small flushed writes: keep them in RAM when the host has a
# tmpfs (ten times faster than a virtual disk), else in pytest's tmp_path.
RAM_DIR = "/dev/shm"


@pytest.fixture
def scratch(tmp_path: Path):
    if os.path.isdir(RAM_DIR) and os.access(RAM_DIR, os.W_OK):
        where = Path(tempfile.mkdtemp(prefix="torture-", dir=RAM_DIR))
        yield where
        shutil.rmtree(where, ignore_errors=True)
    else:
        yield tmp_path

WORKER = r'''
import json
import os
import sys
import vfs

import blockdev
from tokenfw import records
from tokenfw.eventlog import EventLog
from tokenfw.keystore import KeyStore
from tokenfw.store import Store

WORKLOAD, BLOCKS, BASE, WORK, START, STOP = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
MOUNT = "/torture"
NOW = 1767225600
DAY = 86400


def encounter(seq):
    # the content is a function of the seq, so a record found after a cut can be checked
    old = seq <= 40 and WORKLOAD == "normal"
    return records.Encounter(
        seq.to_bytes(4, "little") + bytes(12), b"\xaa\xbb\xcc\xdd",
        NOW - (30 * DAY if old else 0) + seq, seq % 300, seq % 250 + 1, -45, -71, 0)


def copy(src, dst):
    buf = bytearray(4096)
    with open(src, "rb") as s, open(dst, "wb") as d:
        while True:
            n = s.readinto(buf)
            if not n:
                break
            d.write(buf[:n] if n < len(buf) else buf)


def open_store():
    events = EventLog(MOUNT + "/events.bin", capacity=8)
    if WORKLOAD == "normal":
        return Store(MOUNT + "/log", batch_records=8, segment_records=32, events=events)
    if WORKLOAD == "default":  # the device's own sizes: a segment file spanning several blocks
        return Store(MOUNT + "/log", events=events)
    return Store(MOUNT + "/log", batch_records=8, segment_records=32, reserve_blocks=2, events=events)


class Progress:
    committed = 0       # highest seq whose commit() returned
    acked = 0           # cursor ack() returned
    acking = 0          # cursor an ack in flight may have written
    may_drop_below = 1  # the store may have dropped records below this seq
    key_put = False     # a KeyStore.put was started
    key_done = False    # ... and returned


KEY = (b"\x7e" * 16, 2945376)


def fill(store, progress, count):
    for i in range(count):
        seq = store.next_seq
        if WORKLOAD == "full":
            progress.may_drop_below = seq  # on a full chip any rotation drops the oldest
        assert store.append(encounter(seq)) == seq
        if seq % (25 if WORKLOAD == "default" else 6) == 0:
            store.commit()
            progress.committed = seq
        if i == 60:
            progress.key_put = True
            KeyStore(MOUNT + "/keys.bin").put(*KEY)
            progress.key_done = True
        if i == 90:
            progress.acking = progress.committed - 10
            progress.acked = store.ack(progress.acking)
        if i == 120 and WORKLOAD == "normal":
            # records 1..40 are 30 days old: the first segment (1..32) expires, the second
            # (33..64) holds newer records and stays
            progress.may_drop_below = 33
            assert store.enforce_retention(NOW + 1000) == 32
    store.commit()
    progress.committed = store.committed_seq


def workload(progress, cut):
    bdev = blockdev.FileBlockDevice(WORK, block_count=BLOCKS, cut_after_writes=cut)
    vfs.mount(vfs.VfsLfs2(bdev), MOUNT)
    store = open_store()
    progress.committed = store.committed_seq
    progress.acked = progress.acking = store.acked_seq
    progress.may_drop_below = store.oldest_seq
    progress.key_done = progress.key_put = bool(KeyStore(MOUNT + "/keys.bin").entries())
    fill(store, progress, 110 if WORKLOAD == "full" else 200)
    return bdev, store.stats()


def make_base():
    bdev = blockdev.FileBlockDevice(BASE, block_count=BLOCKS)
    vfs.VfsLfs2.mkfs(bdev)
    if WORKLOAD == "full":  # a chip already full of older records: every rotation drops
        vfs.mount(vfs.VfsLfs2(bdev), MOUNT)
        fill(open_store(), Progress(), 300)
        vfs.umount(MOUNT)
    bdev.close()


def verify(progress):
    bdev = blockdev.FileBlockDevice(WORK, block_count=BLOCKS)
    try:
        vfs.mount(vfs.VfsLfs2(bdev), MOUNT)  # no reformat: a cut must never cost the filesystem
    except OSError as error:
        return "littlefs does not mount after the cut: %r" % (error,)
    try:
        store = open_store()
        oldest = store.oldest_seq
        if oldest > max(progress.may_drop_below, 1):
            return "oldest seq %d but nothing past %d could be dropped" % (oldest, progress.may_drop_below - 1)
        expected = oldest
        for seq, buf in store.read(1):
            if seq != expected:
                return "seq %d missing (next found %d)" % (expected, seq)
            if records.decode(seq, buf) != encounter(seq):
                return "seq %d has the wrong content" % seq
            expected += 1
        last = expected - 1
        if last < progress.committed:
            return "committed seq %d lost (log ends at %d)" % (progress.committed, last)
        if store.stats()["corrupt_skipped"]:
            return "corrupt records after a cut on littlefs"
        if store.acked_seq < progress.acked or store.acked_seq not in (progress.acked, progress.acking):
            return "ack cursor %d, expected %d" % (store.acked_seq, progress.acked)
        if store.next_seq != last + 1:
            return "next seq %d after a log ending at %d" % (store.next_seq, last)
        keys = KeyStore(MOUNT + "/keys.bin").entries()
        if keys != [KEY] and (progress.key_done or keys):
            return "own keys %r after the cut (put started %s, returned %s)" % (keys, progress.key_put, progress.key_done)
        # logging continues
        for _ in range(10):
            store.append(encounter(store.next_seq))
        store.commit()
        count = 0
        for seq, buf in store.read(last + 1):
            records.decode(seq, buf)
            count += 1
        if count != 10:
            return "only %d of 10 records logged after the cut" % count
        return None
    finally:
        vfs.umount(MOUNT)
        bdev.close()


if START < 0:
    make_base()
for cut in range(max(START, 0), STOP):
    copy(BASE, WORK)
    progress = Progress()
    result = {"cut": cut, "powered": True}
    try:
        bdev, stats = workload(progress, cut)
        result["writes"] = bdev.writes
        result["dropped"] = stats["dropped_acked"] + stats["dropped_unacked"]
        vfs.umount(MOUNT)
        bdev.close()
    except blockdev.PowerCut:
        result["powered"] = False
        try:
            vfs.umount(MOUNT)
        except OSError:
            pass
    except Exception as error:
        result["error"] = "workload raised %s: %s" % (type(error).__name__, error)
        print("TORTURE " + json.dumps(result))
        continue
    result["committed"] = progress.committed
    result["error"] = verify(progress)
    print("TORTURE " + json.dumps(result))
    if result["powered"]:
        break  # the workload finished before the cut: every index is covered
'''

def _run_range(tmp: Path, workload: str, blocks: int, base: Path, start: int, stop: int) -> list[dict]:
    work = tmp / f"work-{workload}-{start}.img"
    done = micropython.run(
        tmp / "worker.py", workload, str(blocks), str(base), str(work), str(start), str(stop),
        extra_paths=(BOARD_DIR,), heap_bytes=micropython.ESP32_HEAP_BYTES, timeout_s=300,
    )
    results = [json.loads(line[len("TORTURE "):]) for line in done.stdout.splitlines()
               if line.startswith("TORTURE ")]
    if not results and start >= 0:
        raise AssertionError(f"torture worker produced nothing:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    if done.returncode != 0:
        raise AssertionError(f"torture worker failed:\n{done.stderr[-3000:]}")
    last = results[-1] if results else {"powered": True}
    if not last["powered"] and last["cut"] != stop - 1:
        raise AssertionError(f"torture worker stopped at cut {last['cut']}:\n{done.stderr[-3000:]}")
    return results


def _torture(tmp_path: Path, workload: str, blocks: int) -> list[dict]:
    (tmp_path / "worker.py").write_text(WORKER)
    base = tmp_path / f"base-{workload}.img"
    _run_range(tmp_path, workload, blocks, base, -1, 0)  # format (and prefill) the chip
    # how many flash writes the whole workload makes: one run with no cut
    total = _run_range(tmp_path, workload, blocks, base, 10**9, 10**9 + 1)[0]
    assert total["powered"] and total["error"] is None, total
    if workload == "full":
        assert total["dropped"] > 0, "the full-chip workload never dropped a segment"
    writes = total["writes"]
    chunk = (writes + 2) // 2
    ranges = [(start, min(start + chunk, writes + 1)) for start in range(0, writes + 1, chunk)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = pool.map(lambda r: _run_range(tmp_path, workload, blocks, base, *r), ranges)
        results = [result for part in parts for result in part]
    cuts = sorted(result["cut"] for result in results)
    assert cuts == list(range(writes + 1)), "not every block-write index was cut"
    return results


@pytest.mark.parametrize("workload,blocks", [("normal", 32), ("full", 16), ("default", 32)])
def test_power_cut_at_every_flash_write_keeps_committed_records(scratch: Path, workload: str,
                                                                blocks: int) -> None:
    results = _torture(scratch, workload, blocks)
    failures = [f"cut after {r['cut']} writes: {r['error']}" for r in results if r["error"]]
    assert not failures, "\n".join(failures[:20])
    cut_runs = [r for r in results if not r["powered"]]
    assert len(cut_runs) == len(results) - 1  # only the index past the last write finishes
    assert max(r["committed"] for r in cut_runs) >= (400 if workload == "full" else 175)
