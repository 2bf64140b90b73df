# The token's flash log: encounter records in append-only segment files on littlefs, the
# host's acknowledgement cursor, the token's own TEKs and its event log. Layout, commit and
# recovery rules, retention and the full-flash policy: docs/storage.md.
#
#   /log/0000000001.seg   records 1..1022, 32 bytes each (tokenfw.records), seq = name + index
#   /log/0000001023.seg   the newest segment: appends go here
#   /log/state.json       acknowledgement cursor and loss counters (written atomically)
#
# Power-cut rules (littlefs commits a file's new size atomically when it is closed):
# - a record is committed once commit() returns; until then it sits in a bounded RAM batch and a
#   power cut loses at most that batch;
# - a segment only grows; a sequence number is never reused for another record once committed:
#   the newest segment is never deleted before its successor exists, and a torn tail (size not a
#   multiple of 32, possible on a non-atomic filesystem) is skipped, never overwritten;
# - reading never raises for bad flash contents: corrupt records are skipped and counted.
import os
import struct

from tokenfw import config, records

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_RECORD = const(32)
# 1022 records fill exactly 8 littlefs blocks of 4096 bytes: block n > 0 of a file starts with
# 4 * (ctz(n) + 1) bytes of skip-list pointers, so 8 blocks carry 32724 bytes of data.
SEGMENT_RECORDS = const(1022)
BATCH_RECORDS = const(64)
RETENTION_S = const(21 * 24 * 3600)
# Blocks kept free beyond one full segment: copy-on-write of a file's last block, metadata
# compaction, and the small files (config, keys, events) that must stay writable.
RESERVE_BLOCKS = const(6)
_ENOSPC = const(28)
_ENOENT = const(2)
# A `now` before 2020-01-01 means the token clock was never set: retention cannot judge age.
_EARLIEST_CLOCK = const(1577836800)
_SUFFIX = ".seg"
_NAME_DIGITS = const(10)
_TAIL_PROBE = const(8)  # records read back from a segment's end to find its newest time

# Event codes the store writes to its EventLog (if it has one).
EV_TORN_TAIL = "torn_tail"
EV_CORRUPT = "corrupt"
EV_DROPPED = "full_drop"
EV_EXPIRED = "expired"
EV_WRITE_FAIL = "write_fail"


def _errno(error):
    code = getattr(error, "errno", None)
    if code is None and error.args:
        code = error.args[0]
    return code


def _file_size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _names(root):
    # Names in `root` without building a list where the port can iterate (MicroPython). A
    # directory that could not be made (full flash at boot) has no names.
    try:
        entries = os.ilistdir(root) if hasattr(os, "ilistdir") else os.listdir(root)
    except OSError:
        return
    for entry in entries:
        yield entry if isinstance(entry, str) else entry[0]


def _mkdirs(path):
    built = ""
    for part in path.split("/"):
        if not part:
            continue
        built += "/" + part if (built or path.startswith("/")) else part
        try:
            os.mkdir(built)
        except OSError:
            pass


class Store:
    # The encounter log. All sequence numbers are u32 and start at 1; 0 means "none".
    #
    # append(enc) -> seq      buffer one encounter (auto-commits when the batch is full)
    # commit() -> n           make the buffered batch durable; returns records written
    # read(from_seq, limit)   yields (seq, 32 record bytes) of committed records, corrupt skipped
    # ack(upto_seq) -> seq    the host stored everything up to upto_seq (persisted atomically)
    # acked_seq, next_seq, oldest_seq, pending(), enforce_retention(now), stats(), wipe()

    def __init__(self, root="/log", batch_records=BATCH_RECORDS, segment_records=SEGMENT_RECORDS,
                 max_segments=None, reserve_blocks=RESERVE_BLOCKS, events=None):
        if batch_records < 1 or segment_records < 1:
            raise ValueError("batch and segment sizes must be positive")
        self.root = root.rstrip("/") or "/"
        self.segment_records = segment_records
        self.max_segments = max_segments  # optional cap (tests, or a store sharing a big disk)
        self.reserve_blocks = reserve_blocks
        self.events = events
        self._batch = bytearray(batch_records * _RECORD)
        self._batch_view = memoryview(self._batch)
        self._batch_capacity = batch_records
        self._batched = 0
        self._probe = bytearray(_RECORD)
        # Segments, oldest first: first seq and committed record count. A 2 MiB flash holds at
        # most ~64 full segments, so these lists stay small.
        self._firsts = []
        self._counts = []
        self.corrupt_skipped = 0
        self._state = {}
        _mkdirs(self.root)
        self._mount()

    # ---- mount-time recovery -------------------------------------------------------------

    def _path(self, first):
        return "%s/%010d%s" % (self.root, first, _SUFFIX)

    def _state_path(self):
        return self.root + "/state.json"

    def _mount(self):
        state = config.load(self._state_path(), None)
        if not isinstance(state, dict):
            state = {}
        for key in ("acked_seq", "floor_seq", "dropped_acked", "dropped_unacked", "expired",
                    "lost_batch"):
            value = state.get(key, 0)
            state[key] = value if isinstance(value, int) and value >= 0 else 0
        self._state = state
        firsts = []
        for name in _names(self.root):
            if len(name) == _NAME_DIGITS + len(_SUFFIX) and name.endswith(_SUFFIX):
                digits = name[:_NAME_DIGITS]
                if digits.isdigit():
                    firsts.append(int(digits))
            elif name.endswith(".tmp"):
                try:  # a temporary file left by a power cut during an atomic save
                    os.remove(self.root + "/" + name)
                except OSError:
                    pass
        firsts.sort()
        counts = []
        for index in range(len(firsts)):
            size = _file_size(self._path(firsts[index]))
            count = size // _RECORD if size > 0 else 0
            if index + 1 < len(firsts):
                # Records past the next segment's first seq were rewritten there after a failed
                # write; the copies here are ignored so that no seq is read twice.
                count = min(count, firsts[index + 1] - firsts[index])
            counts.append(count)
        self._firsts = firsts
        self._counts = counts
        if not firsts:
            start = max(1, self._state["acked_seq"] + 1, self._state["floor_seq"])
            self._new_segment(start, at_mount=True)
            return
        last = firsts[-1]
        size = _file_size(self._path(last))
        if size % _RECORD:
            # Torn tail: a partial record. Its seq is skipped (never reused) and appends go to a
            # new segment, so positions in the old one stay as they were.
            self.corrupt_skipped += 1
            self._log(EV_TORN_TAIL, "seg %d +%d bytes" % (last, size % _RECORD))
            self._new_segment(last + size // _RECORD + 1, at_mount=True)
        floor = max(self._state["acked_seq"] + 1, self._state["floor_seq"])
        if self.next_seq < floor:
            self._new_segment(floor, at_mount=True)

    def _new_segment(self, first, at_mount=False):
        # Create the empty segment whose first record will have seq `first` (durably, before
        # any older segment may be deleted: its name carries the sequence forward). At mount a
        # failure (full or failing flash) must not stop the token from booting: the segment is
        # then created by its first commit.
        try:
            with open(self._path(first), "wb"):
                pass
        except OSError:
            if not at_mount:
                raise
            self._log(EV_WRITE_FAIL, "new seg %d" % first)
        self._firsts.append(first)
        self._counts.append(0)

    def _log(self, code, detail):
        if self.events is not None:
            try:
                self.events.log(code, detail)
            except Exception:  # the event log must never stop the encounter log
                pass

    # ---- sequence numbers ----------------------------------------------------------------

    @property
    def next_seq(self):
        # Seq the next appended record gets (uncommitted ones included).
        return self._firsts[-1] + self._counts[-1] + self._batched

    @property
    def committed_seq(self):
        # Highest committed seq (0 when none was ever committed).
        return self._firsts[-1] + self._counts[-1] - 1

    @property
    def oldest_seq(self):
        # Seq of the oldest record still stored (== next committed seq when the log is empty).
        for index in range(len(self._firsts)):
            if self._counts[index]:
                return self._firsts[index]
        return self.committed_seq + 1

    @property
    def acked_seq(self):
        return self._state["acked_seq"]

    def pending(self):
        # Committed records the host has not acknowledged yet.
        acked = self._state["acked_seq"]
        total = 0
        for index in range(len(self._firsts)):
            first = self._firsts[index]
            end = first + self._counts[index]
            if end > acked + 1:
                total += end - max(first, acked + 1)
        return total

    def records(self):
        # Committed records stored (corrupt ones included: their space is still used).
        total = 0
        for count in self._counts:
            total += count
        return total

    # ---- writing -------------------------------------------------------------------------

    def append(self, enc):
        # Buffer encounter `enc`; returns its seq. Commits first when the batch is full.
        if self._batched == self._batch_capacity:
            self.commit()
        seq = self.next_seq
        offset = self._batched * _RECORD
        self._batch[offset:offset + _RECORD] = records.encode(seq, enc)
        self._batched += 1
        return seq

    @property
    def buffered(self):
        return self._batched

    def commit(self):
        # Write the buffered batch; when this returns the records survive a power cut.
        #
        # Never stops logging: a full flash drops the oldest segments (acknowledged ones are the
        # oldest) and retries; if even that fails the batch is dropped, counted and logged.
        # Returns the number of records written.
        total = self._batched
        done = 0
        failures = 0
        while done < total:
            try:
                if self._counts[-1] >= self.segment_records:
                    self._rotate()
                take = min(self.segment_records - self._counts[-1], total - done)
                self._write_tail(done, take)
            except OSError as error:
                failures += 1
                try:
                    retry = self._recover_write(error, failures)
                except OSError:
                    retry = False
                if not retry:
                    lost = total - done
                    self._state["lost_batch"] += lost
                    self._log(EV_WRITE_FAIL, "lost %d recs" % lost)
                    try:
                        self._save_state()
                    except OSError:
                        pass
                    break
                continue
            done += take
        self._batched = 0
        return done

    def _write_tail(self, start, count):
        first = self._firsts[-1]
        with open(self._path(first), "ab") as f:
            f.write(self._batch_view[start * _RECORD:(start + count) * _RECORD])
        self._counts[-1] += count

    def _recover_write(self, error, failures):
        # After a failed append: find what reached the flash, make room, and say whether a
        # retry can succeed. The batch records keep their seqs (their checks bind them).
        last = self._firsts[-1]
        size = _file_size(self._path(last))
        if size < 0:
            _mkdirs(self.root)  # the log directory could not be made at boot (full flash)
        expected = self._counts[-1] * _RECORD
        if size != expected and size >= 0:
            # Part of the batch landed (non-atomic filesystem): continue in a new segment that
            # starts at the first unwritten record, so the batch's seqs still match positions.
            # A segment with nothing committed is simply emptied again.
            if self._counts[-1]:
                self._new_segment(last + self._counts[-1])
            else:
                with open(self._path(last), "wb"):
                    pass
        if failures > 3:
            return False
        if _errno(error) == _ENOSPC:
            return self._drop_oldest(forced=True)
        return failures <= 1

    def _rotate(self):
        self._make_room()
        self._new_segment(self._firsts[-1] + self._counts[-1])
        if self.max_segments is not None:
            while len(self._firsts) > self.max_segments:
                self._drop_oldest()

    def _make_room(self):
        # Before a new segment: drop oldest segments until a full segment fits.
        needed = self._segment_blocks() + self.reserve_blocks
        while len(self._firsts) > 1:
            free = self._free_blocks()
            if free is None or free >= needed:
                return
            if not self._drop_oldest():
                return

    def _segment_blocks(self):
        size = self._block_size()
        data = self.segment_records * _RECORD
        # each block after the first loses up to 16 bytes to skip-list pointers
        return (data + size - 17) // (size - 16) + 1

    def _block_size(self):
        try:
            return os.statvfs(self.root)[0] or 4096
        except (OSError, AttributeError):
            return 4096

    def _free_blocks(self):
        try:
            info = os.statvfs(self.root)
        except (OSError, AttributeError):
            return None
        # littlefs can count more blocks in use than exist when it is completely full (blocks
        # held by an in-flight copy): the unsigned difference then wraps.
        return info[3] if info[3] <= info[2] else 0

    def _drop_oldest(self, forced=False):
        # Delete the oldest segment (counting its records). The newest is only deleted after a
        # successor exists; returns False when nothing could be dropped.
        if len(self._firsts) == 1:
            if not forced or self._counts[0] == 0:
                return False
            self._new_segment(self._firsts[0] + self._counts[0])
        first = self._firsts[0]
        count = self._counts[0]
        acked = self._state["acked_seq"]
        acked_count = max(0, min(count, acked + 1 - first))
        self._remove_segment(0)
        self._count_loss(count, count - acked_count, acked_count)
        self._log(EV_DROPPED, "seg %d: %d recs, %d unacked" % (first, count, count - acked_count))
        return True

    def _remove_segment(self, index):
        try:
            os.remove(self._path(self._firsts[index]))
        except OSError:
            pass
        self._firsts.pop(index)
        self._counts.pop(index)

    def _count_loss(self, total, unacked, acked=0, expired=False):
        state = self._state
        if expired:
            state["expired"] += total
        else:
            state["dropped_unacked"] += unacked
            state["dropped_acked"] += acked
        state["floor_seq"] = max(state["floor_seq"], self.committed_seq + 1)
        self._save_state()

    def _save_state(self):
        try:
            config.save(self._state_path(), self._state)
        except OSError as error:
            if _errno(error) != _ENOSPC or not self._drop_oldest():
                raise
            config.save(self._state_path(), self._state)

    # ---- reading -------------------------------------------------------------------------

    def read(self, from_seq=1, limit=None):
        # Yield (seq, record bytes) for committed records with seq >= from_seq, oldest first,
        # at most `limit` of them. Corrupt records are skipped and counted, never raised.
        remaining = limit
        buf = self._probe
        index = 0
        corrupt = 0
        # snapshot: what later commits add is not part of this read
        firsts = list(self._firsts)
        counts = list(self._counts)
        while index < len(firsts) and (remaining is None or remaining > 0):
            first = firsts[index]
            count = counts[index]
            index += 1
            if first + count <= from_seq or count == 0:
                continue
            position = max(0, from_seq - first)
            try:
                f = open(self._path(first), "rb")
            except OSError:
                continue  # dropped meanwhile
            try:
                f.seek(position * _RECORD)
                while position < count and (remaining is None or remaining > 0):
                    seq = first + position
                    position += 1
                    if f.readinto(buf) != _RECORD:
                        corrupt += count - position + 1
                        break
                    if not records.is_intact(seq, buf):
                        corrupt += 1
                        continue
                    if remaining is not None:
                        remaining -= 1
                    yield seq, bytes(buf)
            finally:
                f.close()
        if corrupt:
            self.corrupt_skipped += corrupt
            self._log(EV_CORRUPT, "%d skipped from %d" % (corrupt, from_seq))

    # ---- acknowledgement -----------------------------------------------------------------

    def ack(self, upto_seq):
        # The host has durably stored every record up to `upto_seq`. The cursor only moves
        # forward and never past the committed log. Returns the cursor.
        if not isinstance(upto_seq, int) or upto_seq < 0:
            raise ValueError("ack needs a non-negative sequence number")
        target = min(upto_seq, self.committed_seq)
        if target > self._state["acked_seq"]:
            self._state["acked_seq"] = target
            self._save_state()
        return self._state["acked_seq"]

    # ---- retention -----------------------------------------------------------------------

    def enforce_retention(self, now, retention_s=RETENTION_S):
        # Delete segments whose newest record is older than the retention period. Records
        # stamped while the clock was unset are never judged (their time is not comparable);
        # a `now` before 2020 means the clock is unset: nothing is deleted. Returns records
        # removed.
        if now is None or now < _EARLIEST_CLOCK:
            return 0
        limit = now - retention_s
        removed = 0
        try:
            removed = self._expire(limit)
        except OSError as error:  # a failing flash: logged; the next call tries again
            self._log(EV_WRITE_FAIL, "retention: %s" % error)
        return removed

    def _expire(self, limit):
        removed = 0
        while self._firsts and self._counts[0]:
            newest = self._newest_time(0)
            if newest is None or newest >= limit:
                break
            first = self._firsts[0]
            count = self._counts[0]
            if len(self._firsts) == 1:
                self._new_segment(first + count)  # carry the sequence forward first
            self._remove_segment(0)
            self._count_loss(count, 0, expired=True)
            self._log(EV_EXPIRED, "seg %d: %d recs" % (first, count))
            removed += count
        return removed

    def _newest_time(self, index):
        # End time (first_seen + duration) of the newest intact, clock-set record among the
        # last few of segment `index`; None when there is none.
        first = self._firsts[index]
        count = self._counts[index]
        buf = self._probe
        newest = None
        try:
            f = open(self._path(first), "rb")
        except OSError:
            return None
        try:
            position = count
            while position > 0 and count - position < _TAIL_PROBE:
                position -= 1
                f.seek(position * _RECORD)
                if f.readinto(buf) != _RECORD or not records.is_intact(first + position, buf):
                    continue
                enc = records.decode(first + position, buf)
                if enc.flags & records.FLAG_CLOCK_UNSET:
                    continue
                end = enc.first_seen + enc.duration_s
                if newest is None or end > newest:
                    newest = end
        finally:
            f.close()
        return newest

    # ---- maintenance ---------------------------------------------------------------------

    def wipe(self):
        # Delete every stored record (buffered ones too). Sequence numbers continue, so a host
        # never confuses a new record with one it already has.
        self._batched = 0
        start = self.committed_seq + 1
        self._new_segment(start)
        while len(self._firsts) > 1:
            self._remove_segment(0)
        state = self._state
        state["acked_seq"] = start - 1
        state["floor_seq"] = max(state["floor_seq"], start)
        self._save_state()

    def stats(self):
        total = free = None
        try:
            info = os.statvfs(self.root)
            total = info[1] * info[2]
            free = info[1] * (info[3] if info[3] <= info[2] else 0)  # see _free_blocks
        except (OSError, AttributeError):
            pass
        state = self._state
        return {
            "bytes_total": total,
            "bytes_free": free,
            "bytes_used": total - free if total is not None else None,
            "records": self.records(),
            "segments": len(self._firsts),
            "buffered": self._batched,
            "pending": self.pending(),
            "next_seq": self.next_seq,
            "oldest_seq": self.oldest_seq,
            "acked_seq": state["acked_seq"],
            "corrupt_skipped": self.corrupt_skipped,
            "dropped_acked": state["dropped_acked"],
            "dropped_unacked": state["dropped_unacked"],
            "expired": state["expired"],
            "lost_batch": state["lost_batch"],
        }

    def close(self):
        self.commit()
