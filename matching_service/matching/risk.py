"""Risk scoring that approximates GAEN v2 exposure windows (reference gaen-v1.2.md).

GAEN scores each scan instance: seconds since the previous scan (capped at 300 s, 120 s when
unknown) times the weight of its attenuation bucket; a window's score is that sum times the
report-type and infectiousness weights, and windows are summed per UTC day. A token record
merges the scans that heard one RPI, so a record with `scans` scans over `duration_s` stands for
`scans` scan instances spaced duration_s / (scans - 1) apart; a single scan counts the
observer's usual spacing between scans (from its other records), or GAEN's unknown gap. Since day sums are what decide, windows are not materialised: the per-day sum of
per-record scores is the same number.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from statistics import median

from .model import DailyExposure, Match, RiskConfig, Sighting

DAY_S = 86400


def exposure_seconds(duration_s: int, scans: int, config: RiskConfig,
                     scan_gap_s: float | None = None) -> float:
    """Seconds of exposure a record stands for (sum over its scan instances). A single scan
    counts the observer's usual gap between scans (`scan_gap_s`, see scan_gaps) when known."""
    if scans <= 1:
        gap = config.unknown_scan_gap_s if scan_gap_s is None else scan_gap_s
        return float(min(gap, config.max_scan_gap_s))
    gap = duration_s / (scans - 1)
    return scans * min(gap, float(config.max_scan_gap_s))


def bucket_weight(attenuation_db: int, config: RiskConfig) -> float:
    """Weight of the bucket (IMMEDIATE, NEAR, MEDIUM, OTHER) the attenuation falls in."""
    t0, t1, t2 = config.attenuation_thresholds_db
    w = config.bucket_weights
    if attenuation_db <= t0:
        return w[0]
    if attenuation_db <= t1:
        return w[1]
    if attenuation_db <= t2:
        return w[2]
    return w[3]


def attenuation(tx_power_dbm: int, rssi: int) -> int:
    return max(tx_power_dbm - rssi, 0)


def weighted_seconds(duration_s: int, scans: int, attenuation_db: int, report_type: int,
                     config: RiskConfig, scan_gap_s: float | None = None) -> float:
    return (exposure_seconds(duration_s, scans, config, scan_gap_s)
            * bucket_weight(attenuation_db, config)
            * config.report_type_weights.get(report_type, 0.0) * config.infectiousness_weight)


def scan_gaps(sightings: Iterable[Sighting], observers: set[str] | None = None
              ) -> dict[str, float]:
    """Each observer's usual seconds between scan windows: the median spacing of its records
    heard in two or more scans. GAEN knows its own scanner's cadence; a token record heard in a
    single scan does not say it, but the same token's other records do."""
    spacings: dict[str, list[float]] = defaultdict(list)
    for s in sightings:
        if s.scans >= 2 and s.duration_s > 0 and (observers is None or s.observer in observers):
            spacings[s.observer].append(s.duration_s / (s.scans - 1))
    return {observer: float(median(gaps)) for observer, gaps in spacings.items()}


def both_sides_s(weighted_by_side: Iterable[float]) -> float:
    """A contact's weighted seconds on one day from what each side measured (the case hearing
    the contact, the contact hearing the case): their mean. The two are independent
    measurements of the same proximity (each token's own scans, fading and body in the path),
    so the mean halves the noise of either; the larger of the two is biased upwards, and in
    the community simulation (docs/simulation.md) taking it raised false alarms by a fifth at
    the same recall. A side that heard nothing that day is not a measurement (its token may
    not have synced yet) and does not count."""
    values = list(weighted_by_side)
    return sum(values) / len(values) if values else 0.0


def score_exposures(matches: Iterable[Match], config: RiskConfig = RiskConfig()
                    ) -> list[DailyExposure]:
    """Sum matches per (observer, sender, UTC day); `exposed` when the day's weighted seconds
    reach config.exposure_threshold_s. Sorted by observer, sender, day."""
    groups: dict[tuple[str, str, int], list[Match]] = defaultdict(list)
    for m in matches:
        groups[(m.observer, m.sender, m.first_seen // DAY_S)].append(m)
    out = []
    for (observer, sender, day), ms in sorted(groups.items()):
        weighted = sum(m.weighted_s for m in ms)
        out.append(DailyExposure(
            observer=observer, sender=sender, day=day,
            first_seen=min(m.first_seen for m in ms),
            last_seen=max(m.last_seen for m in ms),
            duration_s=sum(m.duration_s for m in ms),
            min_attenuation_db=min(m.min_attenuation_db for m in ms),
            weighted_s=weighted,
            exposed=weighted + 1e-9 >= config.exposure_threshold_s))
    return out
