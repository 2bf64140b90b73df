"""The matching engine: pure computation over data the service loads (docs/matching.md).

Interface:
- match_keys(sightings, keys, config, now_s) -> MatchResult        decentralized
- resolve_escrowed(sightings, devices, config, workers) -> MatchResult   centralized
- score_exposures(matches, config) -> [DailyExposure]              GAEN-v2-like risk
- venue_visits(case_matches, devices, sightings, config) -> [VenueVisit]
- abuse_flags(sightings, venue_presence, devices, config) -> [Flag]
- case_report(case_serial, sightings, devices, case_keys, config, now_s, workers) -> CaseReport
"""
from .engine import SightingIndex, match_keys, resolve_escrowed, validate_key
from .flags import abuse_flags
from .model import (FLAG_CLOCK_UNSET, FLAG_IMPLAUSIBLE_ENCOUNTERS, FLAG_RELAY, HEARD_BY_BOTH,
                    HEARD_BY_CASE, HEARD_BY_CONTACT, REPORT_CONFIRMED_CLINICAL_DIAGNOSIS,
                    REPORT_CONFIRMED_TEST, REPORT_RECURSIVE, REPORT_REVOKED, REPORT_SELF_REPORT,
                    REPORT_UNKNOWN, ROLE_VENUE, ROLE_WEARABLE, CaseReport, Contact,
                    DailyExposure, DiagnosisKey, EscrowedDevice, Flag, Match, MatchResult,
                    Rejection, RiskConfig, Sighting, VenueVisit, VenueVisitor)
from .report import case_report
from .risk import score_exposures
from .venues import venue_visits

__all__ = [
    "match_keys", "resolve_escrowed", "score_exposures", "venue_visits", "abuse_flags",
    "case_report", "validate_key", "SightingIndex",
    "Sighting", "DiagnosisKey", "EscrowedDevice", "RiskConfig", "Match", "MatchResult",
    "Rejection", "DailyExposure", "Flag", "Contact", "VenueVisit", "VenueVisitor", "CaseReport",
    "FLAG_CLOCK_UNSET", "FLAG_RELAY", "FLAG_IMPLAUSIBLE_ENCOUNTERS", "HEARD_BY_CASE",
    "HEARD_BY_CONTACT", "HEARD_BY_BOTH", "ROLE_WEARABLE", "ROLE_VENUE", "REPORT_UNKNOWN",
    "REPORT_CONFIRMED_TEST", "REPORT_CONFIRMED_CLINICAL_DIAGNOSIS", "REPORT_SELF_REPORT",
    "REPORT_RECURSIVE", "REPORT_REVOKED",
]
