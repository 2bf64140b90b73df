# The virtual token's "ROM bootloader": what an ESP32 does before it runs /main.py.
#
# The supervisor (host_tools/virtual/supervisor.py) runs
#     micropython -X heapsize=100K -i boards/virtual/vboot.py
# with the console pty as stdin/stdout and controlling terminal. This script opens the flash
# image through the file-backed block device, mounts littlefs at "/", makes "/" the current
# directory and the import path what an ESP32 uses, tells the supervisor it booted, and imports
# main. When main returns or raises, `-i` drops into the REPL, as the board does; mpremote then
# talks to that REPL.
#
# Settings come from the environment (read BEFORE the mount: after it, relative paths and
# imports resolve inside the flash image):
#   VTOKEN_FLASH            host path of the flash image (required)
#   VTOKEN_SOCKET           host path of the supervisor's unix socket (radio, clock, LED, ...)
#   VTOKEN_CUT_AFTER_WRITES power-cut injection: the chip dies after this many block writes
import os
import socket  # imported now: after the mount (or a power cut) imports search the flash
import struct
import sys

import blockdev

_FLASH = os.getenv("VTOKEN_FLASH")
_SOCKET = os.getenv("VTOKEN_SOCKET")
_CUT = os.getenv("VTOKEN_CUT_AFTER_WRITES")


def _tell_supervisor(message):
    # Socket calls go to the host OS, not the VFS: the socket path works after the mount.
    if not _SOCKET:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(struct.pack("H", socket.AF_UNIX) + _SOCKET.encode() + b"\0")
        s.write(message + b"\n")
        s.readline()
    except OSError:
        pass  # no supervisor (a developer running vboot by hand): boot anyway
    finally:
        s.close()


class _Chip(blockdev.FileBlockDevice):
    """The flash chip; when injected power loss strikes, the supervisor cuts the power."""

    def _program(self, offset, data):
        try:
            blockdev.FileBlockDevice._program(self, offset, data)
        except blockdev.PowerCut:
            _tell_supervisor(b"powercut")
            raise

    def ioctl(self, op, arg):
        try:
            return blockdev.FileBlockDevice.ioctl(self, op, arg)
        except blockdev.PowerCut:
            _tell_supervisor(b"powercut")
            raise


def boot():
    if not _FLASH:
        print("vboot: VTOKEN_FLASH is not set")
        sys.exit(2)
    cut = int(_CUT) if _CUT else None
    chip = _Chip(_FLASH, cut_after_writes=cut)
    # Reachable from the REPL for fault injection: `import blockdev; c = blockdev.active_chip;
    # c.cut_after_writes = c.writes + 5` cuts the power five flash writes from now.
    blockdev.active_chip = chip
    if blockdev.mount(chip, "/"):
        print("vboot: flash held no filesystem; formatted littlefs")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]
    _tell_supervisor(b"boot")


boot()
import main  # noqa: E402,F401  (the app runs here; on return or error -i gives the REPL)
