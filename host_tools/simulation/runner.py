"""Run a community simulation end to end and measure it.

    community -> positions, ground truth, radio links (numpy)
    -> each token's identifiers, scan windows, aggregation, records (firmware modules)
    -> clinic path (outbox + upload format, or the record codec alone at scale)
    -> matching service engine: decentralized matching, escrowed case reports, risk scoring
    -> metrics against the ground truth

`simulate(config, profiles)` runs several power profiles over one community: everything that
does not depend on the radio schedule (community, links, identifiers) is computed once.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from host_tools import power
from matching_service.matching import RiskConfig
from tokenfw import records, scheduler
from tokenfw.radio import ADV_EVENT_US

from . import ceiling, clinic, clocks, contacts, exposure, radio, tokens
from .community import SLOT_S, CommunityConfig, build

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"
FLASH_USABLE_SHARE = 0.969    # littlefs overhead: benchmarks/results/firmware_core.md (316.6 days at 200/day)
RETENTION_POLICY_DAYS = 21    # docs/design.md: the token keeps 21 days
THRESHOLDS_S = (300, 420, 480, 540, 600, 660, 720, 780, 900, 1200, 1500, 1800, 2700, 3600)
GOAL_RECALL = 0.9             # issue 6: recall >= 0.9 at precision >= 0.8
GOAL_PRECISION = 0.8
DURATION_BINS_MIN = (0, 5, 10, 15, 20, 30, 45, 60, 120, 100000)


class SimulationError(ValueError):
    """A simulation parameter that cannot be used (message is one sentence)."""


@dataclass(frozen=True)
class SimulationConfig:
    population: int = 1000
    days: int = 14
    venues: int | None = None
    profile: str = "continuous"
    board: str = "esp32-devkitc"
    escrowed_share: float = 0.8
    positive_share: float = 0.005
    seed: int = 1
    processes: int = 0              # 0: every core
    clinic_path: str = "auto"       # "outbox" | "codec" | "auto" (outbox up to 500 wearers)
    max_case_reports: int = 12      # full case reports (venues, co-visitors): all cases or a sample
    clock_sync_every_days: float = 7.0  # a clinic sets each token's clock this often (clocks.py)


def wearable_profiles() -> list[str]:
    """The firmware's power profiles a wearable token can run (those that scan)."""
    return [name for name, p in scheduler.PROFILES.items() if p["scan"]]


def boards() -> dict[str, dict]:
    out = {}
    for path in sorted(BOARDS_DIR.glob("*/board.json")):
        data = json.loads(path.read_text())
        if path.parent.name != "virtual":
            out[path.parent.name] = data
    return out


def validate(config: SimulationConfig, profiles: list[str]) -> dict:
    if not 2 <= config.population <= 200_000:
        raise SimulationError("population must be between 2 and 200000 wearers")
    if not 1 <= config.days <= 28:
        raise SimulationError("days must be between 1 and 28")
    if config.venues is not None and not 1 <= config.venues <= 10_000:
        raise SimulationError("venues must be between 1 and 10000")
    if not 0.0 <= config.escrowed_share <= 1.0:
        raise SimulationError("the escrowed share must be between 0 and 1")
    if not 0.0 < config.positive_share <= 0.5:
        raise SimulationError("the share testing positive must be above 0 and at most 0.5")
    if config.max_case_reports < 1:
        raise SimulationError("at least one full case report is needed")
    if not 1 / 24 <= config.clock_sync_every_days <= 28:
        raise SimulationError("the clock sync interval must be between one hour and 28 days")
    if config.clinic_path not in ("auto", "outbox", "codec"):
        raise SimulationError("the clinic path must be auto, outbox or codec")
    known = wearable_profiles()
    for p in profiles:
        if p not in known:
            raise SimulationError("unknown power profile %r for a wearable token (known: %s)"
                                  % (p, ", ".join(known)))
    all_boards = boards()
    if config.board not in all_boards:
        raise SimulationError("unknown board %r (known: %s)" % (config.board, ", ".join(all_boards)))
    return all_boards


def serial_of(token: int, n: int) -> str:
    return "TT-S%07d" % token if token < n else "TT-V%07d" % (token - n)


def simulate(config: SimulationConfig, profiles: list[str] | None = None, progress=None,
             inspect=None) -> dict:
    """Run the simulation for each profile (default: config.profile); returns the results
    (JSON-ready), one entry per profile under "profiles". `progress(sentence)` hears what is
    being done; `inspect(profile, state)` gets the internals of each profile's run (tests)."""
    profiles = list(profiles or [config.profile])
    all_boards = validate(config, profiles)
    say = progress or (lambda msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    processes = config.processes or tokens.cpu_count()

    say("building the community")
    c = build(CommunityConfig(config.population, config.days, config.venues, config.escrowed_share,
                              config.seed))
    n, v = c.n, len(c.venues)
    board = all_boards[config.board]
    tx_advertised = int(board["radio"]["tx_power_dbm"])
    tx = contacts.tx_radiated(c, tx_advertised, config.seed)
    rng = np.random.default_rng([config.seed, 0xCA5E])
    n_cases = min(n - 1, max(2, int(round(config.positive_share * n))))
    cases = np.sort(rng.choice(n, size=n_cases, replace=False))
    is_case = np.zeros(n, dtype=bool)
    is_case[cases] = True
    samplings = ceiling.samplings_for({p: scheduler.profile(p) for p in profiles})
    say("placing %d wearers in %d homes and %d venues, slot by slot" % (n, int(c.household.max()) + 1, v))
    links, truth = contacts.compute(c, tx, processes, contacts.CeilingInput(is_case, tx_advertised, samplings))
    timings["community_and_links_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    say("finding the best precision any scoring of these radio measurements could reach")
    ceilings = ceiling.ceiling(truth.ceiling_parts, is_case, n, contacts.CLOSE_CONTACT_S // SLOT_S, GOAL_RECALL)
    truth.ceiling_parts = None
    timings["precision_ceiling_s"] = time.perf_counter() - t
    start_s, end_s = c.start_s, c.start_s + config.days * 86400
    enin0 = start_s // tokens.INTERVAL_S
    intervals = config.days * 144
    identity = ["escrowed" if c.escrowed[i] else "private" for i in range(n)] + ["escrowed"] * v
    needed = np.zeros((n + v, intervals), dtype=bool)
    needed[links.advertiser, links.slot // (tokens.INTERVAL_S // SLOT_S)] = True
    keys_for = np.zeros(n + v, dtype=bool)
    keys_for[cases] = True

    t = time.perf_counter()
    say("deriving identifiers with the firmware's GAEN code")
    shared = {"needed": needed, "enin0": enin0, "seed": config.seed, "identity": identity,
              "tx_advertised": tx_advertised, "keys_for": keys_for}
    table = np.zeros(((n + v) * intervals, 20), dtype=np.uint8)
    teks: dict[int, dict[int, bytes]] = {}
    for token, rel, blob, token_teks in tokens.run_pool(tokens.identifiers_worker,
                                                        list(range(n + v)), shared, processes):
        if len(rel):
            table[token * intervals + rel] = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 20)
        if token_teks:
            teks[token] = token_teks
    ident = table.tobytes()
    del table
    timings["identifiers_s"] = time.perf_counter() - t

    token_clocks = clocks.draw(config.seed, n, start_s, end_s, float(board["clock"]["drift_ppm"]),
                               config.clock_sync_every_days * 86400)
    results = {}
    for profile in profiles:
        say("running every token's scan schedule and encounter log (%s profile)" % profile)
        results[profile] = _run_profile(config, c, profile, links, ident, intervals,
                                        enin0, truth, cases, teks, all_boards, tx_advertised,
                                        processes, say, inspect, token_clocks)
        results[profile]["precision_ceiling_at_goal_recall"] = {
            "this_profile": ceilings[profile], "infinite_sampling": ceilings[ceiling.INFINITE],
            "infinite_sampling_no_body_shadowing": ceilings[ceiling.NO_BODY]}
    return {
        "config": asdict(config),
        "wearers": n,
        "venues": v,
        "households": int(c.household.max()) + 1,
        "days": config.days,
        "cases": len(cases),
        "escrowed_wearers": int(c.escrowed.sum()),
        "links": len(links),
        "shared_timings_s": {k: round(x, 2) for k, x in timings.items()},
        "profiles": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _run_profile(config, c, profile, links, ident, intervals, enin0, truth, cases,
                 teks, all_boards, tx_advertised, processes, say, inspect=None, token_clocks=None) -> dict:
    t0 = time.perf_counter()
    n, days = c.n, config.days
    start_s, end_s = c.start_s, c.start_s + days * 86400
    shared = {"start_s": start_s, "end_s": end_s, "profile": profile, "seed": config.seed,
              "links": links,
              "enin0": enin0, "ident": ident, "intervals": intervals, "clocks": token_clocks}
    logs = tokens.run_pool(tokens.aggregate_worker, list(range(n)), shared, processes)
    logs.sort(key=lambda log: log.token)
    t_tokens = time.perf_counter() - t0

    t = time.perf_counter()
    serials = [serial_of(i, n) for i in range(n + len(c.venues))]
    path = config.clinic_path
    if path == "auto":
        path = "outbox" if n <= 500 else "codec"
    case_set = set(cases.tolist())
    if path == "outbox":
        say("syncing every token into a clinic outbox and reading its upload batches")
        sightings = clinic.through_outbox(logs, serials, end_s)
    else:
        say("decoding the records the matching service needs with the record codec")
        wanted = exposure.identifiers_of(ident, intervals, [*cases.tolist(), *range(n, n + len(c.venues))])
        sightings = clinic.through_codec(logs, serials, wanted, case_set)
    t_clinic = time.perf_counter() - t

    t = time.perf_counter()
    say("matching: decentralized keys and escrowed resolution for %d cases, full case reports for %d"
        % (len(cases), min(len(cases), config.max_case_reports)))
    outcome = exposure.run(c, serials, sightings, cases, teks, tx_advertised, end_s, processes,
                           max_reports=config.max_case_reports, seed=config.seed)
    t_matching = time.perf_counter() - t

    metrics = _metrics(c, truth, cases, outcome, logs, serials, profile, all_boards, start_s, config.board)
    if inspect is not None:
        inspect(profile, {"community": c, "truth": truth, "cases": cases, "outcome": outcome,
                          "logs": logs, "serials": serials, "sightings": sightings, "links": links})
    metrics["clinic_path"] = path
    metrics["sightings_to_matching"] = len(sightings)
    metrics["timings_s"] = {"tokens": round(t_tokens, 2), "clinic": round(t_clinic, 2),
                            "matching": round(t_matching, 2),
                            "total": round(time.perf_counter() - t0, 2)}
    return metrics


def _metrics(c, truth, cases, outcome, logs, serials, profile, all_boards, start_s, board_name) -> dict:
    n, days = c.n, c.config.days
    case_set = set(cases.tolist())
    index_of = {s: i for i, s in enumerate(serials)}
    # Ground truth: wearers (not cases) with a close contact of a case on some day.
    seconds = defaultdict(int)   # (wearer, case, day) -> close seconds
    for a, b, d, sec in zip(truth.a.tolist(), truth.b.tolist(), truth.day.tolist(), truth.seconds.tolist()):
        if a in case_set and b not in case_set:
            seconds[(b, a, d)] += sec
        if b in case_set and a not in case_set:
            seconds[(a, b, d)] += sec
    truth_exposed = {w for (w, _, _), s in seconds.items() if s >= contacts.CLOSE_CONTACT_S}

    def idx(serials_set):
        return {index_of[s] for s in serials_set if s in index_of and index_of[s] < n} - case_set

    esc = idx(outcome.escrowed_exposed)
    esc_venues = idx(outcome.escrowed_with_venues)
    dec = idx(outcome.decentralized_exposed)

    def score(pred, truth_set=truth_exposed):
        tp = len(pred & truth_set)
        return {"recall": round(tp / len(truth_set), 4) if truth_set else None,
                "precision": round(tp / len(pred), 4) if pred else None,
                "exposed_found": len(pred), "true_positives": tp}

    # Full case reports exist for report_cases (all, or a sample at scale): what only they
    # give (venues, co-visitors) is measured against those cases' truth.
    reported = {index_of[s] for s in outcome.report_cases}
    truth_reported = {w for (w, k, _), s in seconds.items() if k in reported and s >= contacts.CLOSE_CONTACT_S}

    # Detection by cumulative close time: was the (wearer, case, day) flagged that day?
    flagged_days = {(index_of[w], index_of[case], day - start_s // 86400)
                    for (w, case, day) in outcome.escrowed_days}
    dur_edges = np.array(DURATION_BINS_MIN) * 60
    by_duration = []
    for lo, hi in zip(dur_edges[:-1], dur_edges[1:]):
        keys = [k for k, s in seconds.items() if lo < s <= hi or (lo == 0 and s == 0)]
        hit = sum(1 for k in keys if k in flagged_days)
        by_duration.append({"from_min": int(lo // 60), "to_min": int(hi // 60), "pairs": len(keys),
                            "detected": round(hit / len(keys), 4) if keys else None})

    attempts = sum(log.attempts for log in logs)
    heard = sum(log.heard for log in logs)
    by_distance = [{"setting": contacts.SETTINGS[k],
                    "from_m": float(tokens.DISTANCE_BINS_M[i]), "to_m": float(tokens.DISTANCE_BINS_M[i + 1]),
                    "windows": int(attempts[k, i]),
                    "heard": round(float(heard[k, i]) / attempts[k, i], 4) if attempts[k, i] else None}
                   for k in range(attempts.shape[0]) for i in range(attempts.shape[1])]

    thresholds = []
    for thr in THRESHOLDS_S:
        e = idx({s for s, w in outcome.escrowed_best.items() if w + 1e-9 >= thr})
        d = idx({s for s, w in outcome.decentralized_best.items() if w + 1e-9 >= thr})
        thresholds.append({"threshold_s": thr, "escrowed": score(e), "decentralized": score(d)})

    # Venue visits of the cases: found when the case report lists that venue at an overlapping time.
    visits = [(p, ven, f, e) for p in sorted(reported) for ven, f, e in _visits(c.location[p])]
    found = 0
    for p, ven, f, e in visits:
        lo, hi = start_s + f * SLOT_S, start_s + e * SLOT_S
        windows = outcome.case_venues.get(serials[p], [])
        if any(vs == serials[n + ven] and a <= hi + 600 and b >= lo - 600 for vs, a, b in windows):
            found += 1
    wall_fp = sum(1 for w in esc - truth_exposed
                  if any((min(w, k), max(w, k)) in truth.wall_pairs
                         for k in outcome.named_by.get(serials[w], ())))

    counts = np.array([log.count for log in logs], dtype=np.float64)
    per_day = counts / days
    flash_per_day = per_day * records.RECORD_SIZE
    scan_ms_day = float(np.mean([log.scan_ms for log in logs])) / days
    prof = scheduler.profile(profile)
    battery = battery_days(prof, scan_ms_day, all_boards)
    retention = {}
    for name, b in all_boards.items():
        usable = b["flash"]["vfs_bytes"] * FLASH_USABLE_SHARE
        retention[name] = {
            "mean_wearer_days": round(usable / max(float(flash_per_day.mean()), 1.0), 1),
            "busiest_5pct_days": round(usable / max(float(np.percentile(flash_per_day, 95)), 1.0), 1),
        }
    calibration = []
    for bucket_db, weights, best in outcome.calibration:
        rows = []
        for thr in THRESHOLDS_S:
            rows.append({"threshold_s": thr, **score(idx({s for s, w in best.items() if w + 1e-9 >= thr}))})
        calibration.append({"attenuation_thresholds_db": list(bucket_db), "bucket_weights": list(weights),
                            "by_threshold": rows})
    meeting = [(r["precision"], r["recall"], cal["attenuation_thresholds_db"], cal["bucket_weights"],
                r["threshold_s"]) for cal in calibration for r in cal["by_threshold"]
               if r["recall"] is not None and r["precision"] is not None and r["recall"] >= GOAL_RECALL]
    best = max(meeting, default=None)
    # What limits precision: how close to the 15-minute line the false alarms and misses were
    # (each wearer's most minutes within 2 m of one case on one day).
    most_close = defaultdict(int)
    for (w, _, _), sec in seconds.items():
        most_close[w] = max(most_close[w], sec)

    def by_close_minutes(wearers, cap_min):
        counts = defaultdict(int)
        for w in wearers:
            counts[str(min(most_close.get(w, 0) // 60, cap_min))] += 1
        return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))

    risk = RiskConfig()
    return {
        "profile": profile,
        "operating_point": {"attenuation_thresholds_db": list(risk.attenuation_thresholds_db),
                            "bucket_weights": list(risk.bucket_weights),
                            "exposure_threshold_s": risk.exposure_threshold_s,
                            "recall": score(esc)["recall"], "precision": score(esc)["precision"]},
        "false_alarms_by_close_minutes": by_close_minutes(esc - truth_exposed, 15),
        "missed_by_close_minutes": by_close_minutes(truth_exposed - esc, 30),
        "calibration": calibration,
        "best_setting_at_goal_recall": None if best is None else {
            "precision": best[0], "recall": best[1], "attenuation_thresholds_db": best[2],
            "bucket_weights": best[3], "exposure_threshold_s": best[4]},
        "truth_exposed": len(truth_exposed),
        "truth_close_pairs_with_cases": sum(1 for s in seconds.values() if s >= contacts.CLOSE_CONTACT_S),
        "recall": score(esc)["recall"],
        "precision": score(esc)["precision"],
        "escrowed": score(esc),
        "escrowed_with_venue_covisitors": score(esc_venues, truth_reported),
        "case_reports": len(reported),
        "decentralized": score(dec),
        "venue_visits": len(visits),
        "venue_recall": round(found / len(visits), 4) if visits else None,
        "wall_false_alarms": wall_fp,
        "false_alarms": len(esc - truth_exposed),
        "battery_days": {k: v["firmware_as_is"] for k, v in battery.items()},
        "battery": battery,
        "flash_bytes_per_day": round(float(flash_per_day.mean()), 1),
        "flash_bytes_per_day_p95": round(float(np.percentile(flash_per_day, 95)), 1),
        "records_per_day": round(float(per_day.mean()), 1),
        "evicted_records": int(sum(log.evicted for log in logs)),
        "retention_days": min(RETENTION_POLICY_DAYS, retention[board_name]["mean_wearer_days"]),
        "retention": retention,
        "scan_s_per_day": round(scan_ms_day / 1000, 1),
        "sightings_per_token_day": round(float(np.mean([log.sightings for log in logs])) / days, 1),
        "detection_by_distance": by_distance,
        "detection_by_duration": by_duration,
        "thresholds": thresholds,
    }


def _visits(location: np.ndarray) -> list[tuple[int, int, int]]:
    """(venue, first slot, end slot) of each stay at a venue in one wearer's location row."""
    change = np.flatnonzero(np.diff(location) != 0) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(location)]
    return [(int(location[a]), int(a), int(b)) for a, b in zip(starts, ends) if location[a] >= 0]


def battery_days(prof: dict, scan_ms_per_day: float, all_boards: dict) -> dict:
    """Battery life per board from the radio on-time of the schedule and the board's power
    figures: receive current while scanning, transmit current for each advertising event
    (tokenfw.radio.ADV_EVENT_US of air per event), and between them either the idle current
    (the firmware waits with time.sleep_ms: modem sleep) or light sleep (what it could reach).
    A burst token deep-sleeps between wakes, and each wake first boots (power.wake_boot_ms at
    power.wake_boot_ma: ROM, bootloader, MicroPython and the app) before its radio window."""
    day_ms = 86400 * 1000
    scan = scan_ms_per_day / day_ms
    # A burst token is awake awake_s every wake_every_s and deep-sleeps the rest (its comment in
    # tokenfw.scheduler); its advertising follows the awake time.
    every = prof.get("wake_every_s")
    awake = prof["awake_s"] / every if every else 1.0
    events = day_ms * awake / (prof["adv_interval_ms"] + radio.ADV_DELAY_MEAN_MS) if prof["advertise"] else 0
    adv = events * ADV_EVENT_US / 1000 / day_ms
    out = {}
    for name, b in all_boards.items():
        p = b["power"]
        mah = power.battery_mah(b)
        wakes = 1.0 / every if every and prof.get("deep_sleep") else 0.0  # per second
        duty = {"scan_s": scan, "adv_s": adv, "awake_s": awake, "asleep_s": 1.0 - awake, "wakes": wakes}
        idle = power.mean_current_ma(p, **duty)
        light = power.mean_current_ma(p, **duty, between_ma=p["light_sleep_ua"] / 1000)
        boot_ma = wakes * p.get("wake_boot_ms", 0) / 1000 * p.get("wake_boot_ma", 0)
        out[name] = {"firmware_as_is": round(mah / idle / 24, 2), "light_sleep": round(mah / light / 24, 1),
                     "mean_ma": round(idle, 3), "mean_ma_light_sleep": round(light, 3),
                     "wake_boot_ma": round(boot_ma, 3),
                     "battery_mah": mah, "scan_duty": round(scan, 5), "adv_duty": round(adv, 5)}
    return out
