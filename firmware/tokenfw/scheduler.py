# When the token does what: identifier rotation, scan windows, commits, status blinks.
#
# Pure functions of time and a seeded generator, so that the firmware and the community
# simulator (which runs these same functions under CPython) produce the same radio schedule.
# Times are unix seconds (floats allowed); durations carry their unit in the name.

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

INTERVAL_S = const(600)  # GAEN ENIntervalNumber length: RPI and address change together

# Power profiles. `scan_every_s` is the (min, max) gap between scan-window starts, drawn
# uniformly like Google's scanner (4 s every 210-300 s). A venue beacon only advertises.
PROFILES = {
    "continuous": {
        "advertise": True,
        "scan": True,
        "adv_interval_ms": 250,
        "scan_window_ms": 4000,
        "scan_every_s": (210, 300),
    },
    "venue": {
        "advertise": True,
        "scan": False,
        "adv_interval_ms": 250,
        "scan_window_ms": 0,
        "scan_every_s": (0, 0),
    },
    # Stock MicroPython on ESP32 cannot light-sleep with BLE on, so a token that must last on
    # a small battery wakes from deep sleep once a minute, advertises and scans for `awake_s`,
    # and deep-sleeps the rest, its open encounters kept in RTC memory (tokenfw.deepsleep). The
    # radio is on only while awake (`advertise_while_awake`). Wakes fall on whole multiples of
    # `wake_every_s` on the token's wall clock, so every burst token whose clock a clinic set
    # is awake at the same moments as the others; how far apart their clocks drift decides how
    # much of each window they share. Two seconds: listening is the dearest part of a wake
    # (docs/ble.md, "Burst profile").
    "burst": {
        "advertise": True,
        "scan": True,
        "adv_interval_ms": 250,
        "scan_window_ms": 2000,
        "awake_s": 2,
        "wake_every_s": 60,
        "advertise_while_awake": True,
        "deep_sleep": True,
    },
}

COMMIT_EVERY_S = const(60)  # a power cut loses at most this much of the encounter log
STATUS_EVERY_S = const(60)  # the wearer sees one blink a minute
RETENTION_EVERY_S = const(3600)


class Rng:
    """xorshift32: tiny, deterministic, and the same on MicroPython and CPython."""

    def __init__(self, seed):
        self.state = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def next32(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def uniform(self, low, high):
        return low + (high - low) * (self.next32() / 4294967296.0)


def profile(name):
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError("unknown power profile %r" % (name,))


def interval_start(t):
    """Start of the 10-minute identifier interval containing t."""
    return int(t) - int(t) % INTERVAL_S


def next_rotation(t):
    """When the identifier (RPI and address together) next changes after t."""
    return interval_start(t) + INTERVAL_S


def next_scan(after, prof, rng):
    """Start of the next scan window after a window that started at `after`."""
    every = prof.get("wake_every_s")
    if every:
        return (int(after) // every + 1) * every
    low, high = prof["scan_every_s"]
    return after + rng.uniform(low, high)


def first_scan(now, prof, rng):
    """First scan window after boot: soon, but spread so tokens switched on together differ.
    A burst token's first wake is the next whole multiple of its period (now, if on one)."""
    every = prof.get("wake_every_s")
    if every:
        return -(-int(now) // every) * every
    return now + rng.uniform(0, prof["scan_every_s"][0] / 10)


def next_wake(now, prof):
    """When a deep-sleeping burst token must be awake again: its next wall-clock wake."""
    return next_scan(now, prof, None)


def scan_windows(start, end, prof, rng):
    """(window_start, window_end) pairs the firmware opens between start and end; the simulator
    uses this to know exactly when each token listened."""
    if not prof["scan"]:
        return
    window_s = prof["scan_window_ms"] / 1000
    t = first_scan(start, prof, rng)
    while t < end:
        yield t, t + window_s
        t = next_scan(t, prof, rng)

