"""Radio model: what RSSI a token hears from another, and whether it hears it at all.

Every number here is a published or datasheet figure; docs/simulation.md gives each source.

    rssi = tx_radiated - PL(1 m) - 10 n log10(d / 1 m) - walls - body + fading

- tx_radiated: the board's calibrated TX power (boards/*/board.json `radio.tx_power_dbm`, which
  the token also advertises in its AEM metadata) plus a per-token production spread.
- PL(1 m): free-space loss at 1 m at 2.44 GHz (Friis: 40.2 dB) plus the loss of two small
  body-worn antennas.
- n: log-distance exponent per setting: open air, indoor, inside a bus.
- walls: interior walls and party walls between homes.
- body: a human body in the path (the wearer's own or another's) for about half of the links.
- fading: log-normal shadowing, redrawn for every scan window.

Reception, per advertisement: above the receiver sensitivity (logistic edge), not collided with
another advertiser's packet (pure ALOHA on the advertising channels), and a slot free in the
firmware's 64-report ring buffer between two 250 ms drains. A scan window lasts as long as the
power profile says and hears each advertiser once per advertising interval.
"""
from __future__ import annotations

import math

import numpy as np

from .community import ENV_BUS, ENV_INDOOR, ENV_OPEN

FREE_SPACE_1M_DB = 40.2            # Friis, 2.44 GHz, 1 m
ANTENNA_LOSS_DB = 8.0              # two body-worn PCB antennas, about -4 dBi each
PATH_LOSS_1M_DB = FREE_SPACE_1M_DB + ANTENNA_LOSS_DB
PATH_LOSS_EXPONENT = {ENV_OPEN: 2.0, ENV_INDOOR: 3.0, ENV_BUS: 1.8}
INTERIOR_WALL_DB = 5.0
PARTY_WALL_DB = 12.0
BODY_SHADOW_SHARE = 0.5            # links with a body in the path
BODY_SHADOW_DB = (3.0, 10.0)       # uniform range of that loss
FADING_SIGMA_DB = 4.0              # log-normal shadowing per scan window
TX_SPREAD_SIGMA_DB = 2.0           # radiated power of one token vs its board's calibration
SENSITIVITY_DBM = -94.0            # where half the packets are lost (datasheets: -97 dBm at 30.8 % PER)
SENSITIVITY_WIDTH_DB = 1.5         # logistic width of that edge
ADV_PDU_AIRTIME_S = 0.000376       # 47-byte legacy PDU at 1 Mb/s, one channel
RING_SLOTS = 64                    # tokenfw.radio.DEFAULT_RING_SLOTS
DRAIN_PERIOD_S = 0.25              # app.Token.step drains at least this often while scanning
ADV_DELAY_MEAN_MS = 5.0            # Core spec advDelay 0..10 ms
MIN_DISTANCE_M = 0.3
# Links weaker than this on average are never heard (sensitivity minus 3 sigma of fading minus
# the edge): dropped before sampling to save work, without changing any outcome measurably.
CUTOFF_DBM = SENSITIVITY_DBM - 3 * FADING_SIGMA_DB - 4 * SENSITIVITY_WIDTH_DB


def mean_rssi(tx_dbm, distance_m, env, walls_db, body_db):
    """Mean RSSI (dBm) before fading; numpy arrays or scalars."""
    n = np.choose(np.asarray(env), [PATH_LOSS_EXPONENT[ENV_INDOOR], PATH_LOSS_EXPONENT[ENV_OPEN],
                                    PATH_LOSS_EXPONENT[ENV_BUS]])
    d = np.maximum(distance_m, MIN_DISTANCE_M)
    return tx_dbm - PATH_LOSS_1M_DB - 10.0 * n * np.log10(d) - walls_db - body_db


def body_loss(rng: np.random.Generator, size) -> np.ndarray:
    blocked = rng.random(size) < BODY_SHADOW_SHARE
    return np.where(blocked, rng.uniform(*BODY_SHADOW_DB, size), 0.0)


def packet_success(rssi_dbm, advertisers_in_range, adv_interval_ms):
    """Probability that one advertisement is delivered to the app: received above
    sensitivity, not collided, and a ring-buffer slot free at the next drain."""
    rssi_dbm = np.asarray(rssi_dbm, dtype=np.float64)
    k = np.asarray(advertisers_in_range, dtype=np.float64)
    period_s = (adv_interval_ms + ADV_DELAY_MEAN_MS) / 1000.0
    receive = 1.0 / (1.0 + np.exp(-(rssi_dbm - SENSITIVITY_DBM) / SENSITIVITY_WIDTH_DB))
    no_collision = np.exp(-2.0 * np.maximum(k - 1, 0) * ADV_PDU_AIRTIME_S / period_s)
    reports_per_drain = np.maximum(k, 1) * DRAIN_PERIOD_S / period_s
    ring = np.minimum(1.0, RING_SLOTS / reports_per_drain)
    return receive * no_collision * ring


def advertisements_per_window(window_ms: float, adv_interval_ms: float) -> int:
    return max(1, int(math.floor(window_ms / (adv_interval_ms + ADV_DELAY_MEAN_MS))))


def window_detection(p_packet, packets):
    """Probability that a scan window hears an advertiser at least once."""
    return 1.0 - (1.0 - np.asarray(p_packet)) ** packets
