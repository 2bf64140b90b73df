# Encounter aggregation: sightings of one RPI become one record, closed on a gap, at the
# interval boundary, when the table is full, or on a clock change.
import gc

from mptest import raises
from tokenfw import records
from tokenfw.encounters import SNAPSHOT_SLOT_BYTES, Aggregator
from tokenfw.records import FLAG_CLOCK_UNSET, FLAG_EVICTED

T0 = 1767225600  # 2026-01-01T00:00:00Z, the start of an interval
AEM = b"\x01\x02\x03\x04"


def rpi_of(n):
    return bytes((n & 0xFF, n >> 8)) + bytes(14)


def collector(**kwargs):
    closed = []
    return Aggregator(on_close=closed.append, **kwargs), closed


def test_sightings_of_one_rpi_merge_into_one_record():
    agg, closed = collector(gap_s=120, max_open=8)
    rpi = rpi_of(1)
    # three scan windows 60 s apart, a few reports each
    for scan, (t, rssis) in enumerate(((10, (-70, -72, -68)), (70, (-60, -61)), (130, (-80,)))):
        for rssi in rssis:
            agg.sighting(rpi, AEM, rssi, T0 + t, scan + 1)
    agg.tick(T0 + 200)
    assert closed == []  # last heard at 130, gap 120: still open at 200
    agg.tick(T0 + 250)
    assert len(closed) == 1
    enc = closed[0]
    assert enc.rpi == rpi and enc.aem == AEM
    assert enc.first_seen == T0 + 10
    assert enc.duration_s == 120
    assert enc.scans == 3
    assert enc.rssi_max == -60
    assert enc.rssi_mean == -68  # -411 / 6 = -68.5; halves round up, the same on both interpreters
    assert enc.flags == 0
    assert agg.open_count() == 0


def test_a_gap_longer_than_gap_s_starts_a_new_record():
    agg, closed = collector(gap_s=60, max_open=8)
    rpi = rpi_of(2)
    agg.sighting(rpi, AEM, -50, T0 + 0, 1)
    agg.sighting(rpi, AEM, -50, T0 + 30, 2)
    agg.sighting(rpi, AEM, -40, T0 + 90, 3)  # 60 s unheard (no tick ran): closes, reopens
    agg.close_all()
    assert [(e.first_seen - T0, e.duration_s, e.scans) for e in closed] == [(0, 30, 2), (90, 0, 1)]


def test_records_never_span_an_interval_boundary():
    agg, closed = collector(gap_s=300, max_open=8)
    rpi = rpi_of(3)
    agg.sighting(rpi, AEM, -55, T0 + 590, 1)
    agg.sighting(rpi, AEM, -55, T0 + 599, 1)
    agg.sighting(rpi, AEM, -55, T0 + 601, 2)  # next interval: same RPI, new record
    assert len(closed) == 1 and closed[0].first_seen == T0 + 590 and closed[0].duration_s == 9
    agg.sighting(rpi_of(4), AEM, -55, T0 + 650, 2)
    agg.tick(T0 + 1200)  # boundary of the third interval closes both, though within gap_s
    assert len(closed) == 3
    assert agg.open_count() == 0


def test_full_table_evicts_the_least_recently_heard_with_a_flag():
    agg, closed = collector(gap_s=300, max_open=3)
    for n in range(3):
        agg.sighting(rpi_of(n), AEM, -60, T0 + n, 1)
    agg.sighting(rpi_of(0), AEM, -60, T0 + 10, 2)  # 0 heard again: 1 is now least recent
    agg.sighting(rpi_of(9), AEM, -60, T0 + 11, 2)
    assert len(closed) == 1
    assert closed[0].rpi == rpi_of(1) and closed[0].flags & FLAG_EVICTED
    assert agg.evicted == 1 and agg.open_count() == 3
    agg.close_all()
    assert [e.rpi for e in closed[1:]] == [rpi_of(0), rpi_of(2), rpi_of(9)]  # oldest first
    assert not any(e.flags & FLAG_EVICTED for e in closed[1:])


def test_unset_clock_flags_records_and_a_clock_change_splits_them():
    agg, closed = collector(gap_s=120, max_open=4, clock_set=False)
    rpi = rpi_of(5)
    agg.sighting(rpi, AEM, -65, T0 + 5, 1)
    agg.sighting(rpi, AEM, -65, T0 + 20, 2)
    agg.clock_set = True  # a host set the clock
    agg.sighting(rpi, AEM, -65, T0 + 30, 3)
    assert len(closed) == 1 and closed[0].flags == FLAG_CLOCK_UNSET and closed[0].duration_s == 15
    agg.sighting(rpi, AEM, -65, T0 + 10, 4)  # clock moved back by a correction: new record
    agg.close_all()
    assert [(e.first_seen - T0, e.flags) for e in closed] == [(5, FLAG_CLOCK_UNSET), (30, 0), (10, 0)]


def test_tick_closes_records_opened_under_the_other_clock_state():
    agg, closed = collector(gap_s=120, max_open=4, clock_set=False)
    agg.sighting(rpi_of(6), AEM, -65, T0 + 5, 1)
    agg.clock_set = True
    agg.tick(T0 + 6)
    assert len(closed) == 1 and closed[0].flags == FLAG_CLOCK_UNSET


def test_invalid_sightings_are_ignored_and_counted():
    agg, closed = collector(gap_s=120, max_open=4)
    agg.sighting(b"short", AEM, -60, T0, 1)
    agg.sighting(rpi_of(7), b"abc", -60, T0, 1)
    agg.sighting(rpi_of(7), AEM, 127, T0, 1)  # HCI "RSSI not available"
    agg.sighting(rpi_of(7), AEM, -128, T0, 1)
    agg.sighting(rpi_of(7), AEM, 21, T0, 1)
    assert agg.rejected == 5 and agg.open_count() == 0
    agg.sighting(bytearray(rpi_of(7)), memoryview(AEM), -60, T0, 1)  # any buffer type works
    agg.close_all()
    assert closed[0].rpi == rpi_of(7) and type(closed[0].rpi) is bytes
    raises(ValueError, Aggregator, gap_s=0)
    raises(ValueError, Aggregator, max_open=0)


def test_records_survive_the_codec():
    agg, closed = collector(gap_s=120, max_open=4)
    for t in range(0, 100, 5):
        agg.sighting(rpi_of(8), AEM, -90 + t // 10, T0 + t, t // 20)
    agg.close_all()
    buf = records.encode(41, closed[0])
    assert records.decode(41, buf) == closed[0]


def test_failing_on_close_leaves_the_aggregator_working():
    calls = []

    def full_flash(enc):
        calls.append(enc)
        raise OSError(28, "no space")

    agg = Aggregator(gap_s=10, max_open=2, on_close=full_flash)
    agg.sighting(rpi_of(1), AEM, -60, T0, 1)
    raises(OSError, agg.tick, T0 + 50)
    assert agg.open_count() == 0
    agg.sighting(rpi_of(1), AEM, -60, T0 + 60, 2)
    assert agg.open_count() == 1


def test_a_crowd_for_a_day_stays_within_bounded_memory():
    # 200 devices around, 48 open slots, one scan window a minute, one report each per window
    # (MicroPython: the heap in use returns to where it was after the first hour)
    closed = [0]

    def count(enc):
        closed[0] += 1

    agg = Aggregator(gap_s=120, max_open=48, on_close=count)
    rpis = [rpi_of(n) for n in range(200)]
    baseline = None
    for minute in range(24 * 60):
        now = T0 + 60 * minute
        first = (minute * 7) % 200
        for k in range(30):  # 30 of the 200 in range this minute
            agg.sighting(rpis[(first + k) % 200], AEM, -50 - k, now + k, minute)
        agg.tick(now + 40)
        if minute == 60 and hasattr(gc, "mem_alloc"):
            gc.collect()
            baseline = gc.mem_alloc()
    agg.close_all()
    assert agg.open_count() == 0
    assert closed[0] == agg.closed and agg.closed == agg.opened
    assert closed[0] >= 24 * 6 * 30  # at least one record per device per interval
    if baseline is not None:
        gc.collect()
        assert gc.mem_alloc() <= baseline + 1024, (gc.mem_alloc(), baseline)


def test_open_encounters_survive_a_deep_sleep_through_a_snapshot():
    # Before the sleep: two RPIs heard in wakes 60 s apart, one of them twice.
    before, closed_before = collector(gap_s=600, max_open=8)
    before.sighting(rpi_of(1), AEM, -60, T0 + 0, 1)
    before.sighting(rpi_of(2), AEM, -75, T0 + 1, 1)
    before.sighting(rpi_of(1), AEM, -64, T0 + 60, 2)
    data = before.snapshot()
    assert len(data) == 2 * SNAPSHOT_SLOT_BYTES and closed_before == []
    # After the wake: a fresh aggregator (RAM was lost), restored, hears RPI 1 again.
    after, closed = collector(gap_s=600, max_open=8)
    after.restore(data)
    assert after.open_count() == 2
    after.sighting(rpi_of(1), AEM, -62, T0 + 120, 3)
    after.close_all()
    by_rpi = {enc.rpi: enc for enc in closed}
    one = by_rpi[rpi_of(1)]
    assert one.first_seen == T0 and one.duration_s == 120 and one.scans == 3
    assert one.rssi_max == -60 and one.rssi_mean == -62
    assert by_rpi[rpi_of(2)].first_seen == T0 + 1


def test_a_damaged_snapshot_restores_nothing():
    agg, _ = collector(gap_s=600, max_open=2)
    agg.sighting(rpi_of(1), AEM, -60, T0, 1)
    good = agg.snapshot()
    fresh, _ = collector(gap_s=600, max_open=2)
    for bad in (good[:-1], good + good, good * 3, bytes(len(good))):
        raises(ValueError, fresh.restore, bad)
        assert fresh.open_count() == 0
    fresh.restore(b"")
    assert fresh.open_count() == 0
