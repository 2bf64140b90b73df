"""Scenario files: who is near whom, and when, for virtual tokens sharing one air.

A scenario is JSON lines (one object per line; blank lines and lines starting with `#` are
ignored). Times are seconds from the scenario start, in world time. See docs/virtual-token.md.

    {"start": "2026-03-02T08:00:00Z", "time_scale": 60}
    {"contact": ["alice", "bob"], "from": 0, "to": 900, "rssi": -60}
    {"contact": ["alice", "market"], "from": 1200, "to": 3000, "rssi": -75}
    {"hear": "alice", "at": 600, "adv": "02011a...", "rssi": -70}

Every line is validated; the first problem raises ScenarioError naming the file and line.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from host_tools.errors import UsageError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
RSSI_RANGE = (-127, 20)
MAX_ADV_BYTES = 255  # extended advertising; legacy advertisements are at most 31
MAX_TIME_SCALE = 10_000.0


class ScenarioError(UsageError):
    """A scenario line is malformed; the message names the file and line number."""


@dataclass(frozen=True)
class Contact:
    names: tuple[str, ...]
    from_s: float
    to_s: float
    rssi: int


@dataclass(frozen=True)
class Sighting:
    """A foreign advertiser (a phone) heard by one token at the first scan ending after `at_s`
    and starting before `to_s`."""

    name: str
    at_s: float
    to_s: float
    adv: bytes
    rssi: int


@dataclass
class Scenario:
    start_s: float | None = None
    time_scale: float | None = None
    fast_for_s: float | None = None  # world seconds run at time_scale; then 1x (None: all)
    contacts: list[Contact] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)

    def names(self) -> set[str]:
        found = {s.name for s in self.sightings}
        for contact in self.contacts:
            found.update(contact.names)
        return found


def parse_time(value) -> float:
    """Unix seconds from a number or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError("must be unix seconds or an ISO 8601 time")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be non-negative unix seconds")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    raise ValueError("must be unix seconds or an ISO 8601 time")


def _seconds(entry: dict, key: str, required: bool = True, default=None) -> float:
    if key not in entry:
        if required:
            raise ValueError(f"{key!r} is missing")
        return default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key!r} must be a non-negative number of seconds from the start")
    return float(value)


def _rssi(entry: dict) -> int:
    value = entry.get("rssi", -60)
    if isinstance(value, bool) or not isinstance(value, int) or not RSSI_RANGE[0] <= value <= RSSI_RANGE[1]:
        raise ValueError(f"'rssi' must be an integer dBm between {RSSI_RANGE[0]} and {RSSI_RANGE[1]}")
    return value


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(f"{what} must be a token name (letters, digits, '_', '.', '-'; up to 32)")
    return value


def _check_keys(entry: dict, allowed: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")


def _parse_entry(entry, scenario: Scenario, first: bool) -> None:
    if not isinstance(entry, dict):
        raise ValueError("each line must be a JSON object")
    if "start" in entry or "time_scale" in entry or "fast_for" in entry:
        if not first:
            raise ValueError("the header (start, time_scale, fast_for) must be the first entry")
        _check_keys(entry, {"start", "time_scale", "fast_for"})
        if "fast_for" in entry:
            fast_for = entry["fast_for"]
            if isinstance(fast_for, bool) or not isinstance(fast_for, (int, float)) or fast_for <= 0:
                raise ValueError("'fast_for' must be a number of seconds above 0")
            scenario.fast_for_s = float(fast_for)
        if "start" in entry:
            try:
                scenario.start_s = parse_time(entry["start"])
            except ValueError as error:
                raise ValueError(f"'start' {error}") from None
        if "time_scale" in entry:
            scale = entry["time_scale"]
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_TIME_SCALE:
                raise ValueError(f"'time_scale' must be a number above 0 and at most {MAX_TIME_SCALE:g}")
            scenario.time_scale = float(scale)
        return
    if "contact" in entry:
        _check_keys(entry, {"contact", "from", "to", "rssi"})
        names = entry["contact"]
        if not isinstance(names, list) or len(names) < 2:
            raise ValueError("'contact' must list at least two token names")
        names = tuple(_name(n, "each name in 'contact'") for n in names)
        if len(set(names)) != len(names):
            raise ValueError("'contact' names a token twice")
        from_s = _seconds(entry, "from")
        to_s = _seconds(entry, "to")
        if to_s < from_s:
            raise ValueError("'to' is before 'from'")
        scenario.contacts.append(Contact(names, from_s, to_s, _rssi(entry)))
        return
    if "hear" in entry:
        _check_keys(entry, {"hear", "at", "to", "adv", "rssi"})
        name = _name(entry["hear"], "'hear'")
        at_s = _seconds(entry, "at")
        to_s = _seconds(entry, "to", required=False, default=math.inf)
        if to_s < at_s:
            raise ValueError("'to' is before 'at'")
        raw = entry.get("adv")
        if not isinstance(raw, str):
            raise ValueError("'adv' must be the advertisement data as a hex string")
        try:
            adv = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("'adv' is not valid hex") from None
        if not 0 < len(adv) <= MAX_ADV_BYTES:
            raise ValueError(f"'adv' must be 1 to {MAX_ADV_BYTES} bytes")
        scenario.sightings.append(Sighting(name, at_s, to_s, adv, _rssi(entry)))
        return
    raise ValueError("expected a header (start/time_scale), a 'contact' or a 'hear' entry")


def parse_lines(lines, source: str = "scenario") -> Scenario:
    scenario = Scenario()
    first = True
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            entry = json.loads(text)
        except ValueError as error:
            raise ScenarioError(f"{source} line {number}: not valid JSON ({error.msg})") from None
        try:
            _parse_entry(entry, scenario, first)
        except ValueError as error:
            raise ScenarioError(f"{source} line {number}: {error}") from None
        first = False
    return scenario


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read scenario file {path}: {error}") from None
    return parse_lines(text.splitlines(), source=str(path))
