# The token's wall clock: unix seconds whatever the port's epoch, whether a host ever set it,
# and when and by how much it was last corrected.
#
# The token has no network: the host sets its clock at every sync. Between syncs the RTC
# drifts (a 32.768 kHz crystal: up to +-20 ppm, 12 s a week); the host measures the drift as
# `correction_s` and the service uses it to correct encounter times.
#
# The clock also disciplines itself: a crystal's error is mostly a constant rate (its cut;
# temperature on a wearer's body moves it by a ppm or two), so each correction divided by the
# time since the previous set is the rate still uncorrected, and now() adds `rate_ppb` from then
# on. Burst tokens need this: they wake on the whole minute of their own clocks and must stay
# within a second or two of each other between weekly syncs. A rate is learnt only over at least
# three days, from the correction to the millisecond where the RTC tells them (the host sends
# the top of its second, so a set is off by the cable's trip), and a measured rate beyond
# +-200 ppm is taken for a reset clock, not drift.
#
# Edge cases:
# - Ports count from different epochs: the unix port from 1970, bare-metal ports (ESP32) from
#   2000 (time.gmtime(0)[0] tells which). The RTC adapter speaks the port's epoch; this module
#   adds the difference, so everything above it sees unix seconds.
# - "Never set": no host has set it since provisioning (no state on flash), or the RTC reads a
#   time before MIN_PLAUSIBLE_UNIX. The latter is what an ESP32 shows after losing power: its
#   RTC restarts at 2000-01-01 while the state file on flash still says "set". Records made
#   while unset carry FLAG_CLOCK_UNSET; time keeps counting so durations stay right.
# - A power cut during set(): the RTC is written first, then the state (atomically, with
#   tokenfw.config.save). A cut between them leaves the previous state, so the token reports
#   the clock as it was before and the next sync sets it again; never a "set" flag without a
#   correct RTC.
# - Times a host may set are 2024-01-01 .. 2106-02-07 (a record's u32 first_seen); anything
#   else is refused with ValueError, the clock unchanged.
import time

from tokenfw import config

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

MIN_PLAUSIBLE_UNIX = const(1704067200)  # 2024-01-01T00:00:00Z: before this, the RTC was reset
MAX_UNIX = const(0xFFFFFFFF)  # records store first_seen as u32
_EPOCH_2000_UNIX = const(946684800)  # 2000-01-01T00:00:00Z
_RATE_MIN_ELAPSED_S = const(3 * 86400)
_RATE_MAX_PPB = const(200000)


def port_epoch_offset(epoch_year=None):
    """Unix seconds at the port's time 0: 0 on the unix port, 946684800 where the epoch is
    2000. `epoch_year` overrides detection (tests of the other port's arithmetic)."""
    if epoch_year is None:
        epoch_year = time.gmtime(0)[0]
    if epoch_year == 1970:
        return 0
    if epoch_year == 2000:
        return _EPOCH_2000_UNIX
    raise ValueError("unsupported port epoch %d" % epoch_year)


class Clock:
    """Wall clock over an RTC adapter: `rtc.seconds()` / `rtc.set_seconds(s)` in the port's
    epoch, `rtc.ticks_ms()` for intervals. State (when and by how much it was last set) is kept
    in the JSON document at `state_path`."""

    def __init__(self, rtc, state_path, epoch_year=None):
        self._rtc = rtc
        self._path = state_path
        self._offset = port_epoch_offset(epoch_year)
        state = config.load(state_path)
        if not isinstance(state, dict):
            state = {}
        self.last_set_at = _int_or_none(state.get("last_set_at"))
        self.last_correction_s = _int_or_none(state.get("last_correction_s"))
        self.set_count = _int_or_none(state.get("set_count")) or 0
        self.rate_ppb = _int_or_none(state.get("rate_ppb")) or 0
        self._set_raw = _int_or_none(state.get("set_raw"))  # RTC seconds when last set

    def _since_set(self, raw):
        """RTC seconds since the last set (0 before one, or after the RTC restarted)."""
        if self._set_raw is None or raw < self._set_raw:
            return 0
        return raw - self._set_raw

    def now(self):
        """Token time, unix seconds (int). Meaningful as a wall time only when is_set()."""
        raw = int(self._rtc.seconds())
        if self.rate_ppb:  # the rate's correction, to the nearest second
            return raw + self._offset + (self._since_set(raw) * self.rate_ppb + 500000000) // 1000000000
        return raw + self._offset

    def _now_ms(self):
        """Token time in unix milliseconds where the RTC tells them (`milliseconds()`, port
        epoch), else now() in whole seconds."""
        milliseconds = getattr(self._rtc, "milliseconds", None)
        if milliseconds is None:
            return self.now() * 1000
        raw_ms = milliseconds()
        return raw_ms + self._offset * 1000 + self._since_set(raw_ms // 1000) * self.rate_ppb // 1000000

    def ticks_ms(self):
        return self._rtc.ticks_ms()

    def ms_until(self, unix_s):
        """Milliseconds from now to the whole second `unix_s` (negative once past), to the
        millisecond where the RTC tells them (`milliseconds()`, port epoch), so tokens that
        sleep until the same second wake together."""
        milliseconds = getattr(self._rtc, "milliseconds", None)
        if milliseconds is None:
            return (unix_s - self.now()) * 1000
        raw_s = unix_s - self._offset
        # the RTC runs rate_ppb slow: it reaches unix_s that much later
        return raw_s * 1000 - milliseconds() - self._since_set(raw_s) * self.rate_ppb // 1000000

    def is_set(self):
        """True when a host set the clock and the RTC has not been reset since."""
        return self.last_set_at is not None and self.now() >= MIN_PLAUSIBLE_UNIX

    def set(self, unix_s):
        """Set the clock to `unix_s` (host time); returns the correction applied (host minus
        token time before, seconds) and records it."""
        if not isinstance(unix_s, int) or isinstance(unix_s, bool):
            raise ValueError("clock time must be whole unix seconds")
        if not MIN_PLAUSIBLE_UNIX <= unix_s <= MAX_UNIX:
            raise ValueError("clock time %d is outside 2024..2106" % unix_s)
        raw = int(self._rtc.seconds())
        correction_s = unix_s - self.now()
        # learnt from the millisecond: the host sends the top of its second (sync_session)
        correction_ms = unix_s * 1000 - self._now_ms()
        rate_ppb = self.rate_ppb
        elapsed = self._since_set(raw)
        if self.is_set() and elapsed >= _RATE_MIN_ELAPSED_S:
            learnt = rate_ppb + correction_ms * 1000000 // elapsed
            if -_RATE_MAX_PPB <= learnt <= _RATE_MAX_PPB:
                rate_ppb = learnt
        self._rtc.set_seconds(unix_s - self._offset)
        state = {"last_set_at": unix_s, "last_correction_s": correction_s,
                 "set_count": self.set_count + 1, "rate_ppb": rate_ppb, "set_raw": unix_s - self._offset}
        config.save(self._path, state)
        self.last_set_at = unix_s
        self.last_correction_s = correction_s
        self.set_count += 1
        self.rate_ppb = rate_ppb
        self._set_raw = unix_s - self._offset
        return correction_s

    def status(self):
        """What the sync protocol and the status LED report about the clock."""
        return {"now": self.now(), "set": self.is_set(), "last_set_at": self.last_set_at,
                "last_correction_s": self.last_correction_s, "set_count": self.set_count,
                "rate_ppb": self.rate_ppb}


def _int_or_none(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class SystemRtc:
    """RTC adapter over the port's own clock: `machine.RTC` where it exists (ESP32), else the
    process clock (unix port, CPython) plus an offset kept in RAM, since a process cannot set
    the system time. Seconds are in the port's epoch."""

    def __init__(self):
        try:
            import machine

            self._rtc = machine.RTC()
        except (ImportError, AttributeError):
            self._rtc = None
        self._offset = 0

    def seconds(self):
        return int(time.time()) + self._offset

    def set_seconds(self, seconds):
        if self._rtc is not None:
            tm = time.gmtime(seconds)
            # machine.RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subsec)
            self._rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        else:
            self._offset = int(seconds) - int(time.time())

    def ticks_ms(self):
        if hasattr(time, "ticks_ms"):
            return time.ticks_ms()
        return int(time.monotonic() * 1000) & 0x3FFFFFFF
