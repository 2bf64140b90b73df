"""The firmware-core benchmark computes its figures correctly (not how fast they are)."""
from __future__ import annotations

import json
import subprocess
import sys

from host_tools import micropython as mp


def test_quick_run_writes_consistent_results(tmp_path):
    done = subprocess.run([sys.executable, str(mp.REPO_ROOT / "benchmarks" / "firmware_core.py"),
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "firmware_core.json").read_text())
    for key in ("rpi_derivation_ms", "record_append_ms", "flash_bytes_per_record", "retention_days",
                "peak_heap_bytes"):
        assert key in results
    # A record is 32 bytes; the filesystem can only add to that.
    assert 32 <= results["flash_bytes_per_record"] < 64
    kept = results["retention_days"]
    assert kept["200"]["fits_days"] > kept["1000"]["fits_days"] > kept["5000"]["fits_days"]
    assert all(v["kept_days"] <= 21 for v in kept.values())
    assert 0 < results["peak_heap_bytes"] < results["heap_total_bytes"]
    assert (tmp_path / "firmware_core.md").read_text().startswith("# Firmware core")
