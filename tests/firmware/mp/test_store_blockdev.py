# The virtual flash chip (boards/virtual/blockdev.py): block-device protocol and power cuts.
import sys

from mptest import raises, remove_tree, scratch_dir

import blockdev

ON_MICROPYTHON = sys.implementation.name == "micropython"


def test_a_new_chip_reads_erased_and_keeps_what_is_written():
    where = scratch_dir("bdev")
    try:
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=8)
        assert chip.ioctl(4, 0) == 8 and chip.ioctl(5, 0) == 4096
        buf = bytearray(4096)
        chip.readblocks(3, buf)
        assert buf == b"\xff" * 4096
        chip.writeblocks(3, b"\x11" * 512, 256)
        chip.close()
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=8)
        chip.readblocks(3, buf)
        assert buf[:256] == b"\xff" * 256 and buf[256:768] == b"\x11" * 512
        assert chip.ioctl(6, 3) == 0  # erase
        chip.readblocks(3, buf)
        assert buf == b"\xff" * 4096
        chip.close()
    finally:
        remove_tree(where)


def test_a_power_cut_tears_the_write_in_flight_and_stops_everything_after():
    where = scratch_dir("bdev")
    try:
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=8, cut_after_writes=2)
        chip.writeblocks(0, b"\x01" * 64)
        chip.ioctl(6, 1)
        assert chip.writes == 2
        raises(blockdev.PowerCut, chip.writeblocks, 2, b"\x02" * 64)
        raises(blockdev.PowerCut, chip.writeblocks, 4, b"\x03" * 64)
        raises(blockdev.PowerCut, chip.readblocks, 0, bytearray(16))
        raises(blockdev.PowerCut, chip.ioctl, 6, 0)
        chip.close()
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=8)  # power up
        buf = bytearray(64)
        chip.readblocks(0, buf)
        assert buf == b"\x01" * 64
        chip.readblocks(2, buf)
        assert buf[:32] == b"\x02" * 32 and buf[32:] == b"\xff" * 32  # half the page landed
        chip.readblocks(4, buf)
        assert buf == b"\xff" * 64  # nothing after the cut
        chip.close()
    finally:
        remove_tree(where)


def test_mount_formats_a_blank_chip_once():
    if not ON_MICROPYTHON:
        return  # littlefs is MicroPython's
    import os
    import vfs

    where = scratch_dir("bdev")
    point = "/bdev-" + where[-12:]
    try:
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=16)
        assert blockdev.mount(chip, point) is True
        with open(point + "/kept", "w") as f:
            f.write("hello")
        vfs.umount(point)
        chip.close()
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=16)
        assert blockdev.mount(chip, point) is False
        assert os.listdir(point) == ["kept"]
        vfs.umount(point)
        chip.close()
    finally:
        remove_tree(where)


def test_an_erase_cut_by_a_power_loss_stops_halfway():
    where = scratch_dir("bdev")
    try:
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=4, cut_after_writes=1)
        chip.writeblocks(1, b"\x22" * 4096)
        raises(blockdev.PowerCut, chip.ioctl, 6, 1)
        chip.close()
        chip = blockdev.FileBlockDevice(where + "/chip.img", block_count=4)
        buf = bytearray(4096)
        chip.readblocks(1, buf)
        assert buf[:2048] == b"\xff" * 2048 and buf[2048:] == b"\x22" * 2048
        chip.close()
    finally:
        remove_tree(where)
