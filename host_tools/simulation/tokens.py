"""Each token's life, with the firmware's own modules under CPython.

- identifiers: `tokenfw.gaen.TekSchedule` (escrowed seed or private random TEKs), one RPI/AEM
  per 10-minute interval, computed for every interval in which anyone could hear the token;
- radio schedule: `tokenfw.scheduler.scan_windows` with the token's own xorshift `Rng`, the
  same function and generator the firmware's main loop draws its scan windows from, on the
  token's own clock; clocks.py places it in true time (clinic-set clock plus crystal drift).
  A burst token advertises only while awake, so two burst tokens hear each other for as much
  of a window as their clocks let their wakes overlap (shared_awake_s);
- aggregation: `tokenfw.encounters.Aggregator` with the firmware's default gap and table size,
  fed every advertiser each scan window heard (one report per advertiser and window: the
  record's first/last time, scan count and RSSI mean depend on the windows, not on how many of
  an advertiser's ~16 packets inside one window got through);
- records: `tokenfw.records.encode`, numbered as the token's log numbers them.

Work is split over processes by token (each token's log depends only on what it heard); the
big read-only arrays are inherited by fork, not copied.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import os
import random
from dataclasses import dataclass

import numpy as np

from tokenfw import app, gaen, records, scheduler
from tokenfw.encounters import Aggregator

from . import radio
from .clocks import Clocks
from .community import SLOT_S

INTERVAL_S = gaen.INTERVAL_S
DISTANCE_BINS_M = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 1e9])

_SHARED: dict = {}  # set by the parent before forking workers


def token_seed(sim_seed: int, token: int) -> bytes:
    """The 16-byte escrow seed (escrowed tokens) or TEK-generator seed (private) of a token."""
    return hashlib.sha256(b"tokentool-simulate/%d/%d" % (sim_seed, token)).digest()[:16]


def schedule_seed(sim_seed: int, token: int) -> int:
    """The seed of the token's scheduler.Rng (the firmware draws it from os.urandom at boot)."""
    return int.from_bytes(hashlib.sha256(b"rng/%d/%d" % (sim_seed, token)).digest()[:4], "little")


def tek_schedule(identity: str, seed: bytes, tx_power_dbm: int) -> gaen.TekSchedule:
    if identity == gaen.IDENTITY_ESCROWED:
        return gaen.TekSchedule(identity, seed=seed, tx_power_dbm=tx_power_dbm)
    teks: dict[int, bytes] = {}
    rnd = random.Random(seed)
    return gaen.TekSchedule(identity, rng=rnd.randbytes, tx_power_dbm=tx_power_dbm,
                            lookup=teks.get, on_new_tek=teks.__setitem__)


BOOT_SPREAD_S = 6 * 3600


def boot_time(sim_seed: int, token: int, start_s: int) -> int:
    """When the token was switched on: some time in the hours before the run starts (tokens
    are handed out and charged at different times, so their schedules are not in step)."""
    h = hashlib.sha256(b"boot/%d/%d" % (sim_seed, token)).digest()
    return start_s - int.from_bytes(h[:4], "little") % BOOT_SPREAD_S


CLOCK_MARGIN_S = 120  # clock windows beyond the run, so that every true-time window in it is kept


def token_windows(start_s: int, end_s: int, profile_name: str, sim_seed: int, token: int,
                  clocks: Clocks | None = None) -> np.ndarray:
    """The scan windows token `token` opens between start_s and end_s of true time: scheduled
    by the firmware's scheduler on the token's own clock (switched on at its boot_time), then
    placed in true time by that clock's error (`clocks`; None: a perfect clock)."""
    prof = scheduler.profile(profile_name)
    if prof.get("wake_every_s"):
        # Wakes on whole multiples of the period of the token's clock: the scheduler gives every
        # token the same clock times, whatever its generator (computed once per run).
        windows = _clock_schedule(start_s - CLOCK_MARGIN_S, end_s + CLOCK_MARGIN_S, profile_name)
    else:
        windows = scan_windows(boot_time(sim_seed, token, start_s), end_s + CLOCK_MARGIN_S,
                               profile_name, schedule_seed(sim_seed, token))
    if clocks is not None and len(windows):
        shift = windows[:, 0] - clocks.to_true_time(token, windows[:, 0])
        windows = windows - shift[:, None]
    keep = (windows[:, 0] >= start_s) & (windows[:, 0] < end_s)
    return windows[keep]


@functools.lru_cache(maxsize=4)
def _clock_schedule(start_s: float, end_s: float, profile_name: str) -> np.ndarray:
    windows = scan_windows(start_s, end_s, profile_name, 0)
    windows.flags.writeable = False
    return windows


def scan_windows(start_s: int, end_s: int, profile_name: str, rng_seed: int) -> np.ndarray:
    """(start, end) of every scan window the firmware opens, from tokenfw.scheduler."""
    prof = scheduler.profile(profile_name)
    out = list(scheduler.scan_windows(start_s, end_s, prof, scheduler.Rng(rng_seed)))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def shared_awake_s(window_start_s, advertiser_error_s, wake_every_s: float, awake_s: float):
    """Seconds of a burst observer's window (true start `window_start_s`, awake_s long) during
    which a burst advertiser whose clock is `advertiser_error_s` ahead is awake too: it wakes at
    its clock's multiples of wake_every_s, i.e. at true times multiple - error. Arrays allowed.
    Windows a whole period apart are the same wake; half a period apart share nothing."""
    delta = (np.asarray(window_start_s) + advertiser_error_s) % wake_every_s
    return np.clip(awake_s - np.minimum(delta, wake_every_s - delta), 0.0, awake_s)


# -- identifiers -------------------------------------------------------------------------------
def identifiers_worker(tokens: list[int]) -> list[tuple[int, np.ndarray, bytes, dict]]:
    """For each token: the interval offsets it needs, their RPI||AEM bytes, and its TEKs."""
    s = _SHARED
    needed, enin0, sim_seed = s["needed"], s["enin0"], s["seed"]
    out = []
    for token in tokens:
        rel = np.flatnonzero(needed[token])
        sched = tek_schedule(s["identity"][token], token_seed(sim_seed, token), s["tx_advertised"])
        parts = []
        for e in rel.tolist():
            rpi, aem = sched.identifiers(enin0 + e)
            parts.append(rpi + aem)
        teks = {}
        if s["keys_for"][token]:
            first_day, last_day = enin0 // 144, (enin0 + needed.shape[1] - 1) // 144
            teks = {d: sched.tek(d) for d in range(first_day, last_day + 1)}
        out.append((token, rel, b"".join(parts), teks))
    return out


# -- aggregation -------------------------------------------------------------------------------
@dataclass
class TokenLog:
    token: int
    records: bytes          # encoded 32-byte records, seq 1..count (the store starts at 1)
    count: int
    evicted: int
    windows: int
    scan_ms: int
    sightings: int          # reports handed to the Aggregator
    attempts: np.ndarray    # (link, window) chances by setting (contacts.SETTINGS) and distance bin
    heard: np.ndarray       # ... of which heard


def aggregate_worker(tokens: list[int]) -> list[TokenLog]:
    return [_aggregate(t) for t in tokens]


def _aggregate(token: int) -> TokenLog:
    s = _SHARED
    start_s, end_s, profile_name, sim_seed = s["start_s"], s["end_s"], s["profile"], s["seed"]
    prof = scheduler.profile(profile_name)
    windows = token_windows(start_s, end_s, profile_name, sim_seed, token, s["clocks"])
    links = s["links"]
    mine = links.of(token)
    slot, adv = links.slot[mine], links.advertiser[mine]
    rssi, dist, in_range = links.rssi[mine], links.distance[mine], links.in_range[mine]
    wslot = ((windows[:, 0] - start_s) // SLOT_S).astype(np.int64)
    first = np.searchsorted(wslot, slot, "left")
    count = np.searchsorted(wslot, slot, "right") - first
    link_of = np.repeat(np.arange(len(slot)), count)
    window_of = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    rng = np.random.default_rng([sim_seed, 0xA66, token, sum(profile_name.encode())])
    faded = rssi[link_of] + rng.normal(0.0, radio.FADING_SIGMA_DB, len(link_of))
    packets = radio.advertisements_per_window(prof["scan_window_ms"], prof["adv_interval_ms"])
    if prof.get("advertise_while_awake"):
        # A burst token is on air only while awake: from each whole multiple of wake_every_s on
        # its own clock, for awake_s, i.e. at true time multiple - error. Another token hears it
        # only for the part of its own window that overlaps that; beacons always advertise.
        clocks = s["clocks"]
        n_wearers = len(clocks.first_sync_s)
        a_link = adv[link_of]
        wearer = a_link < n_wearers
        every, awake = prof["wake_every_s"], prof["awake_s"]
        t_window = windows[window_of, 0]
        overlap = shared_awake_s(t_window, clocks.error_s(np.minimum(a_link, n_wearers - 1), t_window),
                                 every, awake)
        on_air = np.floor(overlap * 1000.0 / (prof["adv_interval_ms"] + radio.ADV_DELAY_MEAN_MS))
        packets = np.where(wearer, on_air, packets)
    p_packet = radio.packet_success(faded, in_range[link_of], prof["adv_interval_ms"])
    heard = rng.random(len(link_of)) < radio.window_detection(p_packet, packets)
    nbins = len(DISTANCE_BINS_M) - 1
    bins = (np.digitize(dist[link_of], DISTANCE_BINS_M) - 1) + nbins * links.setting[mine][link_of]
    attempts = np.bincount(bins, minlength=4 * nbins).reshape(4, nbins)
    heard_bins = np.bincount(bins[heard], minlength=4 * nbins).reshape(4, nbins)

    w = window_of[heard]
    order = np.lexsort((adv[link_of[heard]], w))
    w = w[order]
    a = adv[link_of[heard]][order]
    level = np.clip(np.rint(faded[heard][order]), -127, 20).astype(np.int64)
    t_win = windows[w, 0].astype(np.int64)
    e_rel = (t_win - s["enin0"] * INTERVAL_S) // INTERVAL_S
    ident = s["ident"]  # bytes: (token * intervals + interval) * 20 -> RPI || AEM
    intervals = s["intervals"]

    out: list[bytes] = []
    append, encode, numbers = out.append, records.encode, itertools.count(1)

    def log(encounter):
        append(encode(next(numbers), encounter))

    cfg = app.DEFAULT_CONFIG
    agg = Aggregator(gap_s=cfg["gap_s"], max_open=cfg["max_open"], on_close=log)
    sighting, tick, open_count = agg.sighting, agg.tick, agg.open_count
    max_open = agg.max_open
    n = len(w)
    # One group per scan window (sightings are sorted by window, then advertiser).
    bounds = np.flatnonzero(np.r_[True, w[1:] != w[:-1], True]) if n else np.zeros(1, np.int64)
    firsts = bounds[:-1]
    offsets = ((a * intervals + e_rel) * 20).tolist()
    levels = level.tolist()
    last_e = -1
    for i, j, wi, t, e in zip(firsts.tolist(), bounds[1:].tolist(), w[firsts].tolist(),
                              t_win[firsts].tolist(), e_rel[firsts].tolist()):
        # The firmware ticks the aggregator about once a second between windows. A tick only
        # closes what is due (unheard for gap_s, or from an earlier interval), so ticking at
        # the first window of each interval, and whenever the table could be full (where a
        # stale entry would otherwise be evicted), gives the same records in the same order.
        if e != last_e or open_count() + (j - i) > max_open:
            tick(t)
            last_e = e
        for o, rssi in zip(offsets[i:j], levels[i:j]):
            sighting(ident[o:o + 16], ident[o + 16:o + 20], rssi, t, wi)
    agg.close_all(end_s)
    return TokenLog(token, b"".join(out), len(out), agg.evicted, len(windows),
                    int(round((windows[:, 1] - windows[:, 0]).sum() * 1000)), n, attempts, heard_bins)


def run_pool(worker, items: list, shared: dict, processes: int, chunk: int = 64):
    """Run `worker` over chunks of `items` in forked processes sharing `shared` (or inline)."""
    _SHARED.clear()
    _SHARED.update(shared)
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    if processes <= 1 or len(chunks) <= 1:
        return [r for c in chunks for r in worker(c)]
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        results = pool.map(worker, chunks, chunksize=1)
    return [r for part in results for r in part]


def cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
