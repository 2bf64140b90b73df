"""A flash image written by the firmware under real MicroPython is readable on the host by
littlefs-python (an independent littlefs), and its records, keys, events and config decode."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from host_tools import micropython
from host_tools.flashimage import ESP32_VFS_OFFSET, FlashImageError, open_image
from tokenfw import records

BOARD_DIR = micropython.BOARDS_DIR / "virtual"
NOW = 1767225600

WRITER = r'''
import sys
import blockdev
from tokenfw import config, records
from tokenfw.eventlog import EventLog
from tokenfw.keystore import KeyStore
from tokenfw.store import Store

bdev = blockdev.FileBlockDevice(sys.argv[1])  # 2 MiB of 4096-byte blocks, as on an ESP32
blockdev.mount(bdev, "/flash")
config.save("/flash/config.json", {"serial": "TT-0000BEEF", "role": "wearable", "tx_power_dbm": -8})
events = EventLog("/flash/events.bin", capacity=16)
store = Store("/flash/log", segment_records=100, events=events)
for n in range(250):
    seq = store.next_seq
    store.append(records.Encounter(bytes([n % 256]) * 16, b"\x01\x02\x03\x04", NOW_S + n, n, 3, -40, -60, 0))
    if n % 40 == 39:
        store.commit()
store.commit()
store.ack(120)
keys = KeyStore("/flash/keys.bin")
for day in range(3):
    keys.put(bytes([0xA0 + day]) * 16, 2945376 + day * 144)
events.log("boot", "firmware test", now=NOW_S)
if len(sys.argv) > 2 and sys.argv[2] == "torn":  # half a record at the log's end
    with open("/flash/log/%010d.seg" % 201, "ab") as f:
        f.write(b"\x99" * 13)
print("WROTE", store.committed_seq)
'''.replace("NOW_S", str(NOW))


def expected(seq: int) -> records.Encounter:
    n = seq - 1
    return records.Encounter(bytes([n % 256]) * 16, b"\x01\x02\x03\x04", NOW + n, n, 3, -40, -60, 0)


@pytest.fixture(scope="module")
def token_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("flash")
    script = tmp / "writer.py"
    script.write_text(WRITER)
    image = tmp / "flash.img"
    done = micropython.run(script, str(image), extra_paths=(BOARD_DIR,))
    assert done.returncode == 0 and "WROTE 250" in done.stdout, done.stderr
    return image


def test_records_written_by_the_firmware_decode_on_the_host(token_image: Path) -> None:
    image = open_image(token_image)
    assert (image.partition.offset, image.partition.block_size, image.partition.block_count) == (0, 4096, 512)
    found = list(image.records())
    assert [r.seq for r in found] == list(range(1, 251))
    assert all(r.error is None and r.encounter == expected(r.seq) for r in found)
    assert [r.seq for r in image.records(from_seq=201)] == list(range(201, 251))
    assert image.log_state()["acked_seq"] == 120


def test_config_keys_and_events_are_readable(token_image: Path) -> None:
    image = open_image(token_image)
    assert image.config()["serial"] == "TT-0000BEEF"
    assert image.keys() == [(bytes([0xA0 + d]) * 16, 2945376 + d * 144) for d in range(3)]
    assert image.events()[-1][1:] == (NOW, "boot", "firmware test")
    paths = [path for path, _ in image.files()]
    assert {"/config.json", "/keys.bin", "/events.bin", "/log/state.json"} <= set(paths)
    assert sum(1 for p in paths if p.endswith(".seg")) == 3
    summary = image.summary()
    assert summary["records"] == 250 and summary["last_seq"] == 250 and summary["corrupt_records"] == 0


def test_a_whole_chip_dump_is_found_at_the_vfs_partition(token_image: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.bin"
    firmware_part = bytearray(os.urandom(ESP32_VFS_OFFSET))
    firmware_part[0x9008:0x9010] = b"littlefs"  # a stray magic string inside the firmware
    dump.write_bytes(bytes(firmware_part) + token_image.read_bytes())
    image = open_image(dump)
    assert image.partition.offset == ESP32_VFS_OFFSET
    assert sum(1 for r in image.records() if r.error is None) == 250


def test_a_dump_whose_first_superblock_copy_is_erased_still_mounts(token_image: Path, tmp_path: Path) -> None:
    raw = bytearray(token_image.read_bytes())
    raw[:4096] = b"\xff" * 4096  # littlefs keeps its superblock in a pair of blocks
    dump = tmp_path / "dump.bin"
    dump.write_bytes(bytes(os.urandom(ESP32_VFS_OFFSET)) + bytes(raw))
    image = open_image(dump)
    assert image.partition.offset == ESP32_VFS_OFFSET
    assert sum(1 for r in image.records() if r.error is None) == 250


def test_damaged_records_are_reported_not_hidden(token_image: Path, tmp_path: Path) -> None:
    # flip one byte of record 7 wherever littlefs keeps it
    image = open_image(token_image)
    raw = bytearray(token_image.read_bytes())
    record7 = image.read_file("/log/0000000001.seg")[6 * 32:7 * 32]
    at = raw.find(record7)
    assert at > 0
    while at >= 0:  # older copy-on-write copies of the block hold it too
        raw[at + 20] ^= 0xFF
        at = raw.find(record7, at + 1)
    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(bytes(raw))
    found = {r.seq: r for r in open_image(damaged).records()}
    assert found[7].error and found[7].encounter is None
    assert all(found[s].error is None for s in found if s != 7)


def test_a_torn_record_at_the_end_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    done = micropython.run(script, str(tmp_path / "torn.img"), "torn", extra_paths=(BOARD_DIR,))
    assert done.returncode == 0, done.stderr
    found = list(open_image(tmp_path / "torn.img").records())
    assert [r.seq for r in found if r.error is None] == list(range(1, 251))
    assert found[-1].seq == 251 and "torn record: 13 of 32 bytes" in found[-1].error


def test_files_that_are_not_flash_images_give_one_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(FlashImageError, match="no littlefs filesystem"):
        open_image(junk)
    with pytest.raises(FlashImageError, match="cannot read flash image"):
        open_image(tmp_path / "missing.img")
