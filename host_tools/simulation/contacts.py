"""Positions, ground truth and radio links, slot by slot, vectorised with numpy.

For each 5-minute slot every wearer has a position: in a room of their home, or somewhere in a
venue (next to the household member they came with, if any). Two wearers in the same terrace of
homes or the same venue are a pair; for each pair and slot we know the distance, the walls
between them, and so:

- ground truth: a close-contact slot when they are within 2 m in the same space (no wall
  between them); per pair and UTC day the close seconds add up, and 15 minutes make a close
  contact (the definition public-health agencies use);
- radio links: the mean RSSI each hears the other at (radio.py), kept when it could ever be
  heard; venue beacons give one-way links to everyone at their venue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ceiling, radio
from .community import (ENV_INDOOR, HOME, HOME_MOVE, HOME_WIDTH_M, ROOM_M, ROOM_STAY, ROOMS_PER_HOME,
                        SLOT_S, SLOTS_PER_DAY, Community, is_night)

SETTINGS = ("home", "indoor venue", "open air", "bus")  # Links.setting: home, then ENV_* + 1
CLOSE_CONTACT_M = 2.0
CLOSE_CONTACT_S = 900


@dataclass
class Links:
    """Directed radio links, day by day and within a day grouped by observer: the links of
    observer i on day d are positions index[d, i] to index[d, i + 1]. Advertisers >= n are
    venue beacons."""

    observer: np.ndarray   # int32
    slot: np.ndarray       # int32
    advertiser: np.ndarray  # int32
    rssi: np.ndarray       # float32, mean dBm before per-window fading
    distance: np.ndarray   # float32, m
    in_range: np.ndarray   # int16, advertisers this observer could hear in this slot
    setting: np.ndarray    # int8, SETTINGS index: where the observer was
    index: np.ndarray      # (days, n + 1) int64 offsets, see above

    def __len__(self) -> int:
        return len(self.observer)

    def of(self, observer: int) -> np.ndarray:
        """Positions of every link of one observer, over all days."""
        ix = self.index
        return np.concatenate([np.arange(ix[d, observer], ix[d, observer + 1]) for d in range(len(ix))])


@dataclass
class Truth:
    """Close seconds per unordered wearer pair and day (a < b), for pairs with any close slot."""

    a: np.ndarray
    b: np.ndarray
    day: np.ndarray
    seconds: np.ndarray
    wall_pairs: set        # (a, b) pairs ever linked through a party wall
    ceiling_parts: list | None = None  # ceiling.DayPart per day, when asked for


@dataclass
class CeilingInput:
    """What the precision ceiling (ceiling.py) needs from every pair-slot."""

    is_case: np.ndarray    # bool per wearer
    tx_advertised: int     # dBm the tokens advertise (attenuation = this - RSSI)
    samplings: dict        # ceiling.samplings_for


def is_close(distance_m, walls):
    """A close-contact slot: within CLOSE_CONTACT_M in the same space (no wall between)."""
    return (np.asarray(distance_m) < CLOSE_CONTACT_M) & (np.asarray(walls) == 0)


def close_seconds(a, b, distance_m, walls, n: int, day: int):
    """Ground truth of one day from pair-slots (a < b, one entry per pair and 5-minute slot):
    (a, b, day, seconds) for every pair with at least one slot within CLOSE_CONTACT_M in the
    same space (no wall between them). A close contact is seconds >= CLOSE_CONTACT_S."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    close = is_close(distance_m, walls)
    uniq, counts = np.unique(a[close] * n + b[close], return_counts=True)
    return (uniq // n, uniq % n, np.full(len(uniq), day, np.int32), counts * SLOT_S)


def close_contacts(tracks: dict, slot_s: int = SLOT_S) -> dict:
    """Close contacts from hand-made tracks: {person: [(slot, place, x, y), ...]} where place
    is any hashable (two people are in the same space when their places are equal). Returns
    {(a, b, day): close seconds} for pairs reaching CLOSE_CONTACT_S on that day."""
    by_slot: dict = {}
    for person, track in tracks.items():
        for slot, place, x, y in track:
            by_slot.setdefault(slot, []).append((person, place, x, y))
    a, b, d, w, days = [], [], [], [], []
    for slot, here in by_slot.items():
        for i in range(len(here)):
            for j in range(i + 1, len(here)):
                p, q = sorted((here[i], here[j]))
                a.append(p[0])
                b.append(q[0])
                d.append(float(np.hypot(p[2] - q[2], p[3] - q[3])))
                w.append(0 if p[1] == q[1] else 1)
                days.append(slot * slot_s // 86400)
    out = {}
    people = max(tracks) + 1 if tracks else 1
    for day in sorted(set(days)):
        sel = [k for k, x in enumerate(days) if x == day]
        ta, tb, _, sec = close_seconds([a[k] for k in sel], [b[k] for k in sel], [d[k] for k in sel],
                                       [w[k] for k in sel], people, day)
        for x, y, s in zip(ta.tolist(), tb.tolist(), sec.tolist()):
            if s * slot_s // SLOT_S >= CLOSE_CONTACT_S:
                out[(x, y, day)] = s * slot_s // SLOT_S
    return out


def tx_radiated(c: Community, tx_power_dbm: int, seed: int) -> np.ndarray:
    """Radiated TX power of each token (wearers, then venue beacons)."""
    rng = np.random.default_rng([seed, 0x7C])
    total = c.n + len(c.venues)
    return (tx_power_dbm + rng.normal(0.0, radio.TX_SPREAD_SIGMA_DB, total)).astype(np.float32)


_SHARED: dict = {}


def _day_worker(day: int):
    return _day(_SHARED["c"], _SHARED["tx"], day, _SHARED["ceil"])


def compute(c: Community, tx: np.ndarray, processes: int = 1,
            ceil: CeilingInput | None = None) -> tuple[Links, Truth]:
    """Links and ground truth for the whole run (and the precision ceiling's inputs, given
    `ceil`); days are independent, so they run in `processes` forked workers."""
    days = list(range(c.config.days))
    if processes > 1 and len(days) > 1:
        import multiprocessing

        _SHARED.update(c=c, tx=tx, ceil=ceil)
        try:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                out = pool.map(_day_worker, days, chunksize=1)
        finally:
            _SHARED.clear()
    else:
        out = [_day(c, tx, day, ceil) for day in days]
    parts = [o[0] for o in out]
    truth_parts = [o[1] for o in out]
    wall_pairs = set().union(*(o[2] for o in out))
    index = np.zeros((len(parts), c.n + 1), dtype=np.int64)
    offset = 0
    for d, p in enumerate(parts):
        index[d] = offset + np.searchsorted(p[0], np.arange(c.n + 1))
        offset += len(p[0])
    links = Links(*(np.concatenate([p[i] for p in parts]) for i in range(7)), index)
    t = [np.concatenate([p[i] for p in truth_parts]) for i in range(4)]
    ceiling_parts = [o[3] for o in out] if ceil is not None else None
    return links, Truth(t[0], t[1], t[2], t[3], wall_pairs, ceiling_parts)


def _positions(c: Community, day: int, rng: np.random.Generator):
    n = c.n
    s0, s1 = day * SLOTS_PER_DAY, (day + 1) * SLOTS_PER_DAY
    loc = c.location[:, s0:s1].astype(np.int32)
    slots = s1 - s0
    night = is_night(np.arange(slots))[None, :]
    # Rooms by day: a Markov chain (stay with ROOM_STAY), forward-filled from the change points.
    change = rng.random((n, slots)) > ROOM_STAY
    change[:, 0] = True
    drawn = rng.integers(0, ROOMS_PER_HOME, (n, slots))
    idx = np.where(change, np.arange(slots)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    room = np.take_along_axis(drawn, idx, axis=1)
    room = np.where(night, c.bedroom[:, None], room)
    home_x0 = (c.unit[c.household] * HOME_WIDTH_M)[:, None]
    spread = np.where(night, 0.6, 1.6)  # in bed vs about the room
    # A spot is kept until the person moves (new room, HOME_MOVE, a venue's `move` share).
    prev = np.concatenate([np.full((n, 1), -2, loc.dtype), loc[:, :-1]], axis=1)
    prev_room = np.concatenate([np.full((n, 1), -1, room.dtype), room[:, :-1]], axis=1)
    move_share = np.array([v.kind.move for v in c.venues])
    p_move = np.where(loc == HOME, HOME_MOVE, move_share[np.maximum(loc, 0)])
    moved = (rng.random((n, slots)) < p_move) | (loc != prev) | ((loc == HOME) & (room != prev_room))
    moved[:, 0] = True
    keep = np.where(moved, np.arange(slots)[None, :], 0)
    np.maximum.accumulate(keep, axis=1, out=keep)
    jx = np.take_along_axis(rng.uniform(-1, 1, (n, slots)), keep, axis=1)
    jy = np.take_along_axis(rng.uniform(-1, 1, (n, slots)), keep, axis=1)
    hx = home_x0 + room * ROOM_M + ROOM_M / 2 + jx * spread
    hy = ROOM_M / 2 + jy * spread
    # Venues: anywhere in the venue; companions stand next to the one they came with.
    sizes = np.array([v.kind.size_m for v in c.venues])
    at = np.maximum(loc, 0)
    vx = (jx + 1) / 2 * sizes[at, 0]
    vy = (jy + 1) / 2 * sizes[at, 1]
    comp = c.companion[:, s0:s1]
    follower = (comp >= 0) & (comp < np.arange(n)[:, None])
    fi, fs = np.nonzero(follower)
    lead = comp[fi, fs]
    # A later outing of the lead may have overwritten the slot: follow only where both are
    # at the same venue.
    together = loc[lead, fs] == loc[fi, fs]
    fi, fs, lead = fi[together], fs[together], lead[together]
    angle = rng.uniform(0, 2 * np.pi, len(fi))
    gap = rng.uniform(0.5, 1.2, len(fi))
    vx[fi, fs] = vx[lead, fs] + gap * np.cos(angle)
    vy[fi, fs] = vy[lead, fs] + gap * np.sin(angle)
    home = loc == HOME
    x = np.where(home, hx, vx)
    y = np.where(home, hy, vy)
    terraces = int(c.terrace.max()) + 1
    group = np.where(home, c.terrace[c.household][:, None], terraces + loc)
    return loc, x, y, group, home


def _day(c: Community, tx: np.ndarray, day: int, ceil: CeilingInput | None = None):
    rng = np.random.default_rng([c.config.seed, 0xDA, day])
    n = c.n
    loc, x, y, group, home = _positions(c, day, rng)
    slots = loc.shape[1]
    s0 = day * SLOTS_PER_DAY
    envs = np.array([v.kind.env for v in c.venues], dtype=np.int8)
    # Rows (person, slot), grouped by (slot, group): every pair inside a group is a pair.
    person = np.repeat(np.arange(n, dtype=np.int32), slots)
    slot = np.tile(np.arange(slots, dtype=np.int32), n)
    key = slot.astype(np.int64) * (int(group.max()) + 1) + group.ravel()
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    sizes = np.diff(np.r_[starts, len(key_sorted)])
    pa, pb = [], []
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    for g in np.unique(sizes).tolist():
        first = starts[sizes == g]
        i, j = np.triu_indices(g, 1)
        pa.append(order[(first[:, None] + i[None, :]).ravel()])
        pb.append(order[(first[:, None] + j[None, :]).ravel()])
    ra = np.concatenate(pa) if pa else np.zeros(0, np.int64)
    rb = np.concatenate(pb) if pb else np.zeros(0, np.int64)
    a, b, sl = person[ra], person[rb], slot[ra]
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    ax, ay, bx, by = x[a, sl], y[a, sl], x[b, sl], y[b, sl]
    dist = np.hypot(ax - bx, ay - by)
    at_home = home[a, sl]
    lo, hi = np.minimum(ax, bx), np.maximum(ax, bx)
    walls_all = np.floor(hi / ROOM_M) - np.floor(lo / ROOM_M)
    party = np.floor(hi / HOME_WIDTH_M) - np.floor(lo / HOME_WIDTH_M)
    walls_all = np.where(at_home, walls_all, 0)
    party = np.where(at_home, party, 0)
    walls_db = (walls_all - party) * radio.INTERIOR_WALL_DB + party * radio.PARTY_WALL_DB
    env = np.where(at_home, ENV_INDOOR, envs[np.maximum(loc[a, sl], 0)])
    body = radio.body_loss(rng, len(a))
    base = radio.mean_rssi(0.0, dist, env, walls_db, body)
    rssi_ab = base + tx[b]  # a hears b
    rssi_ba = base + tx[a]

    truth = close_seconds(a, b, dist, walls_all, n, day)
    part = None
    if ceil is not None:
        # both sides' mean attenuation: TX power advertised minus the mean of what each hears
        att = ceil.tx_advertised - (base + (tx[a] + tx[b]) / 2.0)
        part = ceiling.day_part(a, b, att, body, is_close(dist, walls_all), ceil.is_case, n, ceil.samplings,
                                np.random.default_rng([c.config.seed, 0xCE1, day]))
    through = np.unique(a[party > 0].astype(np.int64) * n + b[party > 0])
    walls = set(zip((through // n).tolist(), (through % n).tolist()))

    keep_ab = rssi_ab >= radio.CUTOFF_DBM
    keep_ba = rssi_ba >= radio.CUTOFF_DBM
    obs = [a[keep_ab], b[keep_ba]]
    adv = [b[keep_ab], a[keep_ba]]
    sls = [sl[keep_ab], sl[keep_ba]]
    rss = [rssi_ab[keep_ab], rssi_ba[keep_ba]]
    dss = [dist[keep_ab], dist[keep_ba]]
    setting = np.where(at_home, 0, env + 1).astype(np.int8)
    sets = [setting[keep_ab], setting[keep_ba]]

    # Venue beacons at the centre of their venue: one-way links to everyone there.
    vi, vs = np.nonzero(loc >= 0)
    if len(vi):
        v = loc[vi, vs]
        centre = np.array([ven.centre for ven in c.venues])
        d = np.hypot(x[vi, vs] - centre[v, 0], y[vi, vs] - centre[v, 1])
        r = radio.mean_rssi(tx[n + v], d, envs[v], 0.0, radio.body_loss(rng, len(vi)))
        k = r >= radio.CUTOFF_DBM
        obs.append(vi[k].astype(np.int32))
        adv.append((n + v[k]).astype(np.int32))
        sls.append(vs[k].astype(np.int32))
        rss.append(r[k])
        dss.append(d[k])
        sets.append((envs[v[k]] + 1).astype(np.int8))
    o = np.concatenate(obs).astype(np.int32)
    s = np.concatenate(sls).astype(np.int32)
    okey = o.astype(np.int64) * slots + s
    in_range = np.bincount(okey, minlength=n * slots)[okey].astype(np.int16)  # per (observer, slot)
    order = np.argsort(o, kind="stable")  # grouped by observer (Links.index)
    links = (o[order], (s + s0).astype(np.int32)[order], np.concatenate(adv).astype(np.int32)[order],
             np.concatenate(rss).astype(np.float32)[order], np.concatenate(dss).astype(np.float32)[order],
             in_range[order], np.concatenate(sets)[order])
    return links, truth, walls, part
