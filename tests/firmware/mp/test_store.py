# The flash log (tokenfw.store): what the token keeps, what survives a reboot, what a host reads.
#
# On MicroPython every test runs on real littlefs (VfsLfs2 over a file-backed flash chip mounted
# at a scratch path); on CPython on a plain directory.
import os
import sys

from mptest import raises, remove_tree, scratch_dir
from tokenfw import records
from tokenfw.eventlog import EventLog
from tokenfw.store import Store

ON_MICROPYTHON = sys.implementation.name == "micropython"
DAY_S = 24 * 3600
NOW = 1767225600  # 2026-01-01


def encounter(n, first_seen=NOW, flags=0):
    rpi = bytes([(n >> 8) & 0xFF, n & 0xFF]) + bytes(14)
    return records.Encounter(rpi, b"\x01\x02\x03\x04", first_seen, n % 600, n % 200 + 1, -40, -70, flags)


class Flash:
    """A scratch place for a store: littlefs on a fresh flash chip (MicroPython) or a
    directory (CPython). power_cycle() unmounts and mounts the same chip again."""

    def __init__(self, blocks=64):
        self.dir = scratch_dir("store")
        if ON_MICROPYTHON:
            try:  # chip images in RAM when the host has a tmpfs: many small flushed writes
                self.ram_dir = "/dev/shm/" + self.dir[5:]
                os.mkdir(self.ram_dir)
            except OSError:
                self.ram_dir = self.dir
        self.blocks = blocks
        self.bdev = None
        if ON_MICROPYTHON:
            self.mount_point = "/flash-" + self.dir[-12:]
            self._mount()
        else:
            self.mount_point = self.dir

    def _mount(self):
        import blockdev

        self.bdev = blockdev.FileBlockDevice(self.ram_dir + "/flash.img", block_count=self.blocks)
        blockdev.mount(self.bdev, self.mount_point)

    def path(self, name):
        return self.mount_point + "/" + name

    def power_cycle(self):
        if ON_MICROPYTHON:
            import vfs

            vfs.umount(self.mount_point)
            self.bdev.close()
            self._mount()

    def close(self):
        if ON_MICROPYTHON:
            import vfs

            vfs.umount(self.mount_point)
            self.bdev.close()
            if self.ram_dir != self.dir:
                remove_tree(self.ram_dir)
        remove_tree(self.dir)


def read_all(store, from_seq=1):
    return [(seq, records.decode(seq, buf)) for seq, buf in store.read(from_seq)]


def corrupt_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0x5A]))


def segment_files(root):
    return sorted(name for name in os.listdir(root) if name.endswith(".seg"))


def test_committed_records_read_back_in_order_with_their_seq():
    flash = Flash()
    try:
        store = Store(flash.path("log"), batch_records=8, segment_records=20)
        seqs = [store.append(encounter(n)) for n in range(50)]
        store.commit()
        assert seqs == list(range(1, 51))
        got = read_all(store)
        assert [seq for seq, _ in got] == seqs
        assert [enc for _, enc in got] == [encounter(n) for n in range(50)]
        assert [seq for seq, _ in store.read(17, 5)] == [17, 18, 19, 20, 21]
        assert store.next_seq == 51 and store.oldest_seq == 1 and store.pending() == 50
        assert len(segment_files(flash.path("log"))) == 3
    finally:
        flash.close()


def test_a_power_cut_loses_only_the_uncommitted_batch():
    flash = Flash()
    try:
        store = Store(flash.path("log"), batch_records=16)
        for n in range(10):
            store.append(encounter(n))
        store.commit()
        for n in range(10, 14):
            store.append(encounter(n))  # buffered, never committed
        assert [seq for seq, _ in store.read()] == list(range(1, 11))  # only committed is read
        flash.power_cycle()
        store = Store(flash.path("log"), batch_records=16)
        assert [enc for _, enc in read_all(store)] == [encounter(n) for n in range(10)]
        assert store.next_seq == 11
        assert store.append(encounter(99)) == 11
        store.commit()
        assert read_all(store)[-1] == (11, encounter(99))
    finally:
        flash.close()


def test_a_full_batch_commits_by_itself():
    flash = Flash()
    try:
        store = Store(flash.path("log"), batch_records=4)
        for n in range(9):
            store.append(encounter(n))
        assert store.buffered == 1
        flash.power_cycle()
        assert Store(flash.path("log")).next_seq == 9
    finally:
        flash.close()


def test_ack_cursor_persists_only_moves_forward_and_stops_at_the_log_end():
    flash = Flash()
    try:
        store = Store(flash.path("log"))
        for n in range(30):
            store.append(encounter(n))
        store.commit()
        assert store.acked_seq == 0 and store.pending() == 30
        assert store.ack(12) == 12
        assert store.ack(5) == 12  # a stale ack never rewinds
        assert store.pending() == 18
        assert store.ack(1000) == 30  # nobody can acknowledge what was never committed
        raises(ValueError, store.ack, -1)
        flash.power_cycle()
        store = Store(flash.path("log"))
        assert store.acked_seq == 30 and store.pending() == 0
        assert [seq for seq, _ in store.read(1)] == list(range(1, 31))  # acked is still readable
    finally:
        flash.close()


def test_corrupted_records_on_flash_are_skipped_and_counted():
    flash = Flash()
    try:
        events = EventLog(flash.path("events.bin"), capacity=8)
        store = Store(flash.path("log"), segment_records=50, events=events)
        for n in range(40):
            store.append(encounter(n))
        store.commit()
        segment = flash.path("log") + "/" + segment_files(flash.path("log"))[0]
        corrupt_byte(segment, 5 * 32 + 3)   # seq 6
        corrupt_byte(segment, 20 * 32 + 31)  # seq 21, in its check
        flash.power_cycle()
        events = EventLog(flash.path("events.bin"), capacity=8)
        store = Store(flash.path("log"), segment_records=50, events=events)
        got = read_all(store)
        assert [seq for seq, _ in got] == [s for s in range(1, 41) if s not in (6, 21)]
        assert store.stats()["corrupt_skipped"] == 2
        assert [code for _, code, _ in events.entries()] == ["corrupt"]
        store.append(encounter(500))
        store.commit()
        assert read_all(store, 41) == [(41, encounter(500))]  # logging continues
    finally:
        flash.close()


def test_a_torn_tail_is_skipped_and_its_seq_is_never_reused():
    flash = Flash()
    try:
        store = Store(flash.path("log"), segment_records=100)
        for n in range(10):
            store.append(encounter(n))
        store.commit()
        root = flash.path("log")
        with open(root + "/" + segment_files(root)[-1], "ab") as f:
            f.write(records.encode(11, encounter(10))[:13])  # half a record reached the flash
        flash.power_cycle()
        store = Store(root, segment_records=100)
        assert store.stats()["corrupt_skipped"] == 1
        assert store.next_seq == 12  # seq 11 (torn) is never handed out again
        assert store.append(encounter(11)) == 12
        store.commit()
        got = read_all(store)
        assert [seq for seq, _ in got] == list(range(1, 11)) + [12]
        assert got[-1][1] == encounter(11)
        flash.power_cycle()
        assert [seq for seq, _ in Store(root, segment_records=100).read()] == list(range(1, 11)) + [12]
    finally:
        flash.close()


def test_retention_deletes_records_older_than_21_days_and_seq_continues():
    flash = Flash()
    try:
        store = Store(flash.path("log"), segment_records=10)
        for n in range(20):  # two segments from 30 days ago
            store.append(encounter(n, NOW - 30 * DAY_S + n))
        for n in range(20, 25):  # five from 2 days ago
            store.append(encounter(n, NOW - 2 * DAY_S))
        store.commit()
        assert store.enforce_retention(NOW) == 20
        assert [seq for seq, _ in store.read()] == [21, 22, 23, 24, 25]
        assert store.oldest_seq == 21 and store.stats()["expired"] == 20
        assert store.enforce_retention(NOW + 30 * DAY_S) == 5  # everything expired
        assert list(store.read()) == [] and store.pending() == 0
        flash.power_cycle()
        store = Store(flash.path("log"), segment_records=10)
        assert store.append(encounter(1)) == 26  # no seq handed out twice
        assert store.stats()["expired"] == 25
    finally:
        flash.close()


def test_retention_never_judges_an_unset_clock():
    flash = Flash()
    try:
        store = Store(flash.path("log"), segment_records=5)
        for n in range(10):  # token clock never set: times count from its own epoch
            store.append(encounter(n, 946684800 + n, flags=records.FLAG_CLOCK_UNSET))
        store.commit()
        assert store.enforce_retention(NOW) == 0
        assert store.enforce_retention(1000) == 0  # `now` itself unset
        assert store.enforce_retention(None) == 0
        assert len(list(store.read())) == 10
    finally:
        flash.close()


def test_wipe_removes_records_but_sequence_numbers_continue():
    flash = Flash()
    try:
        store = Store(flash.path("log"), segment_records=8)
        for n in range(20):
            store.append(encounter(n))
        store.commit()
        store.wipe()
        assert list(store.read()) == [] and store.pending() == 0
        flash.power_cycle()
        store = Store(flash.path("log"), segment_records=8)
        assert store.append(encounter(0)) == 21
        store.commit()
        assert store.pending() == 1
    finally:
        flash.close()


def test_event_log_is_a_bounded_ring_that_survives_reboot():
    flash = Flash()
    try:
        log = EventLog(flash.path("events.bin"), capacity=5)
        for n in range(12):
            log.log("boot", "n=%d" % n, now=NOW + n)
        flash.power_cycle()
        log = EventLog(flash.path("events.bin"), capacity=5)
        assert list(log.entries()) == [(NOW + n, "boot", "n=%d" % n) for n in range(7, 12)]
        assert os.stat(flash.path("events.bin"))[6] == 5 * 64
        log.log("a_long_code_name_here", "x" * 100, now=1)
        last = list(log.entries())[-1]
        assert last == (1, "a_long_code_", "x" * 40)
        corrupt_byte(flash.path("events.bin"), 64 * 3 + 9)  # entry 9 ("n=8", slot 3) damaged
        log = EventLog(flash.path("events.bin"), capacity=5)
        assert [d for _, _, d in log.entries()] == ["n=9", "n=10", "n=11", "x" * 40]
    finally:
        flash.close()


def test_appending_does_not_grow_the_heap():
    if not ON_MICROPYTHON:
        return
    import gc

    flash = Flash()
    try:
        store = Store(flash.path("log"), batch_records=32, segment_records=256)
        enc = encounter(1)
        for _ in range(64):
            store.append(enc)
        store.commit()
        gc.collect()
        before = gc.mem_alloc()
        for _ in range(600):
            store.append(enc)
        store.commit()
        for _ in store.read(1):
            pass
        gc.collect()
        assert gc.mem_alloc() - before < 512, gc.mem_alloc() - before
    finally:
        flash.close()


def test_a_full_flash_drops_acknowledged_records_first_and_never_stops_logging():
    # 32 blocks of littlefs (128 KiB) hold far fewer than the 6,000 records written; on CPython
    # the same policy runs against a cap of 8 segments.
    flash = Flash(blocks=32)
    try:
        cap = None if ON_MICROPYTHON else 8
        store = Store(flash.path("log"), batch_records=50, segment_records=100, max_segments=cap)
        for n in range(400):
            store.append(encounter(n))
        store.commit()
        assert store.stats()["dropped_unacked"] == 0
        store.ack(400)
        for n in range(400, 6000):
            store.append(encounter(n))
            if n % 300 == 0:
                store.commit()
        store.commit()
        stats = store.stats()
        assert stats["dropped_acked"] == 400  # every acknowledged record went first
        assert stats["dropped_unacked"] > 0
        assert stats["records"] + stats["dropped_acked"] + stats["dropped_unacked"] == 6000
        expected = store.oldest_seq
        for seq, buf in store.read(1):  # streamed: the heap is small
            assert seq == expected
            expected += 1
        assert expected == 6001 and records.decode(6000, buf) == encounter(5999)  # newest kept
        assert store.pending() == 6001 - store.oldest_seq
        flash.power_cycle()
        store = Store(flash.path("log"), batch_records=50, segment_records=100, max_segments=cap)
        assert store.stats()["dropped_unacked"] == stats["dropped_unacked"]  # the loss is on record
        assert store.append(encounter(1)) == 6001
    finally:
        flash.close()


def test_a_flash_filled_by_other_files_still_takes_new_records():
    if not ON_MICROPYTHON:
        return  # needs a filesystem that really runs out
    flash = Flash(blocks=32)
    try:
        store = Store(flash.path("log"), batch_records=20, segment_records=100)
        for n in range(250):
            store.append(encounter(n))
        store.commit()
        junk = bytes(2048)
        n = 0
        try:
            while True:  # other files take every free block
                with open(flash.path("junk%d" % n), "wb") as f:
                    f.write(junk)
                n += 1
        except OSError:
            pass  # ENOSPC: the chip is full
        assert store.stats()["bytes_free"] < 3 * 4096
        for n in range(250, 400):
            store.append(encounter(n))
        store.commit()  # never raises
        last = None
        for last, buf in store.read(1):
            records.decode(last, buf)
        assert last == store.committed_seq and store.committed_seq > 250
        stats = store.stats()
        assert stats["records"] + stats["dropped_unacked"] + stats["lost_batch"] == 400
        assert stats["dropped_unacked"] > 0
    finally:
        flash.close()


def fill_with_junk(flash):
    junk = bytes(2048)
    n = 0
    try:
        while True:
            with open(flash.path("junk%d" % n), "wb") as f:
                f.write(junk)
            n += 1
    except OSError:
        pass  # ENOSPC: the chip is full
    return n


def test_a_token_booting_on_a_full_chip_keeps_running_and_logs_once_space_returns():
    if not ON_MICROPYTHON:
        return  # needs a filesystem that really runs out
    flash = Flash(blocks=24)
    try:
        junk_files = fill_with_junk(flash)
        events = EventLog(flash.path("events.bin"), capacity=4)  # may not fit either: never raises
        store = Store(flash.path("log"), batch_records=10, segment_records=50, events=events)
        for n in range(25):
            store.append(encounter(n))
        assert store.commit() < 25  # no room: not all could be written, nothing raised
        assert store.stats()["lost_batch"] > 0
        for n in range(junk_files):  # a technician frees space (or retention does)
            os.remove(flash.path("junk%d" % n))
        seq = store.append(encounter(99))
        assert store.commit() == 1
        assert read_all(store, seq) == [(seq, encounter(99))]
        flash.power_cycle()
        assert read_all(Store(flash.path("log")), seq) == [(seq, encounter(99))]
    finally:
        flash.close()


class TornWriteStore(Store):
    # A filesystem that is not atomic (a host disk, FAT): the next append stops midway, with
    # whole records and half of one on the medium, and reports an I/O error.
    tear_next = False

    def _write_tail(self, start, count):
        if not self.tear_next:
            return Store._write_tail(self, start, count)
        self.tear_next = False
        whole = count // 2
        with open(self._path(self._firsts[-1]), "ab") as f:
            f.write(self._batch_view[start * 32:(start + whole) * 32 + 13])
        raise OSError(5, "EIO")


def test_a_write_torn_midway_continues_in_a_new_segment_without_reusing_seqs():
    flash = Flash()
    try:
        store = TornWriteStore(flash.path("log"), batch_records=10, segment_records=100)
        for n in range(10):
            store.append(encounter(n))
        store.commit()
        for n in range(10, 20):
            store.append(encounter(n))
        store.tear_next = True
        assert store.commit() == 10  # retried after the error: all written
        assert read_all(store) == [(seq, encounter(seq - 1)) for seq in range(1, 21)]
        flash.power_cycle()
        store = Store(flash.path("log"), batch_records=10, segment_records=100)
        assert read_all(store) == [(seq, encounter(seq - 1)) for seq in range(1, 21)]  # no seq twice
        assert store.append(encounter(20)) == 21
    finally:
        flash.close()
