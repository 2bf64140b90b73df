"""Plain data the matching engine reads and returns.

The engine does no I/O: the service loads these from its database (times already corrected
with the clock correction of the sync that dumped each record) and stores what comes back.
All times are unix seconds (UTC); attenuations are dB; RPIs, AEMs, TEKs and seeds are bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Record flag bit set by the token when its clock had never been set (tokenfw.records).
FLAG_CLOCK_UNSET = 0x01

# GAEN report types (export.proto).
REPORT_UNKNOWN = 0
REPORT_CONFIRMED_TEST = 1
REPORT_CONFIRMED_CLINICAL_DIAGNOSIS = 2
REPORT_SELF_REPORT = 3
REPORT_RECURSIVE = 4
REPORT_REVOKED = 5

ROLE_WEARABLE = "wearable"
ROLE_VENUE = "venue"

# Which side of a contact heard the other (Contact.heard_by).
HEARD_BY_CASE = "case"
HEARD_BY_CONTACT = "contact"
HEARD_BY_BOTH = "both"

# Flag kinds (Flag.kind).
FLAG_RELAY = "relay"
FLAG_IMPLAUSIBLE_ENCOUNTERS = "implausible_encounters"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One stored encounter record of `observer`'s log (tokenfw.records.Encounter plus where it
    came from). `first_seen` is already corrected to host time."""

    observer: str
    seq: int
    rpi: bytes
    aem: bytes
    first_seen: int
    duration_s: int
    scans: int
    rssi_max: int
    rssi_mean: int
    flags: int = 0

    @property
    def last_seen(self) -> int:
        return self.first_seen + self.duration_s

    @property
    def clock_unset(self) -> bool:
        return bool(self.flags & FLAG_CLOCK_UNSET)


@dataclass(frozen=True, slots=True)
class DiagnosisKey:
    """A published TEK. `source` says where it came from (a case id, an import file name...)
    and is carried into every match so reports can name it."""

    tek: bytes
    rolling_start_interval: int
    rolling_period: int = 144
    report_type: int = REPORT_CONFIRMED_TEST
    transmission_risk: int = 0
    source: str = ""


@dataclass(frozen=True, slots=True)
class EscrowedDevice:
    """A registered token whose TEKs the service can recompute from its seed."""

    serial: str
    seed: bytes
    role: str = ROLE_WEARABLE
    tx_power_dbm: int = 0
    venue_name: str = ""
    venue_place: str = ""


@dataclass(frozen=True)
class RiskConfig:
    """Matching tolerances and the GAEN-v2-like risk model (docs/matching.md).

    Attenuation buckets: typical attenuation <= t0 is IMMEDIATE, <= t1 NEAR, <= t2 MEDIUM,
    else OTHER; `bucket_weights` gives the four weights (each 0..2.5). A contact is an exposure
    when its weighted seconds on one UTC day reach `exposure_threshold_s` (660 = 11 weighted
    minutes: the records' seconds count only the scans that heard the contact, at weight 0.5
    in NEAR, so 15 minutes within 2 m measure less than 15 weighted minutes).
    """

    interval_tolerance: int = 12            # +-2 h, in 10-minute intervals
    # Calibrated in the community simulation (docs/matching.md, "Where the defaults come
    # from"): 2 m indoors is about 57 dB and 3 m about 62 dB with the tokens' antennas; the
    # 3-8 m crowd of long gatherings (up to about 75 dB) made most false alarms of the older
    # (55, 63, 73) weighted (1, 1, 0.5, 0).
    attenuation_thresholds_db: tuple[int, int, int] = (60, 62, 68)
    bucket_weights: tuple[float, float, float, float] = (1.0, 0.5, 0.25, 0.0)
    report_type_weights: dict[int, float] = field(default_factory=lambda: {
        REPORT_UNKNOWN: 1.0, REPORT_CONFIRMED_TEST: 1.0,
        REPORT_CONFIRMED_CLINICAL_DIAGNOSIS: 1.0, REPORT_SELF_REPORT: 1.0,
        REPORT_RECURSIVE: 1.0})
    infectiousness_weight: float = 1.0
    exposure_threshold_s: float = 660.0     # 11 weighted minutes: see the class docstring
    min_tx_power_dbm: int = -50
    max_tx_power_dbm: int = 20
    max_scan_gap_s: int = 300               # GAEN caps seconds-since-last-scan at 300
    unknown_scan_gap_s: int = 120           # ... and 120 when unknown (single-scan records)
    venue_visit_gap_s: int = 1800           # sightings of a venue closer than this: one visit
    venue_exposure_s: int = 900             # overlap with a case's visit that counts as exposed
    same_time_slack_s: int = 60             # relay check: "at the same time" within this
    venue_presence_s: int = 600             # a token heard a venue beacon this close: it was there
    max_rpis_per_interval: int = 200        # distinct RPIs one token can plausibly hear / 10 min
    max_key_age_days: int = 15
    max_keys_per_source: int = 30

    def __post_init__(self):
        errors = []
        t = self.attenuation_thresholds_db
        if len(t) != 3 or not t[0] <= t[1] <= t[2]:
            errors.append("attenuation_thresholds_db must be three increasing numbers")
        if len(self.bucket_weights) != 4 or not all(0 <= w <= 2.5 for w in self.bucket_weights):
            errors.append("bucket_weights must be four weights in 0..2.5")
        if self.interval_tolerance < 0:
            errors.append("interval_tolerance must not be negative")
        if self.exposure_threshold_s <= 0:
            errors.append("exposure_threshold_s must be positive")
        if not self.min_tx_power_dbm <= self.max_tx_power_dbm:
            errors.append("min_tx_power_dbm must not exceed max_tx_power_dbm")
        if errors:
            raise ValueError("; ".join(errors))


@dataclass(frozen=True, slots=True)
class Match:
    """One sighting attributed to a sender, with its risk contribution.

    `sender` is the escrowed device's serial (centralized resolution) or the diagnosis key's
    `source` (decentralized matching); `tek` is the sender's TEK of that day. When the
    observer's clock was unset, `first_seen` is the start of the sender's interval instead of
    the record's unreliable time, and `clock_unset` is True.
    """

    observer: str
    seq: int
    sender: str
    tek: bytes
    enin: int
    first_seen: int
    duration_s: int
    tx_power_dbm: int
    attenuation_db: int        # typical: TX power - mean RSSI (>= 0)
    min_attenuation_db: int    # closest: TX power - max RSSI (>= 0)
    weighted_s: float
    clock_unset: bool = False

    @property
    def last_seen(self) -> int:
        return self.first_seen + self.duration_s


@dataclass(frozen=True, slots=True)
class Rejection:
    """A sighting whose RPI matched but which failed validation (`reason`), or a diagnosis key
    that failed validation (`seq` is -1, `observer` is the key's source)."""

    observer: str
    seq: int
    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    matches: list[Match]
    rejections: list[Rejection]


@dataclass(frozen=True, slots=True)
class DailyExposure:
    """Weighted seconds `observer` spent near `sender` on one UTC day (GAEN v2 daily summary)."""

    observer: str
    sender: str
    day: int                    # unix day number: first_seen // 86400
    first_seen: int
    last_seen: int
    duration_s: int             # sum of the sightings' durations
    min_attenuation_db: int
    weighted_s: float
    exposed: bool


@dataclass(frozen=True, slots=True)
class Flag:
    """Something in the data a report must not silently trust."""

    kind: str                   # FLAG_RELAY | FLAG_IMPLAUSIBLE_ENCOUNTERS
    serials: tuple[str, ...]    # the tokens involved
    at: int                     # unix s
    detail: str
    rpi: bytes = b""            # the identifier concerned (relay flags)


@dataclass(frozen=True, slots=True)
class Contact:
    """One counterpart of a case in a case report."""

    serial: str
    role: str
    heard_by: str               # HEARD_BY_CASE | HEARD_BY_CONTACT | HEARD_BY_BOTH
    first_seen: int
    last_seen: int
    duration_s: int
    min_attenuation_db: int
    weighted_s: float           # best UTC day (max over days of the larger side)
    exposed: bool
    days: tuple[DailyExposure, ...]
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VenueVisitor:
    serial: str
    first_seen: int
    last_seen: int
    overlap_s: int
    exposed: bool


@dataclass(frozen=True, slots=True)
class VenueVisit:
    """A case's visit to a venue (time window from the case's sightings of its beacon) and the
    wearers who heard the same beacon in an overlapping window."""

    venue_serial: str
    venue_name: str
    venue_place: str
    start: int
    end: int
    visitors: tuple[VenueVisitor, ...]


@dataclass(frozen=True, slots=True)
class CaseReport:
    case_serial: str
    contacts: tuple[Contact, ...]
    venues: tuple[VenueVisit, ...]
    exposed_serials: tuple[str, ...]     # wearers to call (contacts or venue co-visitors)
    flags: tuple[Flag, ...]
    unresolved_rpis: int                 # RPIs the case heard that no escrowed token sent
    rejections: tuple[Rejection, ...]
