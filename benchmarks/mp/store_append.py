# Times the flash store on littlefs (MicroPython, 2 MiB file-backed chip) against the raw
# filesystem it sits on: the same bytes appended to a plain file in the same batches.
# Prints one JSON line.
#
# usage: micropython store_append.py IMAGE RECORDS BATCH
import gc
import json
import os
import sys
import time

import blockdev
from tokenfw import records
from tokenfw.store import Store

image, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bdev = blockdev.FileBlockDevice(image)
blockdev.mount(bdev, "/flash")


def encounter(i):
    return records.Encounter(i.to_bytes(4, "little") * 4, b"\x40\x08\x00\x00", 1767225600 + i * 60,
                             300, 3, -55, -62, 0)


def free_bytes():
    s = os.statvfs("/flash")
    return s[0] * s[3]


gc.collect()
store = Store("/flash/log")
free_before = free_bytes()
writes_before = bdev.writes
began = time.ticks_us()
for i in range(count):
    store.append(encounter(i))
    if (i + 1) % batch == 0:
        store.commit()
store.commit()
store_us = time.ticks_diff(time.ticks_us(), began)
used = free_before - free_bytes()
store_writes = bdev.writes - writes_before

# Baseline: the same records, encoded once, appended to one plain file in the same batches.
encoded = bytearray(batch * records.RECORD_SIZE)
for j in range(batch):
    encoded[j * 32:(j + 1) * 32] = records.encode(j, encounter(j))
began = time.ticks_us()
for i in range(0, count, batch):
    with open("/flash/raw.bin", "ab") as f:
        f.write(encoded)
raw_us = time.ticks_diff(time.ticks_us(), began)

print(json.dumps({
    "records": count,
    "batch": batch,
    "record_append_ms": store_us / 1000 / count,
    "raw_append_ms": raw_us / 1000 / count,
    "flash_bytes_used": used,
    "flash_bytes_per_record": used / count,
    "flash_block_writes_per_record": store_writes / count,
    "partition_bytes": bdev.block_size * bdev.block_count,
}))
