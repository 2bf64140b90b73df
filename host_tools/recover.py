"""Recover encounter records from a raw flash dump (`esptool read_flash`) of a broken token.

The token's data partition is littlefs v2 (what MicroPython's VfsLfs2 writes). A dump may be the
partition alone or the whole chip; the partition is found by littlefs's superblock magic at a
block boundary. The filesystem is read with littlefs-python, an implementation independent of
the firmware's, read-only (the dump is evidence: nothing is ever written to it). Records are
checked one by one (a record that fails its check is counted and skipped, never guessed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from littlefs import LittleFS, LittleFSError, UserContext
from tokenfw import records as record_codec

from host_tools.errors import TokenToolError

BLOCK_SIZE = 4096
PARTITION_BYTES = 2 * 1024 * 1024
_MAGIC = b"littlefs"
_SEGMENT_SUFFIX = ".seg"


class RecoverError(TokenToolError):
    pass


@dataclass
class Recovered:
    image: str
    offset: int
    serial: str | None
    config: dict
    clock: dict
    acked_seq: int
    records: list[tuple[int, bytes]] = field(default_factory=list)
    corrupt: int = 0
    torn_bytes: int = 0
    segments: int = 0

    @property
    def unacked(self) -> int:
        return sum(1 for seq, _ in self.records if seq > self.acked_seq)


class _ReadOnly(UserContext):
    def prog(self, cfg, block, off, data):  # the dump is never modified
        raise OSError("read-only flash image")

    def erase(self, cfg, block):
        raise OSError("read-only flash image")


def find_partition(data: bytes, block_size: int = BLOCK_SIZE) -> list[int]:
    """Offsets (block-aligned) where a littlefs superblock starts, most plausible first."""
    found = []
    position = data.find(_MAGIC)
    while position >= 0:
        start = position - 8  # the name tag sits 8 bytes into the superblock's metadata block
        if start >= 0 and start % block_size in (0,):
            found.append(start)
        elif start >= 0 and (start - block_size) % block_size == 0 and start - block_size >= 0:
            found.append(start - block_size)  # the superblock pair's second block
        position = data.find(_MAGIC, position + 1)
    ordered = []
    for offset in found:
        if offset not in ordered:
            ordered.append(offset)
    return ordered


def _mount(data: bytes, offset: int, block_size: int) -> LittleFS:
    size = len(data) - offset
    block_count = min(size, PARTITION_BYTES) // block_size if size >= PARTITION_BYTES else size // block_size
    context = _ReadOnly(buffer=bytearray(data[offset:offset + block_count * block_size]))
    fs = LittleFS(context=context, block_size=block_size, block_count=block_count, read_size=32, prog_size=32,
                  lookahead_size=32, cache_size=128, block_cycles=100, mount=False)
    fs.mount()
    return fs


def _read(fs: LittleFS, path: str) -> bytes | None:
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except (LittleFSError, OSError, FileNotFoundError):
        return None


def _json(fs: LittleFS, path: str) -> dict:
    raw = _read(fs, path)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recover(image: str | Path, offset: int | None = None, block_size: int = BLOCK_SIZE) -> Recovered:
    path = Path(image)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecoverError(f"{path} does not exist") from None
    except OSError as error:
        raise RecoverError(f"cannot read {path}: {error.strerror or error}") from None
    candidates = [offset] if offset is not None else find_partition(data, block_size)
    if not candidates:
        raise RecoverError(f"{path} holds no littlefs filesystem (no superblock found); is it a dump of the token's flash?")
    fs = None
    for candidate in candidates:
        if candidate < 0 or candidate + 2 * block_size > len(data):
            continue
        try:
            fs = _mount(data, candidate, block_size)
            offset = candidate
            break
        except (LittleFSError, OSError, ValueError):
            continue
    if fs is None:
        raise RecoverError(f"the littlefs filesystem in {path} does not mount (offset {candidates[0]:#x}); "
                           "the dump may be truncated or from another device")
    try:
        config = _json(fs, "/config.json")
        state = _json(fs, "/log/state.json")
        result = Recovered(str(path), offset, config.get("serial"), config, _json(fs, "/clock.json"),
                           int(state.get("acked_seq", 0) or 0))
        try:
            names = sorted(n for n in fs.listdir("/log") if n.endswith(_SEGMENT_SUFFIX) and n[:-4].isdigit())
        except (LittleFSError, OSError, FileNotFoundError):
            names = []
        seen: set[int] = set()
        for name in names:
            first = int(name[:-len(_SEGMENT_SUFFIX)])
            raw = _read(fs, "/log/" + name) or b""
            result.segments += 1
            result.torn_bytes += len(raw) % record_codec.RECORD_SIZE
            for index in range(len(raw) // record_codec.RECORD_SIZE):
                seq = first + index
                chunk = raw[index * 32:(index + 1) * 32]
                if seq in seen:
                    continue  # a copy rewritten into the next segment after a failed write
                if record_codec.is_intact(seq, chunk):
                    seen.add(seq)
                    result.records.append((seq, bytes(chunk)))
                else:
                    result.corrupt += 1
        result.records.sort()
        return result
    finally:
        try:
            fs.unmount()
        except Exception:
            pass
