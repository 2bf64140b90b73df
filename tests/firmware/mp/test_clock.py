# The token's wall clock: unix seconds on ports with either epoch, "never set" detection,
# and the record of when and by how much a host last corrected it (persisted on flash).
import time

from mptest import raises, remove_tree, scratch_dir
from tokenfw import clock as clockmod
from tokenfw.clock import MIN_PLAUSIBLE_UNIX, Clock, SystemRtc

T_2026 = 1767225600  # 2026-01-01T00:00:00Z
EPOCH_2000 = 946684800


class CountingRtc:
    """An RTC as a board has one: seconds in the port's epoch, settable; starts where a fresh
    chip starts (port time `start`)."""

    def __init__(self, start=0):
        self.port_s = start
        self.writes = 0

    def seconds(self):
        return self.port_s

    def set_seconds(self, seconds):
        self.port_s = seconds
        self.writes += 1

    def ticks_ms(self):
        return (self.port_s * 1000) & 0x3FFFFFFF


def with_dir(fn):
    path = scratch_dir("clock")
    try:
        fn(path)
    finally:
        remove_tree(path)


def test_this_port_epoch_is_detected():
    expected = 0 if time.gmtime(0)[0] == 1970 else EPOCH_2000
    assert clockmod.port_epoch_offset() == expected
    assert clockmod.port_epoch_offset(1970) == 0
    assert clockmod.port_epoch_offset(2000) == EPOCH_2000
    raises(ValueError, clockmod.port_epoch_offset, 1980)


def test_fresh_token_on_a_2000_epoch_port_is_unset_and_counts_from_2000():
    def run(path):
        rtc = CountingRtc(start=3600)  # an hour after power-up on an ESP32
        clock = Clock(rtc, path + "/clock.json", epoch_year=2000)
        assert clock.now() == EPOCH_2000 + 3600
        assert not clock.is_set()
        assert clock.last_set_at is None and clock.last_correction_s is None
    with_dir(run)


def test_set_converts_to_the_port_epoch_and_reports_the_correction():
    for epoch_year, offset in ((1970, 0), (2000, EPOCH_2000)):
        def run(path):
            rtc = CountingRtc(start=T_2026 - offset - 42)  # token 42 s slow
            clock = Clock(rtc, path + "/clock.json", epoch_year=epoch_year)
            assert not clock.is_set()  # plausible time, but no host ever set it
            assert clock.set(T_2026) == 42
            assert rtc.port_s == T_2026 - offset  # the RTC speaks its own epoch
            assert clock.now() == T_2026 and clock.is_set()
            assert (clock.last_set_at, clock.last_correction_s, clock.set_count) == (T_2026, 42, 1)
            rtc.port_s += 3600 + 3  # an hour later the token runs 3 s fast
            assert clock.set(T_2026 + 3600) == -3
            assert clock.set_count == 2
        with_dir(run)


def test_what_was_set_survives_a_reboot():
    def run(path):
        rtc = CountingRtc(start=5)
        Clock(rtc, path + "/clock.json", epoch_year=2000).set(T_2026)
        again = Clock(rtc, path + "/clock.json", epoch_year=2000)
        assert again.is_set()
        assert again.last_set_at == T_2026
        assert again.last_correction_s == T_2026 - (EPOCH_2000 + 5)
        assert again.status()["set"] is True
    with_dir(run)


def test_a_power_loss_that_reset_the_rtc_means_unset_again():
    def run(path):
        rtc = CountingRtc()
        Clock(rtc, path + "/clock.json", epoch_year=2000).set(T_2026)
        rtc.port_s = 7  # battery ran flat: the RTC restarts at 2000-01-01
        after = Clock(rtc, path + "/clock.json", epoch_year=2000)
        assert not after.is_set()
        assert after.last_set_at == T_2026  # the history is still known
        assert after.now() < MIN_PLAUSIBLE_UNIX
    with_dir(run)


def test_implausible_times_are_refused_and_change_nothing():
    def run(path):
        rtc = CountingRtc(start=100)
        clock = Clock(rtc, path + "/clock.json", epoch_year=2000)
        for bad in (0, MIN_PLAUSIBLE_UNIX - 1, 1 << 32, -5, 1767225600.5, "1767225600", None, True):
            raises(ValueError, clock.set, bad)
        assert rtc.writes == 0 and rtc.port_s == 100 and not clock.is_set()
        import os
        assert "clock.json" not in os.listdir(path)
    with_dir(run)


def test_a_corrupted_state_file_reads_as_never_set():
    def run(path):
        with open(path + "/clock.json", "w") as f:
            f.write('{"last_set_at": 17672')  # torn write
        clock = Clock(CountingRtc(start=T_2026), path + "/clock.json")
        assert not clock.is_set() and clock.last_set_at is None
        with open(path + "/clock.json", "w") as f:
            f.write('{"last_set_at": "yesterday", "last_correction_s": [1]}')
        clock = Clock(CountingRtc(start=T_2026), path + "/clock.json")
        assert not clock.is_set() and clock.last_correction_s is None
        assert clock.set(T_2026 + 10) == 10  # and it can be set again
    with_dir(run)


def test_system_rtc_reads_and_sets_the_process_clock_of_this_port():
    rtc = SystemRtc()
    before = rtc.seconds()
    offset = clockmod.port_epoch_offset()
    assert abs(before + offset - int(time.time()) - offset) <= 2
    rtc.set_seconds(T_2026 - offset)
    assert abs(rtc.seconds() - (T_2026 - offset)) <= 1
    a = rtc.ticks_ms()
    assert isinstance(a, int) and a >= 0


class DriftingRtc(CountingRtc):
    """An RTC whose crystal runs `ppm` fast: `advance(true_s)` moves it on by that much more."""

    def __init__(self, start, ppm):
        CountingRtc.__init__(self, start)
        self.exact = float(start)
        self.ppm = ppm

    def advance(self, true_s):
        self.exact += true_s * (1 + self.ppm / 1e6)
        self.port_s = int(self.exact)

    def set_seconds(self, seconds):
        CountingRtc.set_seconds(self, seconds)
        self.exact = float(seconds)


def test_the_clock_learns_its_crystal_rate_from_weekly_corrections():
    def run(path):
        rtc = DriftingRtc(0, ppm=18)  # 18 ppm fast: 10.9 s a week
        clock = Clock(rtc, path + "/clock.json", epoch_year=1970)
        week = 7 * 86400
        true_t = T_2026
        clock.set(true_t)
        rtc.advance(week)
        true_t += week
        assert clock.set(true_t) == -10  # host minus token: the token ran ahead
        assert -19000 <= clock.rate_ppb <= -13000  # learnt: about -18 ppm (whole-second sets)
        rtc.advance(week)
        true_t += week
        assert abs(clock.now() - true_t) <= 2  # instead of 11 s
        assert abs(clock.set(true_t)) <= 2
        # the learnt rate is kept on flash, and the wake arithmetic uses it
        again = Clock(rtc, path + "/clock.json", epoch_year=1970)
        assert again.rate_ppb == clock.rate_ppb
    with_dir(run)


def test_no_rate_is_learnt_from_a_short_gap_or_a_reset_clock():
    def run(path):
        rtc = DriftingRtc(0, ppm=18)
        clock = Clock(rtc, path + "/clock.json", epoch_year=1970)
        clock.set(T_2026)
        rtc.advance(86400)  # one day: too short to tell 18 ppm from a whole-second set
        clock.set(T_2026 + 86400)
        assert clock.rate_ppb == 0
        rtc.advance(5 * 86400)
        rtc.port_s += 3600  # an hour off after five days: not a crystal
        clock.set(T_2026 + 6 * 86400)
        assert clock.rate_ppb == 0
    with_dir(run)


class MillisecondRtc(DriftingRtc):
    """As an ESP32's RTC: it also tells the milliseconds (time.time_ns)."""

    def milliseconds(self):
        return int(self.exact * 1000)


def test_an_rtc_that_tells_milliseconds_learns_the_rate_to_a_fraction_of_a_ppm():
    def run(path):
        rtc = MillisecondRtc(0, ppm=18)
        clock = Clock(rtc, path + "/clock.json", epoch_year=1970)
        week = 7 * 86400
        clock.set(T_2026)
        rtc.advance(week)
        clock.set(T_2026 + week)  # the host sends the top of its second
        assert -18200 <= clock.rate_ppb <= -17800
        rtc.advance(week)
        assert abs(clock.ms_until(T_2026 + 2 * week)) <= 100  # a wake on time to 0.1 s
        assert clock.now() in (T_2026 + 2 * week - 1, T_2026 + 2 * week)  # 0.3 ms short of it
    with_dir(run)
