"""Battery life from what a token's firmware says it did.

Every hour the firmware writes a `radio` event (`<profile> scan <ms> adv <ms> ms`) and, when
its profile deep-sleeps, a `sleep` event (`awake <s> asleep <s> s wakes <n>`): radio on-time
from its own accounting (tokenfw.radio), CPU time awake and asleep (tokenfw.app). With the
board's datasheet figures (boards/<board>/board.json `power`) that gives the mean current and
the days a charge lasts. The first `radio` line after a boot covers no time (it is written at
boot) and counts for nothing; a period is the time between two consecutive `radio` lines of
one boot (a reset loses what the firmware had counted since its last line).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_RADIO = re.compile(r"^(?P<profile>\S+) scan (?P<scan>\d+) adv (?P<adv>\d+) ms$")
_SLEEP = re.compile(r"^awake (?P<awake>\d+) asleep (?P<asleep>\d+) s wakes (?P<wakes>\d+)$")


@dataclass
class PowerEstimate:
    profile: str
    hours: float
    scan_s_per_h: float
    adv_s_per_h: float
    awake_share: float      # of the time the CPU was not in deep sleep
    wakes_per_h: float
    mean_ma: float
    battery_days: float


def mean_current_ma(power: dict, *, scan_s: float, adv_s: float, awake_s: float, asleep_s: float = 0.0,
                    wakes: float = 0.0, between_ma: float | None = None) -> float:
    """Mean current over `awake_s + asleep_s` from a board.json `power` object: receive while
    scanning, transmit while advertising, `between_ma` (default the idle current: stock
    MicroPython waits in modem sleep) for the rest of the awake time, deep sleep while asleep,
    and a boot (`wake_boot_ms` at `wake_boot_ma`, taken out of the sleep) for every wake."""
    deep_ma = power["deep_sleep_ua"] / 1000
    between = power["idle_ma"] if between_ma is None else between_ma
    boot_s = wakes * power.get("wake_boot_ms", 0) / 1000
    charge_mas = (scan_s * power["rx_ma"] + adv_s * power["tx_ma"] + max(0.0, awake_s - scan_s - adv_s) * between
                  + asleep_s * deep_ma + boot_s * (power.get("wake_boot_ma", power["idle_ma"]) - deep_ma))
    return charge_mas / (awake_s + asleep_s)


def estimate(events: list[tuple[int, str, str]], board: dict) -> PowerEstimate | None:
    """`events`: (time, code, detail) in log order; `board`: a board.json object (its `power`
    figures and battery). Counts the periods of the latest profile the token ran; None before
    one full period."""
    period_s = scan_s = adv_s = awake_s = asleep_s = wakes = 0.0
    sleeping = counted = False
    previous = profile = None
    for when, code, detail in events:
        if code == "boot":
            previous = None  # what the firmware counted since its last line died with it
        elif code == "radio" and (m := _RADIO.match(detail)):
            if m["profile"] != profile:
                profile = m["profile"]
                period_s = scan_s = adv_s = awake_s = asleep_s = wakes = 0.0
                sleeping = False
                previous = None
            counted = previous is not None
            if counted:
                period_s += when - previous
                scan_s += int(m["scan"]) / 1000
                adv_s += int(m["adv"]) / 1000
            previous = when
        elif code == "sleep" and counted and (m := _SLEEP.match(detail)):
            sleeping = True
            awake_s += int(m["awake"])
            asleep_s += int(m["asleep"])
            wakes += int(m["wakes"])
    if period_s <= 0:
        return None
    if not sleeping:
        awake_s, asleep_s = period_s, 0.0
    mean_ma = mean_current_ma(board["power"], scan_s=scan_s, adv_s=adv_s, awake_s=awake_s, asleep_s=asleep_s, wakes=wakes)
    total_s = awake_s + asleep_s
    hours = period_s / 3600
    return PowerEstimate(profile=profile, hours=round(hours, 2), scan_s_per_h=round(scan_s / hours, 1),
                         adv_s_per_h=round(adv_s / hours, 1), awake_share=round(awake_s / total_s, 4),
                         wakes_per_h=round(wakes / hours, 1), mean_ma=round(mean_ma, 2),
                         battery_days=round(battery_mah(board) / mean_ma / 24, 1))


def battery_mah(board: dict) -> float:
    return board["power"].get("battery_mah") or board.get("battery", {}).get("capacity_mah", 1000)
