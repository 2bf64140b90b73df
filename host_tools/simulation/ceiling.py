"""The best precision any scoring of the tokens' radio measurements could reach.

The risk model decides from attenuations, and the question for a ministry is whether a better
model would find close contacts with fewer false alarms, or whether the radio itself is the
limit. The simulator knows, for every pair of wearers in every 5-minute slot, the mean
attenuation both tokens measure of each other (path loss, walls, body, TX spread: radio.py)
and whether they were within 2 m in the same space. A token samples that mean through the
per-window fading, once per scan window. So the classifier that knows all this does best:

- per slot, P(close | both sides' measured attenuation), calibrated on every pair-slot of the
  run itself (in-sample: optimistic, as a ceiling should be);
- per pair and day, P(at least 15 close minutes) from those slot probabilities (slots
  independent given their attenuation);
- per wearer, the best day with any case; ranked, the precision where recall reaches the goal.

It assumes every scan window hears the pair and that the service sees each 5-minute slot on
its own (token records merge a 10-minute interval): real scoring can only do worse. It is
computed for each power profile's scan windows per slot, for infinite sampling (no fading
left: the limit of the physics), and for infinite sampling without body shadowing (what the
body in the path costs).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from . import radio
from .community import SLOT_S

BIN_DB = 0.5
BINS = 400                 # 0 .. 200 dB of attenuation
# Pair-slots measured beyond this are never close (a close pair reads at most about 75 dB, body
# and TX spread included) and stay beyond it after fading: left out, which keeps the ceiling's
# cost to the 3 in 10 pair-slots that matter.
FAR_DB = 100.0
INFINITE = "infinite sampling"
NO_BODY = "infinite sampling, no body shadowing"


@dataclass
class DayPart:
    """What one day contributes: per sampling, a histogram of (close, all) pair-slots by
    attenuation bin over every pair, and the bins of the pair-slots that involve a case."""

    hist: dict          # sampling -> (close counts, all counts), arrays of BINS
    pair_day: np.ndarray  # int64 a * n + b of each case pair-slot (a < b)
    close: np.ndarray   # bool
    bins: dict          # sampling -> int16 bin of each case pair-slot


def windows_per_slot(prof: dict) -> float:
    """Scan windows a token of this power profile opens in one slot, on average."""
    every = prof.get("wake_every_s") or sum(prof["scan_every_s"]) / 2
    return SLOT_S / every


def samplings_for(profiles: dict) -> dict:
    """name -> (scan windows per slot per side or None for no fading, body shadowing kept):
    the profiles' own sampling, infinite sampling, and infinite sampling without the body."""
    out = {INFINITE: (None, True), NO_BODY: (None, False)}
    out.update({name: (windows_per_slot(prof), True) for name, prof in profiles.items()})
    return out


def day_part(a, b, att_mean, body_db, close, is_case, n: int, samplings: dict,
             rng: np.random.Generator) -> DayPart:
    """`att_mean`: the attenuation both sides measure on average in each pair-slot (a < b),
    `body_db` the body shadowing in it; `samplings`: see samplings_for."""
    near = np.asarray(att_mean) < FAR_DB
    a, b, att_mean, body_db, close = (np.asarray(x)[near] for x in (a, b, att_mean, body_db, close))
    hist, bins = {}, {}
    focus = is_case[a] | is_case[b]
    for name, (k, body) in samplings.items():
        att = att_mean.astype(np.float64)
        if not body:
            att = att - body_db
        if k is not None:
            # each side hears floor(k) or ceil(k) windows; both sides' mean averages them all
            per_side = np.floor(k) + (rng.random((2, len(att))) < k - np.floor(k))
            windows = np.maximum(per_side.sum(axis=0), 1)
            att = att + rng.normal(0.0, 1.0, len(att)) * radio.FADING_SIGMA_DB / np.sqrt(windows)
        bn = np.clip((att / BIN_DB).astype(np.int64), 0, BINS - 1)
        hist[name] = (np.bincount(bn[close], minlength=BINS), np.bincount(bn, minlength=BINS))
        bins[name] = bn[focus].astype(np.int16)
    return DayPart(hist, a[focus].astype(np.int64) * n + b[focus], close[focus], bins)


def at_least(p_slots: np.ndarray, group: np.ndarray, groups: int, m: int) -> np.ndarray:
    """P(at least m of a group's independent events), events with probabilities p_slots
    belonging to group[i] in 0..groups-1."""
    below = np.zeros((m, groups))  # below[j]: P(exactly j so far), j < m
    below[0] = 1.0
    order = np.argsort(group, kind="stable")
    g, p = group[order], p_slots[order]
    rank = np.arange(len(g)) - np.searchsorted(g, g, "left")
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        sel = rank == r
        gi, pi = g[sel], p[sel]
        new = below[:, gi] * (1.0 - pi)
        new[1:] += below[:-1, gi] * pi
        below[:, gi] = new
    return 1.0 - below.sum(axis=0)


def precision_at_recall(score: dict, exposed: set, target: float) -> float | None:
    """Precision of the highest-scored wearers at the first rank where recall reaches target."""
    if not exposed:
        return None
    found = 0
    for rank, (wearer, _) in enumerate(sorted(score.items(), key=lambda x: -x[1]), 1):
        found += wearer in exposed
        if found >= target * len(exposed):
            return round(found / rank, 4)
    return None


def ceiling(parts: list[DayPart], is_case: np.ndarray, n: int, close_slots: int,
            target_recall: float) -> dict:
    """Per sampling: the precision at target_recall of the best scoring of wearers exposed to
    any case (a close contact: close_slots close slots on one day)."""
    out = {}
    for name in parts[0].hist:
        close_n = sum(p.hist[name][0] for p in parts)
        all_n = sum(p.hist[name][1] for p in parts)
        p_close = close_n / np.maximum(all_n, 1)
        score: dict = defaultdict(float)
        exposed: set = set()
        for part in parts:
            keys, group = np.unique(part.pair_day, return_inverse=True)
            p_day = at_least(p_close[part.bins[name]], group, len(keys), close_slots)
            truth = np.bincount(group, weights=part.close, minlength=len(keys)) >= close_slots
            for key, p, t in zip(keys.tolist(), p_day.tolist(), truth.tolist()):
                a, b = divmod(key, n)
                for wearer, other in ((a, b), (b, a)):
                    if is_case[other] and not is_case[wearer]:
                        score[wearer] = max(score[wearer], p)
                        if t:
                            exposed.add(wearer)
        out[name] = precision_at_recall(score, exposed, target_recall)
    return out
