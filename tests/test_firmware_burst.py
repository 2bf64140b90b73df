"""The `burst` profile's deep sleep with the firmware's own main loop on the heap-capped
MicroPython interpreter: between one-minute wakes the token deep-sleeps and keeps nothing but
RTC memory, yet a contact heard across many wakes is still one record per interval."""
from __future__ import annotations

import json

from host_tools import micropython as mp

SCRIPT = mp.REPO_ROOT / "tests" / "firmware" / "burst_hours.py"


def run_hours(tmp_path, hours: str, *extra: str) -> dict:
    done = mp.run(SCRIPT, str(tmp_path / "flash.img"), hours, *extra,
                  extra_paths=(mp.BOARDS_DIR / "virtual",), timeout_s=600)
    assert done.returncode == 0, f"the token crashed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_burst_token_sleeps_between_wakes_and_keeps_its_encounters(tmp_path):
    run = run_hours(tmp_path, "2")
    # Awake for two minutes after switching on (a technician's REPL), then a deep sleep after
    # every 2-second wake on the whole minute: 58 s each.
    assert run["deep_sleeps"] == run["sleeps"] == 118
    assert run["sleep_ms"] == [58000]
    neighbour = [e for e in run["encounters"] if e[0] == 1]
    visitor = [e for e in run["encounters"] if e[0] == 2]
    # One record per 10-minute interval, made of the ten wakes in it: the open encounter
    # crossed nine deep sleeps in RTC memory.
    assert [e[1] for e in neighbour] == list(range(0, 7200, 600))
    assert all(e[3] == 10 and e[2] >= 540 for e in neighbour)
    assert [e[1] for e in visitor] == [1800, 2400] and all(e[3] == 10 for e in visitor)
    assert all(e[0] is not None for e in run["encounters"])  # nothing but the two was logged
    # What the token did is in its event log, for battery life: the second hour's line.
    sleep_lines = [detail for t, code, detail in run["events"] if code == "sleep" and t == 3600]
    assert len(sleep_lines) == 1
    awake, asleep, wakes = [int(word) for word in sleep_lines[0].split() if word.isdigit()]
    assert wakes == 58 and awake + asleep >= 3590 and asleep >= 3200


def test_damaged_rtc_memory_loses_only_the_open_encounters(tmp_path):
    run = run_hours(tmp_path, "1", "damage")
    assert [detail for _, code, detail in run["events"] if code == "sleep" and "lost" in detail] == \
        ["open encounters lost: RTC memory damaged"]
    neighbour = [e for e in run["encounters"] if e[0] == 1]
    # The interval whose open encounter was in the damaged memory keeps its later wakes;
    # every other interval is whole.
    assert sorted(e[3] for e in neighbour)[1:] == [10] * (len(neighbour) - 1)
    assert len({e[1] // 600 for e in neighbour}) == 6
