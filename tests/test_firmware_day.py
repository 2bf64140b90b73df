"""The firmware's own main loop lives through a day of heavy traffic on the heap-capped
MicroPython interpreter, on littlefs, and logs what a wearer in a crowd actually met."""
from __future__ import annotations

import json

from host_tools import micropython as mp

DAY_SCRIPT = mp.REPO_ROOT / "benchmarks" / "mp" / "firmware_day.py"


def run_day(tmp_path, days: str, crowd: int) -> dict:
    done = mp.run(DAY_SCRIPT, str(tmp_path / "flash.img"), days, str(crowd),
                  extra_paths=(mp.BOARDS_DIR / "virtual",), timeout_s=600)
    assert done.returncode == 0, f"the token crashed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_heavy_day_fits_in_the_heap_and_every_contact_is_logged(tmp_path):
    day = run_day(tmp_path, "1", 35)
    # A day has 144 identifier intervals; the crowd of 35 changes every 15 minutes, so every
    # device is logged at least once per interval it was around.
    assert day["identifier_rotations"] == 144
    assert day["records"] >= 35 * 144
    assert day["store"]["records"] == day["records"] - 1  # next_seq counts from 1
    assert day["store"]["corrupt_skipped"] == 0
    assert day["peak_heap_bytes"] < day["heap_total_bytes"]
    print(f"peak heap {day['peak_heap_bytes']} of {day['heap_total_bytes']} bytes, "
          f"{day['records']} records")


def test_a_quiet_day_logs_nothing_but_keeps_rotating(tmp_path):
    day = run_day(tmp_path, "0.5", 0)
    assert day["records"] == 1  # next_seq: nothing logged
    assert day["identifier_rotations"] == 72
