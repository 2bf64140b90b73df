# A flash chip for the virtual token: a host file seen through MicroPython's block-device
# protocol (readblocks / writeblocks / ioctl), the way esp32.Partition presents real flash.
#
# Power-cut injection: with cut_after_writes=N the chip completes N program/erase operations and
# then loses power. The operation in flight is torn (only its first half reaches the file, as a
# NOR page program or sector erase stops midway) and PowerCut is raised; every later operation
# raises too, so nothing after the cut can land. Reopen the file with a new FileBlockDevice to
# "power up".
#
# Every write goes to the file at once, so a killed process leaves the image exactly as the flash
# would be. MicroPython's unix-port files are unbuffered (each write is a write(2)) and their
# flush() is an fsync, which would cost a disk sync per littlefs program (ten times slower on a
# virtual disk): there the write alone suffices. CPython buffers, so there we flush.
import os
import sys

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

BLOCK_SIZE = const(4096)
BLOCK_COUNT = const(512)  # 2 MiB: MicroPython's vfs partition on a 4 MB ESP32
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)
_ERASED = b"\xff" * 256
_FLUSH = sys.implementation.name != "micropython"


class PowerCut(Exception):
    """The virtual chip lost power: nothing more reaches the flash."""


class FileBlockDevice:
    def __init__(self, path, block_size=BLOCK_SIZE, block_count=BLOCK_COUNT, cut_after_writes=None):
        self.block_size = block_size
        self.block_count = block_count
        self.writes = 0  # program + erase operations completed
        self.cut_after_writes = cut_after_writes
        self.powered = True
        size = block_size * block_count
        try:
            self._file = open(path, "r+b")
        except OSError:
            self._file = open(path, "w+b")
        self._file.seek(0, 2)
        have = self._file.tell()
        while have < size:  # a new chip reads as erased; grow in small steps (heap is capped)
            chunk = min(len(_ERASED), size - have)
            self._file.write(_ERASED[:chunk])
            have += chunk
        if _FLUSH:
            self._file.flush()

    def close(self):
        self._file.close()

    def _program(self, offset, data):
        if not self.powered:
            raise PowerCut("flash has no power")
        if self.cut_after_writes is not None and self.writes >= self.cut_after_writes:
            self.powered = False
            self._file.seek(offset)
            self._file.write(data[: len(data) // 2])
            if _FLUSH:
                self._file.flush()
            raise PowerCut("power cut after %d flash writes" % self.writes)
        self._file.seek(offset)
        self._file.write(data)
        if _FLUSH:
            self._file.flush()
        self.writes += 1

    def readblocks(self, block, buf, offset=0):
        if not self.powered:
            raise PowerCut("flash has no power")
        self._file.seek(block * self.block_size + offset)
        self._file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        # No allocation on the normal path: littlefs may write from a file's finaliser while
        # the garbage collector has the heap locked (as esp32.Partition can).
        self._program(block * self.block_size + (offset or 0), buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            # Erase one block to 0xFF in 256-byte steps: one operation for the cut counter.
            if not self.powered:
                raise PowerCut("flash has no power")
            cut = self.cut_after_writes is not None and self.writes >= self.cut_after_writes
            # An erase cut by a power loss stops midway, like a page program: half the block
            # reads erased, the rest still holds its old contents.
            size = self.block_size // 2 if cut else self.block_size
            start = arg * self.block_size
            for step in range(0, size, len(_ERASED)):
                self._file.seek(start + step)
                self._file.write(_ERASED)
            if _FLUSH:
                self._file.flush()
            if cut:
                self.powered = False
                raise PowerCut("power cut after %d flash writes" % self.writes)
            self.writes += 1
            return 0
        return 0  # init, deinit, sync: nothing to do for a file


def mount(bdev, mount_point="/"):
    """Mount littlefs v2 from `bdev`, formatting it first when it holds no filesystem (a new or
    erased chip), as MicroPython's ESP32 boot does. Returns True when it had to format."""
    import vfs

    try:
        vfs.mount(vfs.VfsLfs2(bdev), mount_point)
        return False
    except OSError:
        vfs.VfsLfs2.mkfs(bdev)
        vfs.mount(vfs.VfsLfs2(bdev), mount_point)
        return True
