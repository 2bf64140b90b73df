"""Each wearer's wall clock: how far it is from true time, second by second of the run.

A token has no network. A clinic sets its clock at every sync, and between syncs the sleep
clock runs at the rate of its 32.768 kHz crystal (boards/*/board.json `clock.drift_ppm`):

    error(t) = set_error_k + drift * (t - sync_k)      for sync_k <= t < sync_k+1

- set_error_k: the host sends whole unix seconds (host_tools.sync_session: set_time(int(now()))),
  so a token is set to the second the host was in: behind by the fraction of that second
  (uniform 0..1 s) and by the command's trip over USB serial (a few to tens of ms).
- drift: one rate per token, uniform in +-drift_ppm (the crystal's tolerance band), kept for
  the whole run (temperature on the body changes little).
- sync_k: every `sync_every_s` at a per-token phase (each wearer has their own clinic day).

A positive error means the token's clock is ahead: what it does at clock time T happens at true
time T - error(T). Errors stay within seconds, so evaluating the error at clock time instead of
true time is off by drift * error (microseconds).

Edge cases: a sync resets the error, so windows near it can move by up to the error (the
scheduler then keeps to the new clock); times before the first modelled sync use that sync's
segment (the phase puts a sync at most one period before the run starts).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SERIAL_TRIP_S = (0.005, 0.05)   # USB CDC round trip of the TIME command, one way


@dataclass(frozen=True)
class Clocks:
    first_sync_s: np.ndarray    # (tokens,) true time of each token's last sync at or before start
    sync_every_s: float
    set_error_s: np.ndarray     # (tokens, syncs) error right after each sync
    drift: np.ndarray           # (tokens,) rate error (ppm * 1e-6)

    def error_s(self, token, t_s) -> np.ndarray:
        """Clock error (s) of `token` (int or array) at times `t_s` (array, seconds)."""
        t = np.asarray(t_s, dtype=np.float64)
        token = np.asarray(token)
        since_first = t - self.first_sync_s[token]
        k = np.clip(np.floor(since_first / self.sync_every_s).astype(np.int64), 0,
                    self.set_error_s.shape[1] - 1)
        since_sync = since_first - k * self.sync_every_s
        return self.set_error_s[token, k] + self.drift[token] * since_sync

    def to_true_time(self, token: int, clock_s: np.ndarray) -> np.ndarray:
        """True times of events the token schedules at its clock times `clock_s`."""
        return clock_s - self.error_s(token, clock_s)


def draw(sim_seed: int, tokens: int, start_s: int, end_s: int, drift_ppm: float,
         sync_every_s: float) -> Clocks:
    """Every token's clock for a run from start_s to end_s, seeded by the simulation's seed."""
    h = hashlib.sha256(b"clocks/%d" % sim_seed).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
    phase = rng.uniform(0.0, sync_every_s, tokens)
    first_sync = start_s - phase
    syncs = int(np.ceil((end_s - start_s) / sync_every_s)) + 2
    fraction = rng.uniform(0.0, 1.0, (tokens, syncs))
    trip = rng.uniform(*SERIAL_TRIP_S, (tokens, syncs))
    drift = rng.uniform(-drift_ppm, drift_ppm, tokens) * 1e-6
    return Clocks(first_sync, float(sync_every_s), -(fraction + trip), drift)
