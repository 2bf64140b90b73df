"""The report folder: results.json, summary.md and PNG plots (matplotlib, no display needed)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOTS = ("detection_by_distance.png", "detection_by_duration.png", "precision_recall_threshold.png",
         "battery_by_profile.png", "battery_vs_recall.png")


def write(results: dict, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    profiles = results["profiles"]
    _distance(profiles, folder / PLOTS[0])
    _duration(profiles, folder / PLOTS[1])
    _thresholds(profiles, folder / PLOTS[2])
    _battery(profiles, folder / PLOTS[3])
    _tradeoff(profiles, folder / PLOTS[4])
    (folder / "summary.md").write_text(summary(results))
    return folder


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _distance(profiles, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in profiles.items():
        settings = sorted({r["setting"] for r in p["detection_by_distance"]})
        for setting in settings:
            rows = [r for r in p["detection_by_distance"] if r["setting"] == setting
                    and r["heard"] is not None and r["to_m"] < 1e6 and r["windows"] >= 20]
            if rows:
                ax.plot([(r["from_m"] + r["to_m"]) / 2 for r in rows], [r["heard"] for r in rows],
                        marker="o", label="%s, %s" % (setting, name))
    ax.set_xscale("log")
    ax.set_xlabel("distance (m)")
    ax.set_ylabel("P(scan window hears the token)")
    ax.set_title("Detection probability by distance and setting")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def _duration(profiles, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in profiles.items():
        rows = p["detection_by_duration"]  # every bin, so the 15-minute mark stays in place
        ax.plot(["%d-%d" % (r["from_min"], r["to_min"]) if r["to_min"] < 10000 else ">%d" % r["from_min"]
                 for r in rows], [float("nan") if r["detected"] is None else r["detected"] for r in rows],
                marker="o", label=name)
    ax.axvline(2.5, color="grey", ls=":", label="15 min")
    ax.set_xlabel("minutes within 2 m of a case that day")
    ax.set_ylabel("share flagged exposed that day")
    ax.set_title("Detection probability by contact duration (escrowed resolution)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)


def _thresholds(profiles, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in profiles.items():
        x = [r["threshold_s"] / 60 for r in p["thresholds"]]
        for kind, style in (("escrowed", "-"), ("decentralized", "--")):
            ax.plot(x, [r[kind]["recall"] or 0 for r in p["thresholds"]], style, marker="o",
                    label="%s recall (%s)" % (kind, name))
            ax.plot(x, [r[kind]["precision"] or 0 for r in p["thresholds"]], style, marker="s",
                    label="%s precision (%s)" % (kind, name))
    for p in profiles.values():
        ax.axvline(p["operating_point"]["exposure_threshold_s"] / 60, color="grey", ls=":")
        break
    ax.set_xlabel("exposure threshold (weighted minutes per day)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision and recall of exposed wearers against the threshold")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def _battery(profiles, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(profiles)
    boards = sorted(next(iter(profiles.values()))["battery"])
    width = 0.8 / (2 * len(boards))
    for b_i, board in enumerate(boards):
        for mode_i, mode in enumerate(("firmware_as_is", "light_sleep")):
            pos = [i + (2 * b_i + mode_i) * width for i in range(len(names))]
            ax.bar(pos, [profiles[n]["battery"][board][mode] for n in names], width,
                   label="%s, %s" % (board, mode.replace("_", " ")))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    ax.set_ylabel("battery days")
    ax.set_title("Battery life by power profile and board")
    ax.legend(fontsize=7)
    _save(fig, path)


def _tradeoff(profiles, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, p in profiles.items():
        for board, b in sorted(p["battery"].items()):
            ax.scatter(b["light_sleep"], p["recall"] or 0, label="%s on %s" % (name, board))
    ax.set_xlabel("battery days (with light sleep between radio events)")
    ax.set_ylabel("recall of exposed wearers (escrowed)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Battery life against recall")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def _pct(x):
    return "n/a" if x is None else "%.0f %%" % (100 * x)


def summary(results: dict) -> str:
    lines = [
        "# Community simulation",
        "",
        "%d wearers in %d households, %d venues with beacons, %d days, %d wearers tested positive "
        "(seed %d, board %s). Run time %.0f s." % (
            results["wearers"], results["households"], results["venues"], results["days"],
            results["cases"], results["config"]["seed"], results["config"]["board"], results["seconds"]),
        "",
        "A close contact is within 2 m in the same space for at least 15 minutes in a day; a wearer is "
        "exposed when a case was their close contact. The model and its sources: docs/simulation.md.",
        "",
        "| profile | recall | precision | decentralized recall / precision | with venue co-visitors | venue visits found | false alarms (through walls) | flash / day | retention | scan s / day |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in results["profiles"].items():
        lines.append("| %s | %s | %s | %s / %s | %s / %s | %s of %d | %d (%d) | %.1f KB | %s days | %.0f |" % (
            name, _pct(p["recall"]), _pct(p["precision"]),
            _pct(p["decentralized"]["recall"]), _pct(p["decentralized"]["precision"]),
            _pct(p["escrowed_with_venue_covisitors"]["recall"]),
            _pct(p["escrowed_with_venue_covisitors"]["precision"]),
            _pct(p["venue_recall"]), p["venue_visits"], p["false_alarms"], p["wall_false_alarms"],
            p["flash_bytes_per_day"] / 1000, p["retention_days"], p["scan_s_per_day"]))
    lines += ["", "## Battery days", "",
              "As the firmware runs now (the loop waits with `time.sleep_ms`, so the chip idles in "
              "modem sleep between radio events) and with light sleep between them:", "",
              "| profile | board | as is | light sleep | mean current (as is) |", "| --- | --- | --- | --- | --- |"]
    for name, p in results["profiles"].items():
        for board, b in sorted(p["battery"].items()):
            lines.append("| %s | %s | %.1f | %.1f | %.2f mA |" % (name, board, b["firmware_as_is"],
                                                                  b["light_sleep"], b["mean_ma"]))
    lines += ["", "## How to read it", "",
              "- **recall**: share of truly exposed wearers that the escrowed case reports flag "
              "(exposed contacts); **precision**: share of flagged wearers that were truly exposed.",
              "- **decentralized**: what the wearers' own logs matched against the cases' keys give "
              "(no registry needed). **with venue co-visitors**: adds everyone who overlapped 15 "
              "minutes with a case at a venue, which finds more and is much less precise.",
              "- **false alarms (through walls)**: flagged wearers without a close contact; in "
              "brackets those whose only link to the case was through the wall of a neighbouring home.",
              "- **retention**: days of log the flash holds at the mean wearer's density (capped at "
              "the 21-day policy); see results.json for the busiest 5 %.",
              "", "Plots: " + ", ".join("[%s](%s)" % (p, p) for p in PLOTS), ""]
    for name, p in results["profiles"].items():
        best = p.get("best_setting_at_goal_recall")
        op = p["operating_point"]
        default_min = op["exposure_threshold_s"] / 60
        lines += ["### Operating point and what limits it (%s)" % name, "",
                  "Chosen operating point (the matching service's default RiskConfig): buckets %s dB, "
                  "weights %s, exposed at %g weighted minutes a day: recall %s, precision %s. "
                  "Best achievable on the grid below with recall of at least 90 %%: %s. Goal: recall "
                  "90 %% at precision 80 %%." % (
                      "/".join(map(str, op["attenuation_thresholds_db"])),
                      "/".join("%g" % w for w in op["bucket_weights"]), default_min,
                      _pct(op["recall"]), _pct(op["precision"]),
                      "none" if not best else "precision %s at recall %s" % (_pct(best["precision"]),
                                                                              _pct(best["recall"]))), "",
                  "False alarms by the wearer's most minutes within 2 m of one case on one day "
                  "(5-minute steps; 15 is a close contact): %s. Missed exposed wearers by the same "
                  "measure: %s." % (
                      ", ".join("%s min: %d" % kv for kv in p["false_alarms_by_close_minutes"].items()) or "none",
                      ", ".join("%s min: %d" % kv for kv in p["missed_by_close_minutes"].items()) or "none"), ""]
        top = p.get("precision_ceiling_at_goal_recall")
        if top:
            lines += ["The ceiling: no scoring of these radio measurements could do better than precision "
                      "%s at recall 90 %% with this profile's scan windows, or %s if every slot were sampled "
                      "without end (the Bayes classifier on each 5-minute slot's attenuation, calibrated "
                      "on this run: docs/simulation.md); %s without a body in the path. What is left "
                      "between it and the goal is the radio's, not the risk model's." % (
                          _pct(top["this_profile"]), _pct(top["infinite_sampling"]),
                          _pct(top["infinite_sampling_no_body_shadowing"])), ""]
        lines += ["### Risk settings (%s)" % name, "",
                  "The service's defaults against other attenuation buckets and weights (escrowed, "
                  "both sides of each contact), at the default %g weighted minutes and at the best "
                  "threshold:" % default_min, "",
                  "| attenuation buckets (dB) | bucket weights | recall / precision at %g min | best threshold (min): recall / precision |" % default_min,
                  "| --- | --- | --- | --- |"]
        for cal in p.get("calibration", []):
            at15 = next(r for r in cal["by_threshold"] if r["threshold_s"] == op["exposure_threshold_s"])
            ok = [r for r in cal["by_threshold"] if r["recall"] is not None and r["precision"] is not None]
            top = max(ok, key=lambda r: (r["recall"] >= 0.9, r["precision"], r["recall"]), default=None)
            lines.append("| %s | %s | %s / %s | %s |" % (
                "/".join(map(str, cal["attenuation_thresholds_db"])), "/".join("%g" % w for w in cal["bucket_weights"]),
                _pct(at15["recall"]), _pct(at15["precision"]),
                "n/a" if top is None else "%g: %s / %s" % (top["threshold_s"] / 60, _pct(top["recall"]), _pct(top["precision"]))))
        lines += ["", "Best setting with recall of at least 90 %%: %s." % (
            "none" if not best else "buckets %s dB, weights %s, %g weighted minutes: recall %s, precision %s" % (
                "/".join(map(str, best["attenuation_thresholds_db"])), "/".join("%g" % w for w in best["bucket_weights"]),
                best["exposure_threshold_s"] / 60, _pct(best["recall"]), _pct(best["precision"]))),
                  "These settings are fitted to this radio model; confirm them with field measurements "
                  "before changing the service's RiskConfig.", ""]
        lines += ["### Exposure threshold (%s)" % name, "",
                  "| weighted min / day | escrowed recall | escrowed precision | decentralized recall | decentralized precision |",
                  "| --- | --- | --- | --- | --- |"]
        for r in p["thresholds"]:
            lines.append("| %g | %s | %s | %s | %s |" % (r["threshold_s"] / 60, _pct(r["escrowed"]["recall"]),
                                                       _pct(r["escrowed"]["precision"]),
                                                       _pct(r["decentralized"]["recall"]),
                                                       _pct(r["decentralized"]["precision"])))
        lines.append("")
    return "\n".join(lines) + "\n"
