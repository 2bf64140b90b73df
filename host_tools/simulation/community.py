"""A synthetic community: households, wearers, venues with beacons, and where everyone is when.

Seeded and reproducible: the same `CommunityConfig` gives the same community, bit for bit.

Model (parameters and their sources are in docs/simulation.md):
- Households of 2-6 people. Tokens go to the elderly (every member aged 60+) and to a share of
  the younger members (carers, people without a smartphone). Only wearers are simulated: a
  person without a token is invisible to the system and to its evaluation.
- Homes are rows of three 4 m x 4 m rooms; 2-4 homes side by side form a terrace whose homes
  share a party wall, so neighbours can be within 2 m of each other through a wall.
- Nights (22:00-06:00) at home, each in a bedroom (couples share one). By day people move
  between rooms, and go out: the elderly less often than younger wearers.
- Venues: markets (open air), clinics, mosques (prayer sessions), bus rides, neighbourhood
  gatherings, each with opening hours, a size and one venue beacon token at its centre.
  Wearers have a few usual venues; household members sometimes go out together.

Time is cut into 5-minute slots; within a slot everyone's position is fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SLOT_S = 300
SLOTS_PER_DAY = 86400 // SLOT_S
DEFAULT_START_S = 1772323200  # 2026-03-01 00:00 UTC (a Sunday); local time = UTC here

HOME = -1  # location code of "at home" in Community.location

ROOM_M = 4.0
ROOMS_PER_HOME = 3
HOME_WIDTH_M = ROOM_M * ROOMS_PER_HOME

# Environments for the radio model (host_tools.simulation.radio.PATH_LOSS_EXPONENT).
ENV_INDOOR = 0
ENV_OPEN = 1
ENV_BUS = 2


@dataclass(frozen=True)
class VenueKind:
    name: str
    env: int
    size_m: tuple[float, float]
    opens_h: float
    closes_h: float
    stay_slots: tuple[int, int]        # visit length, 5-minute slots (min, max inclusive)
    sessions_h: tuple[float, ...] = ()  # fixed start times (prayers); empty: any time open
    popularity: float = 1.0
    move: float = 1.0                  # chance per slot of moving to another spot


VENUE_KINDS = (
    # Shoppers walk from stall to stall; patients, worshippers, passengers and guests mostly
    # keep their seat or spot.
    VenueKind("market", ENV_OPEN, (60.0, 40.0), 7.0, 13.0, (4, 12), popularity=3.0, move=0.8),
    VenueKind("clinic", ENV_INDOOR, (20.0, 15.0), 8.0, 16.0, (4, 12), popularity=0.8, move=0.15),
    VenueKind("mosque", ENV_INDOOR, (18.0, 14.0), 5.0, 20.5, (4, 7),
              sessions_h=(5.0, 12.5, 15.5, 18.0, 19.5), popularity=2.0, move=0.05),
    VenueKind("bus", ENV_BUS, (11.0, 2.5), 6.0, 20.0, (3, 8), popularity=1.5, move=0.05),
    VenueKind("gathering", ENV_INDOOR, (15.0, 10.0), 15.0, 20.0, (12, 24), popularity=1.2, move=0.2),
)
HOME_MOVE = 0.3                # chance per slot of moving within the same room at home
KIND_BY_NAME = {k.name: k for k in VENUE_KINDS}

AGE_ADULT = 0
AGE_ELDERLY = 1
# Outings per day (Poisson mean): older people leave home less (docs/simulation.md).
OUTINGS_PER_DAY = {AGE_ADULT: 1.6, AGE_ELDERLY: 0.9}
USUAL_VENUES = 4
COMPANION_SHARE = 0.3          # an outing joined by another wearer of the household
YOUNG_WEARER_SHARE = 0.1       # members under 60 who also get a token
HOUSEHOLD_SIZES = (2, 3, 4, 5, 6)
HOUSEHOLD_SIZE_WEIGHTS = (0.30, 0.22, 0.20, 0.16, 0.12)
ROOM_STAY = 0.85               # chance of staying in the same room for the next slot at home


@dataclass(frozen=True)
class CommunityConfig:
    population: int = 1000        # wearers
    days: int = 14
    venues: int | None = None     # None: one venue per 80 wearers (at least 5)
    escrowed_share: float = 0.8
    seed: int = 1
    start_s: int = DEFAULT_START_S

    def venue_count(self) -> int:
        return self.venues if self.venues is not None else max(5, self.population // 80)


@dataclass
class Venue:
    index: int
    kind: VenueKind
    name: str
    centre: tuple[float, float]


@dataclass
class Community:
    config: CommunityConfig
    household: np.ndarray          # (n,) household of each wearer
    age: np.ndarray                # (n,) AGE_*
    escrowed: np.ndarray           # (n,) bool: escrowed identity, else private
    bedroom: np.ndarray            # (n,) room slept in
    terrace: np.ndarray            # (households,) terrace (row of homes sharing walls)
    unit: np.ndarray               # (households,) position of the home in its terrace
    venues: list[Venue]
    location: np.ndarray           # (n, slots) int16: HOME or venue index
    companion: np.ndarray          # (n, slots) int32: wearer this one is out with, or -1
    outings: list[tuple[int, int, int, int]] = field(default_factory=list)  # (wearer, venue, first slot, end slot)

    @property
    def n(self) -> int:
        return len(self.household)

    @property
    def slots(self) -> int:
        return self.location.shape[1]

    @property
    def start_s(self) -> int:
        return self.config.start_s


def build(config: CommunityConfig) -> Community:
    if config.population < 2:
        raise ValueError("a community needs at least 2 wearers")
    if not 1 <= config.days <= 28:
        raise ValueError("days must be 1..28")
    if not 0.0 <= config.escrowed_share <= 1.0:
        raise ValueError("the escrowed share must be between 0 and 1")
    if config.venue_count() < 1:
        raise ValueError("a community needs at least one venue")
    rng = np.random.default_rng([config.seed, 0x5E11])
    household, age, bedroom = _households(config.population, rng)
    n_households = int(household.max()) + 1
    terrace, unit = _terraces(n_households, rng)
    venues = _venues(config.venue_count(), rng)
    escrowed = rng.random(config.population) < config.escrowed_share
    slots = config.days * SLOTS_PER_DAY
    location = np.full((config.population, slots), HOME, dtype=np.int16)
    companion = np.full((config.population, slots), -1, dtype=np.int32)
    community = Community(config, household, age, escrowed, bedroom, terrace, unit, venues,
                          location, companion)
    _activities(community, rng)
    return community


def _households(population: int, rng: np.random.Generator):
    household, age, bedroom = [], [], []
    h = 0
    while len(household) < population:
        size = int(rng.choice(HOUSEHOLD_SIZES, p=HOUSEHOLD_SIZE_WEIGHTS))
        elderly = 1 + int(rng.random() < 0.55)  # one elderly member, or an elderly couple
        younger = size - elderly
        ages = [AGE_ELDERLY] * elderly + [AGE_ADULT] * int((rng.random(younger) < YOUNG_WEARER_SHARE).sum())
        for i, a in enumerate(ages):
            if len(household) == population:
                break
            household.append(h)
            age.append(a)
            # The elderly couple shares the first bedroom; a younger wearer sleeps elsewhere.
            bedroom.append(0 if a == AGE_ELDERLY else 1 + i % 2)
        h += 1
    return (np.array(household, dtype=np.int32), np.array(age, dtype=np.int8),
            np.array(bedroom, dtype=np.int8))


def _terraces(n_households: int, rng: np.random.Generator):
    terrace = np.empty(n_households, dtype=np.int32)
    unit = np.empty(n_households, dtype=np.int32)
    h = t = 0
    while h < n_households:
        size = min(int(rng.integers(2, 5)), n_households - h)
        terrace[h:h + size] = t
        unit[h:h + size] = np.arange(size)
        h += size
        t += 1
    return terrace, unit


def _venues(count: int, rng: np.random.Generator) -> list[Venue]:
    weights = np.array([k.popularity for k in VENUE_KINDS])
    venues = []
    # Every kind at least once (when there is room), then in proportion to popularity.
    kinds = list(range(len(VENUE_KINDS)))[:count]
    kinds += list(rng.choice(len(VENUE_KINDS), size=count - len(kinds), p=weights / weights.sum()))
    counters: dict[str, int] = {}
    for i, k in enumerate(kinds):
        kind = VENUE_KINDS[int(k)]
        counters[kind.name] = counters.get(kind.name, 0) + 1
        venues.append(Venue(i, kind, "%s %d" % (kind.name, counters[kind.name]),
                            (kind.size_m[0] / 2, kind.size_m[1] / 2)))
    return venues


def _activities(c: Community, rng: np.random.Generator) -> None:
    n, days = c.n, c.config.days
    popularity = np.array([v.kind.popularity for v in c.venues])
    usual = np.stack([rng.choice(len(c.venues), size=min(USUAL_VENUES, len(c.venues)), replace=False,
                                 p=popularity / popularity.sum()) for _ in range(n)])
    members: dict[int, list[int]] = {}
    for person, h in enumerate(c.household.tolist()):
        members.setdefault(int(h), []).append(person)
    rate = np.where(c.age == AGE_ELDERLY, OUTINGS_PER_DAY[AGE_ELDERLY], OUTINGS_PER_DAY[AGE_ADULT])
    counts = rng.poisson(rate[:, None], size=(n, days)).clip(0, 3)
    for person in range(n):
        for day in range(days):
            for _ in range(int(counts[person, day])):
                venue = c.venues[int(usual[person, rng.integers(usual.shape[1])])]
                first, end = _visit_slots(venue.kind, day, rng)
                c.location[person, first:end] = venue.index
                c.companion[person, first:end] = -1
                c.outings.append((person, venue.index, first, end))
                mates = [m for m in members[int(c.household[person])] if m != person]
                if mates and rng.random() < COMPANION_SHARE:
                    mate = mates[int(rng.integers(len(mates)))]
                    c.location[mate, first:end] = venue.index
                    c.companion[mate, first:end] = person
                    c.companion[person, first:end] = mate
                    c.outings.append((mate, venue.index, first, end))


def _visit_slots(kind: VenueKind, day: int, rng: np.random.Generator) -> tuple[int, int]:
    stay = int(rng.integers(kind.stay_slots[0], kind.stay_slots[1] + 1))
    if kind.sessions_h:
        start_h = kind.sessions_h[int(rng.integers(len(kind.sessions_h)))] - rng.integers(0, 3) * SLOT_S / 3600
    else:
        latest = max(kind.opens_h, kind.closes_h - stay * SLOT_S / 3600)
        start_h = rng.uniform(kind.opens_h, latest)
    first = day * SLOTS_PER_DAY + int(start_h * 3600 // SLOT_S)
    end = min(first + stay, (day + 1) * SLOTS_PER_DAY)
    return first, end


def is_night(slot_of_day: np.ndarray) -> np.ndarray:
    hour = slot_of_day * SLOT_S / 3600
    return (hour >= 22) | (hour < 6)
