# MicroPython side of benchmarks/flash_store.py: the flash store on littlefs over the virtual
# 2 MiB chip (4096-byte blocks, as MicroPython's vfs partition on a 4 MB ESP32).
#
# usage: micropython flash_store_bench.py IMAGE_PATH
# Prints one line: BENCH {json}. Times are the unix port's on this host (for ratios, not as
# ESP32 figures); flash figures (bytes, block writes) are what littlefs does on any port.
import gc
import json
import os
import sys
import time
import vfs

import blockdev
from tokenfw import records
from tokenfw.store import Store

MOUNT = "/bench"
ENC = records.Encounter(b"\x42" * 16, b"\x01\x02\x03\x04", 1767225600, 120, 9, -48, -67, 0)


def fresh(path):
    try:
        os.remove(path)
    except OSError:
        pass
    bdev = blockdev.FileBlockDevice(path)
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), MOUNT)
    return bdev


def done(bdev):
    vfs.umount(MOUNT)
    bdev.close()


def used_blocks():
    info = os.statvfs(MOUNT)
    return info[2] - info[3]


def ms_since(start_us, count):
    return time.ticks_diff(time.ticks_us(), start_us) / 1000 / count


def main(path):
    out = {}
    n = 300
    # baseline: the plainest durable append littlefs offers (open, write 32 bytes, close)
    bdev = fresh(path)
    start = time.ticks_us()
    for _ in range(n):
        with open(MOUNT + "/raw.bin", "ab") as f:
            f.write(records.encode(1, ENC))
    out["raw_append_close_ms"] = ms_since(start, n)
    done(bdev)

    # the store, committing after every record (the worst case: a commit per encounter)
    bdev = fresh(path)
    store = Store(MOUNT + "/log")
    writes = bdev.writes
    start = time.ticks_us()
    for _ in range(n):
        store.append(ENC)
        store.commit()
    out["append_commit_each_ms"] = ms_since(start, n)
    out["flash_programs_per_record_commit_each"] = (bdev.writes - writes) / n
    done(bdev)

    # the store as the app runs it: appends buffered, one commit per 64-record batch
    bdev = fresh(path)
    store = Store(MOUNT + "/log")
    writes = bdev.writes
    start = time.ticks_us()
    for _ in range(n * 4):
        store.append(ENC)
    store.commit()
    out["append_batched_ms"] = ms_since(start, n * 4)
    out["flash_programs_per_record_batched"] = (bdev.writes - writes) / (n * 4)
    done(bdev)

    # flash bytes per record including littlefs overhead: fill until the full-flash policy first
    # drops a segment; the records then stored are what 2 MiB holds
    bdev = fresh(path)
    before = used_blocks()
    store = Store(MOUNT + "/log")
    gc.collect()
    heap_before = gc.mem_alloc()
    start = time.ticks_us()
    count = 0
    while True:
        store.append(ENC)
        count += 1
        if count == 20000:
            store.commit()
            out["bytes_per_record_at_20000"] = (used_blocks() - before) * 4096 / store.records()
        # a segment holds 1022 records: look at the counters about once per segment
        if count % 1000 == 0 and store.stats()["dropped_unacked"]:
            break
    store.commit()
    out["fill_append_ms"] = ms_since(start, count)
    gc.collect()
    out["heap_growth_bytes_during_fill"] = gc.mem_alloc() - heap_before
    stats = store.stats()
    out["capacity_records"] = stats["records"]
    out["segments_at_full"] = stats["segments"]
    out["filesystem_bytes"] = stats["bytes_total"]
    out["bytes_per_record"] = stats["bytes_total"] / stats["records"]
    out["records_written_to_fill"] = count
    done(bdev)
    print("BENCH " + json.dumps(out))


main(sys.argv[1])
