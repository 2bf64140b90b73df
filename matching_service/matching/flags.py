"""Relay and abuse flags: things a report shows instead of silently trusting.

- relay: the same RPI heard at the same time (within config.same_time_slack_s) by two tokens
  that were at different venues then (each heard a venue beacon within config.venue_presence_s,
  and the two sets of venues share no place). One advertiser cannot be in two places: somebody
  is rebroadcasting identifiers.
- implausible_encounters: a token that heard more distinct RPIs in one 10-minute interval than
  config.max_rpis_per_interval (a flooded or forged log).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations

from .engine import INTERVAL_S
from .model import (FLAG_IMPLAUSIBLE_ENCOUNTERS, FLAG_RELAY, ROLE_VENUE, EscrowedDevice, Flag,
                    Match, RiskConfig, Sighting)


def abuse_flags(sightings: Iterable[Sighting], venue_presence: Iterable[Match],
                devices: Iterable[EscrowedDevice], config: RiskConfig = RiskConfig()
                ) -> list[Flag]:
    """Flags over `sightings`. `venue_presence` are sightings of venue beacons already resolved
    (device_sightings / resolve_escrowed with venue devices): they say where each token was.
    `devices` supplies the venues' names and places. Sorted by time."""
    sightings = list(sightings)
    venues = {d.serial: d for d in devices if d.role == ROLE_VENUE}
    presence: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for m in venue_presence:
        presence[m.observer].append((m.first_seen - config.venue_presence_s,
                                     m.last_seen + config.venue_presence_s, m.sender))

    def place(serial: str) -> str:
        venue = venues.get(serial)
        return (venue.venue_place if venue and venue.venue_place else serial)

    def name(serial: str) -> str:
        venue = venues.get(serial)
        return venue.venue_name if venue and venue.venue_name else serial

    def venues_at(observer: str, start: int, end: int) -> set[str]:
        return {v for a, b, v in presence.get(observer, ()) if a <= end and b >= start}

    flags: list[Flag] = []
    per_interval: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for s in sightings:
        per_interval[(s.observer, s.first_seen // INTERVAL_S)].add(s.rpi)
    worst: dict[str, tuple[int, int]] = {}
    for (observer, interval), rpis in per_interval.items():
        n = len(rpis)
        if n > config.max_rpis_per_interval and n > worst.get(observer, (0, 0))[0]:
            worst[observer] = (n, interval)
    for observer, (n, interval) in worst.items():
        flags.append(Flag(FLAG_IMPLAUSIBLE_ENCOUNTERS, (observer,), interval * INTERVAL_S,
                          "%s heard %d different identifiers within 10 minutes (more than %d is "
                          "implausible)" % (observer, n, config.max_rpis_per_interval)))

    by_rpi: dict[bytes, list[Sighting]] = defaultdict(list)
    for s in sightings:
        by_rpi[s.rpi].append(s)
    reported: set[tuple[bytes, str, str]] = set()
    for rpi, heard in by_rpi.items():
        if len({s.observer for s in heard}) < 2:
            continue
        for a, b in combinations(sorted(heard, key=lambda s: (s.observer, s.first_seen)), 2):
            if a.observer == b.observer or (rpi, a.observer, b.observer) in reported:
                continue
            if max(a.first_seen, b.first_seen) - min(a.last_seen, b.last_seen) > \
                    config.same_time_slack_s:
                continue
            va = venues_at(a.observer, a.first_seen, a.last_seen)
            vb = venues_at(b.observer, b.first_seen, b.last_seen)
            if not va or not vb or {place(v) for v in va} & {place(v) for v in vb}:
                continue
            reported.add((rpi, a.observer, b.observer))
            flags.append(Flag(
                FLAG_RELAY, (a.observer, b.observer), max(a.first_seen, b.first_seen),
                "identifier %s heard at the same time at %s (by %s) and at %s (by %s)" % (
                    rpi[:4].hex(), ", ".join(sorted(name(v) for v in va)), a.observer,
                    ", ".join(sorted(name(v) for v in vb)), b.observer),
                rpi=rpi))
    flags.sort(key=lambda f: (f.at, f.kind, f.serials))
    return flags
