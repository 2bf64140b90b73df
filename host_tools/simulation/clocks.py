"""Each wearer's wall clock: how far it is from true time, second by second of the run.

A token has no network. A clinic sets its clock at every sync, and between syncs the RTC runs
at the rate of its 32.768 kHz crystal; the firmware's own clock (`tokenfw.clock.Clock`, run
here on a simulated RTC) learns that rate from successive sync corrections and corrects for it.
What is left between syncs:

    error(t) = set error at sync k + residual rate k * (t - sync k)     for sync k <= t < sync k+1

- set error: the host waits for the top of its second and sends it (host_tools.sync_session),
  so the token is behind by the TIME command's trip over USB serial (5-50 ms).
- residual rate: the crystal's own rate (one per token, uniform in +-drift_ppm: its tolerance
  band) plus the week's temperature share (uniform in +-TEMPERATURE_PPM, redrawn every sync
  period), plus the rate the Clock learnt (`rate_ppb`). The Clock learns from millisecond
  corrections over at least three days, so what is left is mostly the week's temperature.
- syncs every `sync_every_s` at a per-token phase (each wearer has their own clinic day); the
  tokens have been in service for HISTORY_SYNCS syncs before the run, so their Clock has learnt
  its rate (a token in its first week after hand-out drifts by its full crystal error).

A positive error means the token's clock is ahead: what it does at clock time T happens at true
time T - error(T). Errors stay within about a second, so evaluating the error at clock time
instead of true time is off by microseconds.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from tokenfw.clock import Clock

SERIAL_TRIP_S = (0.005, 0.05)   # USB CDC trip of the TIME command to the token
TEMPERATURE_PPM = 1.0           # tuning-fork crystal: -0.034 ppm/degC^2 around 25 degC; a body-worn
                                # token between 20 and 30 degC moves by up to 0.85 ppm
HISTORY_SYNCS = 3               # syncs before the run (the Clock learns its rate from the second on)


@dataclass(frozen=True)
class Clocks:
    first_sync_s: np.ndarray    # (tokens,) true time of each token's last sync at or before start
    sync_every_s: float
    set_error_s: np.ndarray     # (tokens, syncs) error right after each sync
    rate: np.ndarray            # (tokens, syncs) residual rate error until the next sync (s/s)

    def error_s(self, token, t_s) -> np.ndarray:
        """Clock error (s) of `token` (int or array) at times `t_s` (array, seconds)."""
        t = np.asarray(t_s, dtype=np.float64)
        token = np.asarray(token)
        since_first = t - self.first_sync_s[token]
        k = np.clip(np.floor(since_first / self.sync_every_s).astype(np.int64), 0,
                    self.set_error_s.shape[1] - 1)
        since_sync = since_first - k * self.sync_every_s
        return self.set_error_s[token, k] + self.rate[token, k] * since_sync

    def to_true_time(self, token: int, clock_s: np.ndarray) -> np.ndarray:
        """True times of events the token schedules at its clock times `clock_s`."""
        return clock_s - self.error_s(token, clock_s)


class SimulatedRtc:
    """A token's RTC against true time (`true_s`, advanced by the caller): counts at
    1 + `rate` seconds per second; set_seconds starts it from that value at the current moment."""

    def __init__(self, true_s: float, raw_s: float = 0.0, rate: float = 0.0):
        self.true_s = true_s
        self._true_ref, self._raw_ref, self.rate = true_s, raw_s, rate

    def seconds(self) -> float:
        return self._raw_ref + (self.true_s - self._true_ref) * (1.0 + self.rate)

    def set_seconds(self, seconds) -> None:
        self._true_ref, self._raw_ref = self.true_s, float(seconds)

    def set_rate(self, rate: float) -> None:
        self._raw_ref, self._true_ref, self.rate = self.seconds(), self.true_s, rate

    def ticks_ms(self) -> int:
        return int(self.seconds() * 1000)

    def milliseconds(self) -> int:
        return int(self.seconds() * 1000)


def draw(sim_seed: int, tokens: int, start_s: int, end_s: int, drift_ppm: float,
         sync_every_s: float) -> Clocks:
    """Every token's clock for a run from start_s to end_s, seeded by the simulation's seed: the
    firmware's Clock on a simulated RTC, set at every sync of its history and of the run."""
    h = hashlib.sha256(b"clocks/%d" % sim_seed).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
    syncs = int(np.ceil((end_s - start_s) / sync_every_s)) + 2
    total = HISTORY_SYNCS + syncs
    phase = rng.uniform(0.0, sync_every_s, tokens)
    first_sync = np.floor(start_s - phase)                    # the host sets whole seconds
    trip = rng.uniform(*SERIAL_TRIP_S, (tokens, total))
    crystal = rng.uniform(-drift_ppm, drift_ppm, tokens) * 1e-6
    temperature = rng.uniform(-TEMPERATURE_PPM, TEMPERATURE_PPM, (tokens, total)) * 1e-6
    set_error = np.empty((tokens, syncs))
    rate = np.empty((tokens, syncs))
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        for i in range(tokens):
            path = os.path.join(tmp, "clock-%d.json" % i)
            t0 = float(first_sync[i]) - HISTORY_SYNCS * sync_every_s
            rtc = SimulatedRtc(t0, raw_s=0.0, rate=crystal[i] + temperature[i, 0])
            clock = Clock(rtc, path, epoch_year=1970)
            for k in range(total):
                host_s = int(t0 + k * sync_every_s)
                rtc.true_s = host_s + trip[i, k]
                rtc.set_rate(crystal[i] + temperature[i, k])   # this sync period's temperature
                clock.set(host_s)
                if k >= HISTORY_SYNCS:
                    set_error[i, k - HISTORY_SYNCS] = -trip[i, k]
                    rate[i, k - HISTORY_SYNCS] = rtc.rate + clock.rate_ppb * 1e-9
            os.remove(path)
    return Clocks(first_sync, float(sync_every_s), set_error, rate)
