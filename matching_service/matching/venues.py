"""Venue visits: when the case was at a venue (from its sightings of the venue's beacon) and
which wearers heard the same beacon in an overlapping window."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from .engine import INTERVAL_S, SightingIndex, _as_index, device_sightings
from .model import ROLE_VENUE, EscrowedDevice, Match, RiskConfig, Sighting, VenueVisit, VenueVisitor


def merge_windows(windows: Iterable[tuple[int, int]], gap_s: int) -> list[tuple[int, int]]:
    """Merge (start, end) windows whose gaps are at most `gap_s`; sorted by start."""
    merged: list[list[int]] = []
    for start, end in sorted(windows):
        if merged and start - merged[-1][1] <= gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def venue_visits(case_matches: Iterable[Match], devices: Iterable[EscrowedDevice],
                 sightings: Sequence[Sighting] | SightingIndex,
                 config: RiskConfig = RiskConfig()) -> list[VenueVisit]:
    """The case's venue visits and their co-visitors.

    `case_matches` are the case's own sightings resolved to escrowed devices (resolve_escrowed);
    those whose sender is a venue beacon become visits: windows merged when the gap is at most
    config.venue_visit_gap_s. For each visit the venue's RPIs over the window (+- the interval
    tolerance) are looked up in `sightings` (the stored logs); every other observer whose own
    merged window touches the visit is a visitor, `exposed` when the overlap reaches
    config.venue_exposure_s. Sorted by start time.
    """
    case_matches = list(case_matches)
    venues = {d.serial: d for d in devices if d.role == ROLE_VENUE}
    case_observers = {m.observer for m in case_matches}
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for m in case_matches:
        if m.sender in venues:
            windows[m.sender].append((m.first_seen, m.last_seen))
    if not windows:
        return []
    index = _as_index(sightings)
    tol = config.interval_tolerance
    visits = []
    for serial, ws in windows.items():
        venue = venues[serial]
        for start, end in merge_windows(ws, config.venue_visit_gap_s):
            found = device_sightings(venue, start // INTERVAL_S - tol, end // INTERVAL_S + tol,
                                     index, config)
            per_observer: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for m in found.matches:
                if m.observer not in case_observers:
                    per_observer[m.observer].append((m.first_seen, m.last_seen))
            visitors = []
            for observer, ows in sorted(per_observer.items()):
                touching = [(a, b) for a, b in merge_windows(ows, config.venue_visit_gap_s)
                            if a <= end and b >= start]
                if not touching:
                    continue
                overlap = sum(max(0, min(b, end) - max(a, start)) for a, b in touching)
                visitors.append(VenueVisitor(
                    serial=observer, first_seen=min(a for a, _ in touching),
                    last_seen=max(b for _, b in touching), overlap_s=overlap,
                    exposed=overlap >= config.venue_exposure_s))
            visits.append(VenueVisit(venue_serial=serial, venue_name=venue.venue_name,
                                     venue_place=venue.venue_place, start=start, end=end,
                                     visitors=tuple(visitors)))
    visits.sort(key=lambda v: (v.start, v.venue_serial))
    return visits
