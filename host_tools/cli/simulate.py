"""`tokentool simulate`: plan a deployment on a synthetic community.

    tokentool simulate [--population N] [--days D] [--venues V] [--profile P] [--board B]
                       [--escrowed-share X] [--positive-share X] [--seed S] [--out DIR] [--json]

Builds a seeded community (households, venues with beacons), runs every token's identifiers,
scan schedule, aggregation and records with the firmware's own modules, routes the logs
through the clinic path and the matching service's engine, and measures the outcome against
the ground truth: recall and precision of exposed wearers, venue visits found, false alarms,
battery days per board, flash per day. With --out, writes a report folder (summary.md,
results.json, PNG plots). The model is described in docs/simulation.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools.cli.output import add_json_flag, emit
from host_tools.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate a community: contacts found, false alarms, battery, flash",
        description="Simulate a community of token wearers and measure what the system finds.")
    parser.add_argument("--population", default="1000", help="wearers (default 1000)")
    parser.add_argument("--days", default="14", help="days to simulate, 1..28 (default 14)")
    parser.add_argument("--venues", default=None, help="venues with beacons (default: one per 80 wearers)")
    parser.add_argument("--profile", default="continuous", help="power profile of the wearables (default continuous)")
    parser.add_argument("--board", default="esp32-devkitc", help="board of the tokens (default esp32-devkitc)")
    parser.add_argument("--escrowed-share", default="0.8", help="share of escrowed tokens, 0..1 (default 0.8)")
    parser.add_argument("--positive-share", default="0.005", help="share of wearers testing positive (default 0.005)")
    parser.add_argument("--clock-sync-days", default="7",
                        help="days between a token's clinic syncs, which set its clock (default 7); "
                             "burst tokens wake on their clocks, so this bounds their drift")
    parser.add_argument("--seed", default="1", help="random seed; the same seed gives the same result")
    parser.add_argument("--out", default=None, help="write the report folder here")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {text!r}") from None
    if value != value:
        raise UsageError(f"{what} must be a number, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from host_tools.simulation import report
    from host_tools.simulation.runner import SimulationConfig, SimulationError, simulate

    config = SimulationConfig(
        population=_int(args.population, "--population"), days=_int(args.days, "--days"),
        venues=None if args.venues is None else _int(args.venues, "--venues"),
        profile=args.profile, board=args.board,
        escrowed_share=_float(args.escrowed_share, "--escrowed-share"),
        positive_share=_float(args.positive_share, "--positive-share"),
        clock_sync_every_days=_float(args.clock_sync_days, "--clock-sync-days"),
        seed=_int(args.seed, "--seed"))
    if args.out:
        # Before minutes of work: a folder that cannot be written is refused at once.
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot write the report folder {args.out}: {error.strerror or error}") from None
    quiet = args.json or not sys.stderr.isatty()
    try:
        results = simulate(config, progress=None if quiet else lambda m: print("... " + m, file=sys.stderr))
    except SimulationError as error:
        raise UsageError(str(error)) from None
    folder = None
    if args.out:
        try:
            folder = str(report.write(results, args.out))
        except OSError as error:
            raise UsageError(f"cannot write the report folder {args.out}: {error.strerror or error}") from None
    p = results["profiles"][config.profile]
    data = {"wearers": results["wearers"], "days": results["days"], "venues": results["venues"],
            "cases": results["cases"], "seconds": results["seconds"], "report": folder,
            **{k: p[k] for k in ("profile", "recall", "precision", "venue_recall", "decentralized",
                                 "escrowed_with_venue_covisitors", "false_alarms", "wall_false_alarms",
                                 "battery_days", "flash_bytes_per_day", "retention_days",
                                 "truth_exposed")}}

    def pct(x):
        return "n/a" if x is None else "%.0f %%" % (100 * x)

    text = ("%d wearers, %d days, %d tested positive: %s of the %d truly exposed wearers found "
            "(precision %s), %s of the venue visits; %d false alarms (%d through walls); "
            "battery %s days on %s as the firmware runs now; %.1f KB of flash a day."
            % (results["wearers"], results["days"], results["cases"], pct(p["recall"]),
               p["truth_exposed"], pct(p["precision"]), pct(p["venue_recall"]), p["false_alarms"],
               p["wall_false_alarms"], p["battery_days"][config.board], config.board,
               p["flash_bytes_per_day"] / 1000))
    if folder:
        text += " Report: %s" % folder
    emit(args, data, text)
    return 0
