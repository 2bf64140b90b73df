"""Read a token's flash on the host: littlefs-python over a raw image, records decoded.

Two kinds of image are accepted:

- the littlefs partition alone (a virtual token's `STATE/flash.img`, 2 MiB of 4096-byte blocks);
- a whole-chip dump (`esptool read_flash 0 0x400000 dump.bin` of a 4 MB ESP32), where
  MicroPython's vfs partition starts at 0x200000.

The filesystem is found by scanning block boundaries for the littlefs superblock (the magic
"littlefs" at offset 8 of the block, followed by version, block size and block count), then
mounted read-only in memory with littlefs-python, an implementation independent of the
firmware's. Nothing here writes to the image file.

Token layout (docs/storage.md): `/log/NNNNNNNNNN.seg` record segments, `/log/state.json` (ack
cursor, loss counters), `/config.json`, `/keys.bin`, `/events.bin`. Records are decoded with
`tokenfw.records`, own keys and events with the firmware's own `KeyStore` / `EventLog` code run
on a temporary copy, so the host and the token share one definition of every format.
"""
from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from host_tools.errors import TokenToolError
from tokenfw import records

MAGIC = b"littlefs"
_MAGIC_OFFSET = 8
_SCAN_STEP = 4096  # ESP32 flash sector: every littlefs block we care about starts on one
ESP32_VFS_OFFSET = 0x200000
LOG_DIR = "/log"
SEGMENT_SUFFIX = ".seg"
# MicroPython's VfsLfs2 defaults; littlefs does not record them on disk.
_READ_SIZE = 32
_PROG_SIZE = 32
_LOOKAHEAD = 32


class FlashImageError(TokenToolError):
    """The image cannot be read as a token's flash."""


@dataclass(frozen=True)
class Partition:
    offset: int        # byte offset of littlefs block 0 in the image file
    block_size: int
    block_count: int
    version: int       # littlefs on-disk version, e.g. 0x00020001 for 2.1


@dataclass(frozen=True)
class RecoveredRecord:
    seq: int
    data: bytes                       # the 32 raw bytes as stored
    encounter: records.Encounter | None
    error: str | None                 # why it could not be decoded (None when intact)
    segment: str


def _plausible(block_size: int, block_count: int, offset: int, image_size: int) -> bool:
    return (
        128 <= block_size <= 65536 and block_size & (block_size - 1) == 0
        and block_count >= 2 and offset + block_size * block_count <= image_size
    )


def find_partitions(image: bytes) -> list[Partition]:
    """Every place in `image` where a littlefs superblock starts, in order."""
    found = []
    position = 0
    while True:
        hit = image.find(MAGIC, position)
        if hit < 0:
            return found
        position = hit + 1
        start = hit - _MAGIC_OFFSET
        if start < 0 or start % _SCAN_STEP:
            continue
        if start + 32 > len(image):
            continue
        version, block_size, block_count = struct.unpack_from("<III", image, start + 20)
        if found and start == found[-1].offset + found[-1].block_size:
            continue  # the second block of the same superblock pair
        if start - block_size in (0, ESP32_VFS_OFFSET) and _plausible(
                block_size, block_count, start - block_size, len(image)):
            # block 1 of the pair at a known partition start: block 0 was damaged or erased
            # mid-update; littlefs mounts from either half, so try the partition start first
            found.append(Partition(start - block_size, block_size, block_count, version))
        if _plausible(block_size, block_count, start, len(image)):
            found.append(Partition(start, block_size, block_count, version))


class FlashImage:
    """A mounted, in-memory copy of a token's littlefs partition."""

    def __init__(self, path: str | Path, partition: Partition | None = None) -> None:
        import littlefs  # imported here: only flash tools need it

        self.path = Path(path)
        try:
            image = self.path.read_bytes()
        except OSError as error:
            raise FlashImageError(f"cannot read flash image {self.path}: {error.strerror}") from error
        candidates = [partition] if partition else find_partitions(image)
        if not candidates:
            raise FlashImageError(f"{self.path} holds no littlefs filesystem (no superblock found)")
        last_error = None
        for candidate in candidates:
            data = bytearray(image[candidate.offset:candidate.offset + candidate.block_size * candidate.block_count])
            fs = littlefs.LittleFS(
                context=littlefs.UserContext(buffer=data), mount=False,
                block_size=candidate.block_size, block_count=candidate.block_count,
                read_size=_READ_SIZE, prog_size=_PROG_SIZE, lookahead_size=_LOOKAHEAD,
            )
            try:
                fs.mount()
            except littlefs.LittleFSError as error:
                last_error = error
                continue
            self.fs = fs
            self.partition = candidate
            return
        raise FlashImageError(f"the littlefs filesystem in {self.path} does not mount ({last_error})")

    # ---- files ---------------------------------------------------------------------------

    def files(self) -> list[tuple[str, int]]:
        """(path, size) of every file, sorted by path."""
        found = []
        for top, _dirs, names in self.fs.walk("/"):
            for name in names:
                path = top.rstrip("/") + "/" + name
                found.append((path, self.fs.stat(path).size))
        return sorted(found)

    def exists(self, path: str) -> bool:
        try:
            self.fs.stat(path)
        except Exception:
            return False
        return True

    def read_file(self, path: str) -> bytes:
        try:
            with self.fs.open(path, "rb") as f:
                return f.read()
        except Exception as error:
            raise FlashImageError(f"cannot read {path} from {self.path}: {error}") from error

    def _json(self, path: str) -> dict | None:
        if not self.exists(path):
            return None
        try:
            value = json.loads(self.read_file(path))
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    # ---- the token's data ----------------------------------------------------------------

    def config(self) -> dict | None:
        """The token's /config.json (identity, role, calibration), or None if absent/torn."""
        return self._json("/config.json")

    def log_state(self) -> dict:
        """The store's /log/state.json: acked_seq and loss counters (zeros when absent)."""
        return self._json(LOG_DIR + "/state.json") or {}

    def segments(self) -> list[tuple[int, str, int]]:
        """(first seq, path, size) of each record segment, oldest first."""
        if not self.exists(LOG_DIR):
            return []
        found = []
        for name in self.fs.listdir(LOG_DIR):
            stem = name[: -len(SEGMENT_SUFFIX)]
            if name.endswith(SEGMENT_SUFFIX) and stem.isdigit():
                path = f"{LOG_DIR}/{name}"
                found.append((int(stem), path, self.fs.stat(path).size))
        return sorted(found)

    def records(self, from_seq: int = 0) -> Iterator[RecoveredRecord]:
        """Every stored record with its seq, oldest first, corrupt ones included (with the
        reason) so that a recovery shows what the flash really holds. Follows the firmware's
        rules: a segment holds seqs first..first+size//32-1, cut at the next segment's first
        seq; a partial record at a segment's end is reported as torn."""
        segments = self.segments()
        for index, (first, path, size) in enumerate(segments):
            count = size // records.RECORD_SIZE
            if index + 1 < len(segments):
                count = min(count, segments[index + 1][0] - first)
            if first + count <= from_seq and not size % records.RECORD_SIZE:
                continue
            try:
                data = self.read_file(path)
            except FlashImageError as error:  # damaged file: report it, go on with the rest
                yield RecoveredRecord(first, b"", None, f"segment unreadable: {error}", path)
                continue
            for position in range(count):
                seq = first + position
                if seq < from_seq:
                    continue
                raw = data[position * records.RECORD_SIZE:(position + 1) * records.RECORD_SIZE]
                try:
                    yield RecoveredRecord(seq, raw, records.decode(seq, raw), None, path)
                except records.CorruptRecord as error:
                    yield RecoveredRecord(seq, raw, None, str(error), path)
            tail = size % records.RECORD_SIZE
            if tail and index == len(segments) - 1 and first + count >= from_seq:
                raw = data[count * records.RECORD_SIZE:]
                yield RecoveredRecord(first + count, raw, None,
                                      f"torn record: {tail} of {records.RECORD_SIZE} bytes", path)

    def keys(self) -> list[tuple[bytes, int]]:
        """The token's own TEKs as (tek, rolling start interval), oldest first."""
        from tokenfw.keystore import KeyStore

        return self._with_copy("/keys.bin", lambda p: KeyStore(p).entries(), [])

    def events(self) -> list[tuple[int, int, str, str]]:
        """The token's event log as (n, time, code, detail), oldest first."""
        from tokenfw.eventlog import EventLog

        def read(path: str) -> list:
            size = Path(path).stat().st_size
            log = EventLog(path, capacity=max(1, size // 64))
            return list(log.records())

        return self._with_copy("/events.bin", read, [])

    def _with_copy(self, path: str, reader, default):
        if not self.exists(path):
            return default
        with tempfile.TemporaryDirectory(prefix="tt-flash-") as scratch:
            copy = Path(scratch) / Path(path).name
            copy.write_bytes(self.read_file(path))
            return reader(str(copy))

    def summary(self) -> dict:
        """What a technician wants first: where the filesystem is, how full, what it holds."""
        intact = corrupt = 0
        first_seq = last_seq = None
        for record in self.records():
            if record.error:
                corrupt += 1
                continue
            intact += 1
            first_seq = record.seq if first_seq is None else first_seq
            last_seq = record.seq
        used = self.fs.used_block_count
        return {
            "image": str(self.path),
            "offset": self.partition.offset,
            "block_size": self.partition.block_size,
            "block_count": self.partition.block_count,
            "blocks_used": used,
            "files": len(self.files()),
            "records": intact,
            "corrupt_records": corrupt,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "acked_seq": self.log_state().get("acked_seq", 0),
            "keys": len(self.keys()),
            "events": len(self.events()),
        }


def open_image(path: str | Path) -> FlashImage:
    """Mount the littlefs partition found in the image at `path` (raises FlashImageError)."""
    return FlashImage(path)
