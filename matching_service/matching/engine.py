"""Decentralized matching (stored sightings x diagnosis keys) and centralized resolution of a
case's log against the escrowed registry.

Both are a join on the RPI: the side with many identifiers is computed in bulk (one AES-ECB
call per key-day over all PaddedData blocks needed) and looked up with numpy in a sorted array
of the other side's first 8 RPI bytes; only the few hits are checked in Python (full 16 bytes,
interval tolerance, AEM decrypting to a plausible TX power).
"""
from __future__ import annotations

import hmac
import os
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from . import crypto
from .model import (REPORT_CONFIRMED_TEST, REPORT_REVOKED, DiagnosisKey, EscrowedDevice, Match,
                    MatchResult, Rejection, RiskConfig, Sighting)
from .risk import attenuation, scan_gaps, weighted_seconds

INTERVAL_S = crypto.INTERVAL_S
ROLLING_PERIOD = crypto.ROLLING_PERIOD
_BITMAP_BITS = 22           # prefilter table: 4 Mi entries, a few heard RPIs set
_BITMAP_MASK = (1 << _BITMAP_BITS) - 1
_CHUNK_DEVICES = 4096       # devices per numpy join in the escrowed scan
MAX_RESOLVE_DAYS = 60       # the escrowed scan costs (devices x days): refuse runaway spans

REASON_TIME = "heard outside the interval tolerance of its key"
REASON_AEM = "AEM does not decrypt to GAEN metadata"
REASON_TX = "AEM decrypts to an implausible TX power"


class SightingIndex:
    """Sightings with their RPIs sorted by the first 8 bytes, for bulk lookups.

    A presence table indexed by the low bits of those 8 bytes (about 30 slots per sighting)
    sends most candidates that were never heard away with one gather, so the binary search
    (cache-unfriendly at this size) runs only on the few that may have been.
    """

    def __init__(self, sightings: Iterable[Sighting]):
        # Not copied when already a list: the index only reads it.
        self.sightings: list[Sighting] = sightings if isinstance(sightings, list) \
            else list(sightings)
        blob = b"".join([s.rpi for s in self.sightings])
        if len(blob) != 16 * len(self.sightings):
            bad = next(s for s in self.sightings if len(s.rpi) != 16)
            raise ValueError("sighting %s/%d has an RPI of %d bytes, not 16"
                             % (bad.observer, bad.seq, len(bad.rpi)))
        hi = np.frombuffer(blob, dtype="<u8")[0::2] if blob else np.zeros(0, dtype="<u8")
        self.order = np.argsort(hi)
        self.sorted_hi = hi[self.order]
        bits = min(26, max(16, int(np.ceil(np.log2(len(hi) + 1))) + 5))
        self._mask = np.uint64((1 << bits) - 1)
        self._present = np.zeros(1 << bits, dtype=bool)
        self._present[(hi & self._mask).astype(np.intp)] = True
        self._scan_gaps: dict[str, float] | None = None
        self._observer_code: dict[str, int] | None = None
        self._observer_of: np.ndarray | None = None

    def by_observers(self, positions: np.ndarray, observers: set[str]) -> np.ndarray:
        """Mask over sighting `positions`: True where the sighting is in one of these
        observers' logs (observer codes built once, on first use)."""
        if self._observer_of is None:
            code: dict[str, int] = {}
            self._observer_of = np.fromiter((code.setdefault(s.observer, len(code))
                                             for s in self.sightings), dtype=np.int64,
                                            count=len(self.sightings))
            self._observer_code = code
        wanted = np.array([self._observer_code[o] for o in observers if o in self._observer_code],
                          dtype=np.int64)
        return np.isin(self._observer_of[positions], wanted)

    def scan_gaps(self, observers: Iterable[str]) -> dict[str, float]:
        """risk.scan_gaps of these observers over every indexed sighting. Every join weights its
        single-scan records with it, so it is computed once for all observers (one pass over
        the index) instead of once per join (a case report makes one join per venue visit)."""
        if self._scan_gaps is None:
            self._scan_gaps = scan_gaps(self.sightings)
        return {o: self._scan_gaps[o] for o in observers if o in self._scan_gaps}

    def __len__(self) -> int:
        return len(self.sightings)

    def find(self, candidate_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate positions, sighting positions) whose first 8 RPI bytes are equal."""
        candidate_hi = np.asarray(candidate_hi, dtype="<u8")
        maybe = np.nonzero(self._present[(candidate_hi & self._mask).astype(np.intp)])[0]
        values = candidate_hi[maybe]
        left = np.searchsorted(self.sorted_hi, values, "left")
        inside = left < len(self.sorted_hi)
        inside[inside] = self.sorted_hi[left[inside]] == values[inside]
        maybe, values, left = maybe[inside], values[inside], left[inside]
        if not maybe.size:
            return maybe, maybe
        reps = np.searchsorted(self.sorted_hi, values, "right") - left
        cand = np.repeat(maybe, reps)
        offsets = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        return cand, self.order[np.repeat(left, reps) + offsets]


def _as_index(sightings) -> SightingIndex:
    return sightings if isinstance(sightings, SightingIndex) else SightingIndex(sightings)


def _hi(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u8")[0::2]


def validate_key(key: DiagnosisKey, now_interval: int, config: RiskConfig) -> str | None:
    """Why a diagnosis key must not be matched (key-server rules), or None if it is fine."""
    if not isinstance(key.tek, (bytes, bytearray)) or len(key.tek) != 16:
        return "key is not 16 bytes"
    if not 1 <= key.rolling_period <= ROLLING_PERIOD:
        return "rolling period is not 1..144"
    if key.rolling_start_interval < 0:
        return "rolling start interval is negative"
    if key.rolling_start_interval > now_interval:
        return "key starts in the future"
    if key.rolling_start_interval < now_interval - config.max_key_age_days * ROLLING_PERIOD:
        return "key is more than %d days old" % config.max_key_age_days
    if key.report_type == REPORT_REVOKED:
        return "key was revoked"
    if key.report_type not in config.report_type_weights:
        return "report type %d is not matched" % key.report_type
    return None


def _check_sighting(s: Sighting, enin: int, aemk: bytes, config: RiskConfig):
    """TX power (dBm) if sighting `s` is a valid reception of interval `enin`, else a reason."""
    if not s.clock_unset:
        tol = config.interval_tolerance
        if not s.first_seen // INTERVAL_S - tol <= enin <= s.last_seen // INTERVAL_S + tol:
            return REASON_TIME
    tx = crypto.metadata_tx_power(crypto.decrypt_aem(aemk, s.rpi, s.aem))
    if tx is None:
        return REASON_AEM
    if not config.min_tx_power_dbm <= tx <= config.max_tx_power_dbm:
        return REASON_TX
    return tx


def _match(s: Sighting, sender: str, tek: bytes, enin: int, tx: int, report_type: int,
           config: RiskConfig, scan_gap_s: float | None = None) -> Match:
    att = attenuation(tx, s.rssi_mean)
    return Match(
        observer=s.observer, seq=s.seq, sender=sender, tek=tek, enin=enin,
        # An unset clock makes the record's time meaningless; the sender's interval is not.
        first_seen=enin * INTERVAL_S if s.clock_unset else s.first_seen,
        duration_s=s.duration_s, tx_power_dbm=tx, attenuation_db=att,
        min_attenuation_db=attenuation(tx, s.rssi_max),
        weighted_s=weighted_seconds(s.duration_s, s.scans, att, report_type, config,
                                    scan_gap_s),
        clock_unset=s.clock_unset)


def _matches(accepted: list[tuple], gaps_from: Iterable[Sighting] | SightingIndex,
             config: RiskConfig) -> list[Match]:
    """Matches for accepted (sighting, sender, tek, enin, tx, report_type) tuples, single-scan
    records weighted with their observer's usual scan spacing (from `gaps_from`)."""
    observers = {a[0].observer for a in accepted if a[0].scans <= 1}   # who needs a spacing
    if not observers:
        gaps = {}
    elif isinstance(gaps_from, SightingIndex):
        gaps = gaps_from.scan_gaps(observers)
    else:
        gaps = scan_gaps(gaps_from, observers)
    matches = [_match(s, sender, tek, enin, tx, report_type, config, gaps.get(s.observer))
               for s, sender, tek, enin, tx, report_type in accepted]
    matches.sort(key=lambda m: (m.observer, m.first_seen, m.seq))
    return matches


def match_keys(sightings: Sequence[Sighting] | SightingIndex, keys: Iterable[DiagnosisKey],
               config: RiskConfig = RiskConfig(), now_s: float | None = None) -> MatchResult:
    """Decentralized matching: every sighting against every diagnosis key.

    Keys failing validation (relative to `now_s`, default the current time) are not matched
    and come back as rejections (seq -1); sightings whose RPI matches but whose time is outside
    the interval tolerance or whose AEM does not decrypt to a plausible TX power come back as
    rejections too. Matches name the key's `source` as sender.
    """
    index = _as_index(sightings)
    now_interval = int(time.time() if now_s is None else now_s) // INTERVAL_S
    valid: list[DiagnosisKey] = []
    rejections: list[Rejection] = []
    for key in keys:
        reason = validate_key(key, now_interval, config)
        if reason:
            rejections.append(Rejection(key.source, -1, key.source, reason))
        else:
            valid.append(key)
    if not valid or not len(index):
        return MatchResult([], rejections)

    padded_cache: dict[tuple[int, int], bytes] = {}
    parts = []
    for key in valid:
        span = (key.rolling_start_interval, key.rolling_period)
        padded = padded_cache.get(span)
        if padded is None:
            padded = padded_cache[span] = crypto.padded_blocks(range(span[0], span[0] + span[1]))
        parts.append(crypto.rpis(crypto.rpi_key(key.tek), padded))
    blob = b"".join(parts)
    periods = np.array([k.rolling_period for k in valid])
    key_of = np.repeat(np.arange(len(valid)), periods)
    starts = np.repeat(np.cumsum(periods) - periods, periods)
    enin_of = np.repeat([k.rolling_start_interval for k in valid], periods) + \
        (np.arange(len(blob) // 16) - starts)

    cand, found = index.find(_hi(blob))
    accepted: list[tuple] = []
    aem_keys: dict[int, bytes] = {}
    for c, si in zip(cand.tolist(), found.tolist()):
        s = index.sightings[si]
        if s.rpi != blob[16 * c:16 * c + 16]:
            continue
        ki = int(key_of[c])
        key = valid[ki]
        aemk = aem_keys.get(ki)
        if aemk is None:
            aemk = aem_keys[ki] = crypto.aem_key(key.tek)
        enin = int(enin_of[c])
        tx = _check_sighting(s, enin, aemk, config)
        if isinstance(tx, str):
            rejections.append(Rejection(s.observer, s.seq, key.source, tx))
            continue
        accepted.append((s, key.source, key.tek, enin, tx, key.report_type))
    return MatchResult(_matches(accepted, index, config), rejections)


def _needed_intervals(sightings: Sequence[Sighting], tolerance: int) -> dict[int, np.ndarray]:
    """Intervals a sender may have used for what these sightings heard, grouped by day."""
    if not sightings:
        return {}
    lo = np.array([s.first_seen // INTERVAL_S - tolerance for s in sightings], dtype=np.int64)
    hi = np.array([s.last_seen // INTERVAL_S + tolerance for s in sightings], dtype=np.int64)
    keep = hi >= 0                      # a time before 1970 (a broken correction) has no interval
    if not keep.any():
        return {}
    lo, hi = np.maximum(lo[keep], 0), hi[keep]
    base = int(lo.min())
    marks = np.zeros(int(hi.max()) - base + 2, dtype=np.int64)
    np.add.at(marks, lo - base, 1)
    np.add.at(marks, hi - base + 1, -1)
    enins = np.nonzero(np.cumsum(marks) > 0)[0] + base
    days = enins // ROLLING_PERIOD
    return {int(d): enins[days == d] for d in np.unique(days)}


def _scan_escrowed(seeds: list[bytes], plan: list[tuple[int, np.ndarray]],
                   heard_hi: np.ndarray) -> list[tuple[int, int]]:
    """(device position, interval) pairs whose escrowed RPI's first 8 bytes were heard.

    The hot loop of a case report: per device-day one HMAC for the TEK, two for the RPIK and
    one AES-ECB call over the day's needed PaddedData blocks; the hits are found with a
    4 Mi-entry table lookup and confirmed with a binary search. Runs in worker processes.
    """
    digest = hmac.digest
    new_ecb = crypto.ecb_encryptor
    extract = crypto.hkdf_extract_null_salt
    expand_rpik = b"EN-RPIK\x01"
    heard_hi = np.asarray(heard_hi, dtype="<u8")
    table = np.zeros(1 << _BITMAP_BITS, dtype=bool)
    table[(heard_hi & _BITMAP_MASK).astype(np.int64)] = True
    prks = [extract(seed) for seed in seeds]
    hits: list[tuple[int, int]] = []
    for day, enins in plan:
        padded = crypto.padded_blocks(enins)
        info = b"TT-TEK-v1" + struct.pack("<I", day) + b"\x01"
        n_iv = len(enins)
        for c0 in range(0, len(prks), _CHUNK_DEVICES):
            out = []
            append = out.append
            for prk in prks[c0:c0 + _CHUNK_DEVICES]:
                tek = digest(prk, info, "sha256")[:16]
                rpik = digest(extract(tek), expand_rpik, "sha256")[:16]
                append(new_ecb(rpik).update(padded))
            hi = _hi(b"".join(out))
            near = np.nonzero(table[(hi & _BITMAP_MASK).astype(np.int64)])[0]
            if not near.size:
                continue
            values = hi[near]
            pos = np.minimum(np.searchsorted(heard_hi, values), len(heard_hi) - 1)
            for h in near[heard_hi[pos] == values].tolist():
                hits.append((c0 + h // n_iv, int(enins[h % n_iv])))
    return hits


def resolve_escrowed(sightings: Sequence[Sighting], devices: Sequence[EscrowedDevice],
                     config: RiskConfig = RiskConfig(), workers: int = 1,
                     report_type: int = REPORT_CONFIRMED_TEST) -> MatchResult:
    """Centralized resolution: map each sighting (typically a case's own log) to the escrowed
    device that sent it, recomputing the devices' RPIs only for the intervals the sightings
    could concern (their times +- the interval tolerance). Matches name the device's serial as
    sender; `report_type` weights their risk (the case's report type).

    `workers` > 1 spreads the devices over that many processes (worth it from ~10,000 devices).
    Records written while the observer's clock was unset are searched at their corrected time
    like the others (searching every interval of every day would cost 144x).
    """
    sightings = list(sightings)
    devices = list(devices)
    if not sightings or not devices:
        return MatchResult([], [])
    for s in sightings:
        if len(s.rpi) != 16:
            raise ValueError("sighting %s/%d has an RPI of %d bytes, not 16"
                             % (s.observer, s.seq, len(s.rpi)))
    by_rpi: dict[bytes, list[Sighting]] = defaultdict(list)
    for s in sightings:
        by_rpi[s.rpi].append(s)
    heard_hi = np.unique(_hi(b"".join(by_rpi)))
    plan = sorted(_needed_intervals(sightings, config.interval_tolerance).items())
    if len(plan) > MAX_RESOLVE_DAYS:
        raise ValueError("sightings span %d days; resolve at most %d days at a time"
                         % (len(plan), MAX_RESOLVE_DAYS))
    seeds = [d.seed for d in devices]
    for d in devices:
        if len(d.seed) != 16:
            raise ValueError("escrowed device %s has a seed of %d bytes, not 16"
                             % (d.serial, len(d.seed)))

    workers = max(1, min(int(workers), os.cpu_count() or 1))
    if workers == 1 or len(devices) < 2 * _CHUNK_DEVICES:
        hits = _scan_escrowed(seeds, plan, heard_hi)
    else:
        slices = np.array_split(np.arange(len(devices)), workers * 2)
        hits = []
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [(int(sl[0]), pool.submit(_scan_escrowed, seeds[sl[0]:sl[-1] + 1], plan,
                                                 heard_hi)) for sl in slices if sl.size]
            for offset, future in futures:
                hits.extend((offset + dev, enin) for dev, enin in future.result())

    accepted: list[tuple] = []
    rejections: list[Rejection] = []
    for dev, enin in sorted(set(hits)):
        device = devices[dev]
        tek = crypto.escrowed_tek(device.seed, enin // ROLLING_PERIOD)
        rpi = crypto.rpis(crypto.rpi_key(tek), crypto.padded_blocks([enin]))
        heard = by_rpi.get(rpi)
        if not heard:
            continue  # only the first 8 bytes were equal
        aemk = crypto.aem_key(tek)
        for s in heard:
            tx = _check_sighting(s, enin, aemk, config)
            if isinstance(tx, str):
                rejections.append(Rejection(s.observer, s.seq, device.serial, tx))
            else:
                accepted.append((s, device.serial, tek, enin, tx, report_type))
    return MatchResult(_matches(accepted, sightings, config), rejections)


def devices_sightings(devices: Sequence[EscrowedDevice], plan: dict[int, np.ndarray],
                      index: SightingIndex, config: RiskConfig,
                      report_type: int = REPORT_CONFIRMED_TEST,
                      observers: set[str] | None = None) -> MatchResult:
    """Every sighting in `index` of these escrowed devices' RPIs for the intervals in `plan`
    (day -> interval numbers of that day), validated like the other joins: all devices' RPIs
    in one lookup. Used for venue beacons (visits, presence). `observers`: only sightings in
    these tokens' logs (the others are neither checked nor returned: at national scale a
    fortnight of every venue's identifiers is heard millions of times)."""
    devices = list(devices)
    days = sorted(d for d, enins in plan.items() if len(enins))
    if not devices or not days or not len(index):
        return MatchResult([], [])
    padded = [crypto.padded_blocks(plan[d]) for d in days]
    sizes = np.array([len(plan[d]) for d in days])
    day_start = np.cumsum(sizes) - sizes
    per_device = int(sizes.sum())
    parts = []
    for device in devices:
        prk = crypto.escrow_prk(device.seed)
        for day, blocks in zip(days, padded):
            parts.append(crypto.rpis(crypto.rpi_key(crypto.escrowed_tek_from_prk(prk, day)),
                                     blocks))
    blob = b"".join(parts)
    cand, found = index.find(_hi(blob))
    if observers is not None:
        mine = index.by_observers(found, observers)
        cand, found = cand[mine], found[mine]
    accepted, rejections = [], []
    keys: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    for c, si in zip(cand.tolist(), found.tolist()):
        s = index.sightings[si]
        if s.rpi != blob[16 * c:16 * c + 16]:
            continue
        di, offset = divmod(c, per_device)
        k = int(np.searchsorted(day_start, offset, "right")) - 1
        day, enin = days[k], int(plan[days[k]][offset - day_start[k]])
        device = devices[di]
        if (di, day) not in keys:
            tek = crypto.escrowed_tek(device.seed, day)
            keys[(di, day)] = (tek, crypto.aem_key(tek))
        tek, aemk = keys[(di, day)]
        tx = _check_sighting(s, enin, aemk, config)
        if isinstance(tx, str):
            rejections.append(Rejection(s.observer, s.seq, device.serial, tx))
        else:
            accepted.append((s, device.serial, tek, enin, tx, report_type))
    return MatchResult(_matches(accepted, index, config), rejections)


def interval_plan(first_interval: int, last_interval: int) -> dict[int, np.ndarray]:
    """day -> interval numbers, for every interval from first to last (inclusive, >= 0)."""
    enins = np.arange(max(first_interval, 0), last_interval + 1, dtype=np.int64)
    days = enins // ROLLING_PERIOD
    return {int(d): enins[days == d] for d in np.unique(days)}


def device_sightings(device: EscrowedDevice, first_interval: int, last_interval: int,
                     index: SightingIndex, config: RiskConfig,
                     report_type: int = REPORT_CONFIRMED_TEST) -> MatchResult:
    """Every sighting in `index` of `device`'s RPIs from `first_interval` to `last_interval`
    (inclusive)."""
    return devices_sightings([device], interval_plan(first_interval, last_interval), index,
                             config, report_type)
