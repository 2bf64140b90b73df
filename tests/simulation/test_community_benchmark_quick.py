"""benchmarks/community.py in its quick mode writes the result file the issue asks for, with
every key per power profile, and the report folder beside it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from host_tools.simulation.report import PLOTS
from host_tools.simulation.runner import wearable_profiles

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "community.py"


def test_quick_benchmark_writes_every_key_for_every_profile(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "community_quick.json").read_text())
    assert (results["wearers"], results["days"]) == (600, 3)
    assert results["seconds"] > 0
    assert set(results["profiles"]) == set(wearable_profiles())
    for name, p in results["profiles"].items():
        for key in ("recall", "precision", "venue_recall", "battery_days", "flash_bytes_per_day",
                    "retention_days", "wearers", "days", "seconds"):
            assert key in p, (name, key)
        assert set(p["battery_days"]) == {"esp32-devkitc", "esp32-c3", "esp32-s3"}
        assert all(days > 0 for days in p["battery_days"].values())
        assert p["flash_bytes_per_day"] > 0 and 0 < p["retention_days"] <= 21
        top = p["precision_ceiling_at_goal_recall"]
        assert 0 < top["this_profile"] <= 1 and 0 < top["infinite_sampling"] <= 1
    assert results["profiles"]["continuous"]["recall"] >= 0.8
    for plot in PLOTS:
        assert (tmp_path / "community_quick" / plot).stat().st_size > 1000
    summary = (tmp_path / "community_quick.md").read_text()
    assert "| continuous |" in summary
    assert "with infinite sampling" in summary
