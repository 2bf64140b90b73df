# Encounter aggregation: many sightings of one RPI become one 32-byte record.
#
# A scan window hears each nearby advertiser ~16 times (4 s / 250 ms) and the same RPI again in
# the next windows for up to 10 minutes. Storing sightings would fill the flash in days; one
# record per RPI per interval keeps what matching and risk scoring need: when (first seen),
# how long (duration), how often heard (distinct scan windows) and how close (RSSI max, mean).
#
# An open encounter closes, and is handed to `on_close(records.Encounter)`, when
# - the RPI has not been heard for `gap_s` seconds (the advertiser left, or rotated its RPI);
# - our 10-minute interval (ENIN) changes: a record never spans two intervals, so its
#   first_seen pins the interval that the service matches against, within a drift tolerance;
# - the table of `max_open` encounters is full and a new RPI arrives: the least recently heard
#   one is closed early with FLAG_EVICTED (a crowd bigger than the table loses detail, never
#   the fact that someone was there);
# - the token clock jumps backwards (a host corrected it) or becomes set: times before and
#   after do not belong in one record;
# - close_all() (before a sync dump, a reconfiguration, a power-down).
#
# RAM is bounded by `max_open` and allocated up front: one slot per open encounter in parallel
# lists, plus a dict RPI -> slot of the same bound. Times are kept as (ENIN, seconds into the
# interval) so every stored value is a small int, which MicroPython keeps without allocating
# (unix seconds exceed the 31-bit small-int range of 32-bit ports).
#
# Sightings with a wrong-size RPI/AEM or an RSSI outside -127..20 dBm (127 is HCI's "not
# available") are ignored and counted in `rejected`.
#
# A burst token deep-sleeps between wakes and loses its RAM: snapshot() packs the open
# encounters (SNAPSHOT_SLOT_BYTES each) for the RTC memory that survives the sleep, and
# restore() reopens them after the wake, so a contact heard across many wakes stays one record.
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

from tokenfw.records import FLAG_CLOCK_UNSET, FLAG_EVICTED, Encounter

_INTERVAL_S = const(600)
_RSSI_MIN = const(-127)
_RSSI_MAX = const(20)
# rpi, aem, enin, first, last, scans, scan_id, rssi_max, rssi_sum, count, flags
_SLOT_FORMAT = "<16s4sIHHHIbiHB"
SNAPSHOT_SLOT_BYTES = struct.calcsize(_SLOT_FORMAT)


class Aggregator:
    """Merges sightings per RPI into Encounter records (see module comment).

    `clock_set` (attribute, also a constructor argument): False while the token clock was never
    set; encounters opened then carry FLAG_CLOCK_UNSET.
    """

    def __init__(self, gap_s=120, max_open=48, on_close=None, clock_set=True):
        if gap_s < 1 or max_open < 1:
            raise ValueError("gap_s and max_open must be at least 1")
        self.gap_s = int(gap_s)
        self.max_open = int(max_open)
        self.on_close = on_close
        self.clock_set = clock_set
        n = self.max_open
        self._index = {}  # rpi bytes -> slot
        # Grow the index to its full size now: a dict that grows later needs one contiguous
        # block when the heap is most fragmented (a crowd arriving), and MicroPython never
        # shrinks a dict, so this is the only allocation it ever makes.
        for slot in range(max_open):
            self._index[slot] = slot
        for slot in range(max_open):
            del self._index[slot]
        self._rpi = [None] * n  # None marks a free slot
        self._aem = [None] * n
        self._enin = [0] * n
        self._first = [0] * n  # seconds into the interval, 0..599
        self._last = [0] * n
        self._scans = [0] * n
        self._scan_id = [0] * n
        self._rssi_max = [0] * n
        self._rssi_sum = [0] * n
        self._count = [0] * n
        self._flags = [0] * n
        self.opened = 0
        self.closed = 0
        self.evicted = 0
        self.rejected = 0

    def open_count(self):
        return len(self._index)

    def sighting(self, rpi, aem, rssi, now, scan_id):
        """One report of `rpi`/`aem` at `rssi` dBm, token time `now` (unix s), during scan
        window `scan_id` (any value that changes between windows)."""
        if len(rpi) != 16 or len(aem) != 4 or not _RSSI_MIN <= rssi <= _RSSI_MAX:
            self.rejected += 1
            return
        if type(rpi) is not bytes:
            rpi = bytes(rpi)  # dict key: a bytearray or memoryview is not hashable
        rssi = int(rssi)
        now = int(now)
        enin = now // _INTERVAL_S
        offset = now - enin * _INTERVAL_S
        flags = 0 if self.clock_set else FLAG_CLOCK_UNSET
        slot = self._index.get(rpi)
        if slot is not None:
            elapsed = offset - self._last[slot]
            if (self._enin[slot] != enin or elapsed < 0 or elapsed >= self.gap_s
                    or self._flags[slot] & FLAG_CLOCK_UNSET != flags):
                self._close(slot, 0)
                slot = None
        if slot is None:
            slot = self._free_slot()
            self._index[rpi] = slot
            self._rpi[slot] = rpi
            self._aem[slot] = bytes(aem)
            self._enin[slot] = enin
            self._first[slot] = offset
            self._last[slot] = offset
            self._scans[slot] = 1
            self._scan_id[slot] = scan_id
            self._rssi_max[slot] = rssi
            self._rssi_sum[slot] = rssi
            self._count[slot] = 1
            self._flags[slot] = flags
            self.opened += 1
            return
        self._last[slot] = offset
        if scan_id != self._scan_id[slot]:
            self._scan_id[slot] = scan_id
            self._scans[slot] += 1
        if rssi > self._rssi_max[slot]:
            self._rssi_max[slot] = rssi
        self._rssi_sum[slot] += rssi
        self._count[slot] += 1

    def tick(self, now):
        """Close what is due at token time `now`: unheard for gap_s, from an earlier interval,
        from before a backwards clock jump, or opened under a different clock state."""
        if not self._index:
            return
        now = int(now)
        enin = now // _INTERVAL_S
        offset = now - enin * _INTERVAL_S
        unset = 0 if self.clock_set else FLAG_CLOCK_UNSET
        for slot in range(self.max_open):
            if self._rpi[slot] is None:
                continue
            elapsed = offset - self._last[slot]
            if (self._enin[slot] != enin or elapsed < 0 or elapsed >= self.gap_s
                    or self._flags[slot] & FLAG_CLOCK_UNSET != unset):
                self._close(slot, 0)

    def close_all(self, now=None):
        """Close every open encounter, oldest first (so the log stays in time order)."""
        while self._index:
            oldest = -1
            for slot in range(self.max_open):
                if self._rpi[slot] is not None and (oldest < 0 or self._before(slot, oldest, self._first)):
                    oldest = slot
            self._close(oldest, 0)

    # -- across a deep sleep ---------------------------------------------------------------------
    def snapshot(self):
        """The open encounters as bytes (len = open_count() * SNAPSHOT_SLOT_BYTES)."""
        parts = []
        for slot in range(self.max_open):
            if self._rpi[slot] is not None:
                parts.append(struct.pack(
                    _SLOT_FORMAT, self._rpi[slot], self._aem[slot], self._enin[slot], self._first[slot],
                    self._last[slot], self._scans[slot], self._scan_id[slot], self._rssi_max[slot],
                    self._rssi_sum[slot], self._count[slot], self._flags[slot]))
        return b"".join(parts)

    def restore(self, data):
        """Reopen the encounters of a snapshot(); ValueError (nothing restored) when `data` is
        not one, or holds more than this table or a slot that could not have been made."""
        size = SNAPSHOT_SLOT_BYTES
        if len(data) % size or len(data) // size > self.max_open or self._index:
            raise ValueError("not a snapshot of open encounters")
        slots = [struct.unpack_from(_SLOT_FORMAT, data, i * size) for i in range(len(data) // size)]
        for rpi, _, _, first, last, scans, _, rssi_max, _, count, _ in slots:
            if (rpi in self._index or not first <= last < _INTERVAL_S or not scans or not count
                    or not _RSSI_MIN <= rssi_max <= _RSSI_MAX):
                self._index.clear()
                raise ValueError("snapshot holds an impossible encounter")
            self._index[rpi] = None  # duplicate check; slots assigned below
        self._index.clear()
        for slot, fields in enumerate(slots):
            (self._rpi[slot], self._aem[slot], self._enin[slot], self._first[slot], self._last[slot],
             self._scans[slot], self._scan_id[slot], self._rssi_max[slot], self._rssi_sum[slot],
             self._count[slot], self._flags[slot]) = fields
            self._index[fields[0]] = slot

    # -- internals ----------------------------------------------------------------------------
    def _before(self, a, b, offsets):
        return self._enin[a] < self._enin[b] or (self._enin[a] == self._enin[b] and offsets[a] < offsets[b])

    def _free_slot(self):
        lru = -1
        for slot in range(self.max_open):
            if self._rpi[slot] is None:
                return slot
            if lru < 0 or self._before(slot, lru, self._last):
                lru = slot
        self.evicted += 1
        self._close(lru, FLAG_EVICTED)
        return lru

    def _close(self, slot, extra_flags):
        # Free the slot before calling out, so a failing on_close (a full flash raising) leaves
        # the table consistent; the record is lost, the aggregator keeps working.
        count = self._count[slot]
        encounter = Encounter(
            self._rpi[slot],
            self._aem[slot],
            self._enin[slot] * _INTERVAL_S + self._first[slot],
            self._last[slot] - self._first[slot],
            self._scans[slot],
            self._rssi_max[slot],
            (2 * self._rssi_sum[slot] + count) // (2 * count),  # mean, halves round up
            self._flags[slot] | extra_flags,
        )
        del self._index[self._rpi[slot]]
        self._rpi[slot] = None
        self._aem[slot] = None
        self.closed += 1
        if self.on_close is not None:
            self.on_close(encounter)
